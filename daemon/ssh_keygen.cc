#include "daemon/ssh_keygen.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "daemon/process.h"

namespace payoutd {
namespace {

// A 0700 folder of our own holding a 0600 copy of the signature; removed with the object.
class PrivateCopy {
 public:
  ~PrivateCopy() {
    if (!file_.empty()) ::unlink(file_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  Status Write(std::string_view bytes) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/payoutd-sig-XXXXXX";
    if (!::mkdtemp(pattern.data()))
      return Status::Unavailable(std::string("cannot make a private folder: ") +
                                 std::strerror(errno));
    dir_ = pattern;
    file_ = dir_ + "/signature";
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
      return Status::Unavailable(std::string("cannot write the signature copy: ") +
                                 std::strerror(errno));
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return Status::Unavailable(std::string("cannot write the signature copy: ") +
                                   std::strerror(errno));
      }
      off += static_cast<size_t>(n);
    }
    ::close(fd);
    return Status::Ok();
  }
  const std::string& path() const { return file_; }

 private:
  std::string dir_;
  std::string file_;
};

// ssh-keygen's reason for a refusal: its last non-empty line of stderr, without control bytes.
std::string Reason(const ProcessResult& r) {
  if (r.timed_out) return "ssh-keygen did not answer in time";
  std::string text = r.err.empty() ? r.out : r.err;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const size_t nl = text.rfind('\n');
  if (nl != std::string::npos) text = text.substr(nl + 1);
  std::string clean;
  for (char c : text)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) clean += c;
  if (clean.size() > 200) clean.resize(200);
  return clean.empty() ? "exit code " + std::to_string(r.exit_code) : clean;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(start, nl - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) lines.push_back(line);
    start = nl + 1;
  }
  return lines;
}

// "Good "payoutd-batch" signature for alice@example.com with ED25519 key SHA256:..." -> the key.
std::string Fingerprint(const std::string& out) {
  const size_t key = out.rfind(" key ");
  if (key == std::string::npos) return "";
  std::string fp = out.substr(key + 5);
  const size_t end = fp.find_first_of(" \r\n");
  return end == std::string::npos ? fp : fp.substr(0, end);
}

}  // namespace

Result<SshVerdict> VerifySshSignature(const std::string& allowed_signers, std::string_view ns,
                                      std::string_view signature, std::string_view data,
                                      const SshKeygenOptions& options) {
  PrivateCopy copy;
  if (Status st = copy.Write(signature); !st.ok()) return st;
  ProcessOptions po;
  po.timeout = options.timeout;
  // Which principals may have made it: the key must be in allowed_signers, valid now.
  auto found = RunProcess(
      {options.program, "-Y", "find-principals", "-s", copy.path(), "-f", allowed_signers}, "", po);
  if (!found.ok()) return found.status();
  SshVerdict verdict;
  if (found->exit_code != 0) {
    verdict.reason = "no allowed signer has this key (" + Reason(*found) + ")";
    return verdict;
  }
  std::vector<std::string> principals;
  for (const std::string& line : SplitLines(found->out)) {
    size_t start = 0;
    while (start <= line.size()) {  // a line may list several, comma-separated
      size_t comma = line.find(',', start);
      if (comma == std::string::npos) comma = line.size();
      if (comma > start) principals.push_back(line.substr(start, comma - start));
      start = comma + 1;
    }
  }
  for (const std::string& principal : principals) {
    auto checked = RunProcess({options.program, "-Y", "verify", "-f", allowed_signers, "-I",
                               principal, "-n", std::string(ns), "-s", copy.path()},
                              data, po);
    if (!checked.ok()) return checked.status();
    if (checked->exit_code == 0) {
      verdict.valid = true;
      verdict.reason.clear();
      verdict.signer = SshSigner{principal, Fingerprint(checked->out)};
      return verdict;
    }
    verdict.reason = Reason(*checked);
  }
  if (verdict.reason.empty()) verdict.reason = "no allowed signer has this key";
  return verdict;
}

Result<std::string> MakeSshSignature(const std::string& key, std::string_view ns,
                                     std::string_view data, const SshKeygenOptions& options) {
  ProcessOptions po;
  po.timeout = std::chrono::minutes(5);  // a person may be typing a passphrase
  po.inherit_stderr = true;              // ... and sees ssh-keygen's prompt there
  // With no file to sign, ssh-keygen signs its stdin and writes the signature to stdout.
  auto r = RunProcess({options.program, "-Y", "sign", "-n", std::string(ns), "-f", key}, data, po);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->out.find("BEGIN SSH SIGNATURE") == std::string::npos)
    return Status::Unavailable("ssh-keygen could not sign with " + key + " (exit code " +
                               std::to_string(r->exit_code) + ")");
  return r->out;
}

}  // namespace payoutd
