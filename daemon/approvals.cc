#include "daemon/approvals.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/batch/content_hash.h"
#include "core/batch/payout.h"

namespace payoutd {
namespace {

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// Opens `path` for reading without following a symlink or blocking on a pipe, and checks that it
// is a regular file. Returns the descriptor, or -1 with `why` set.
int OpenRegular(const std::string& path, std::string* why, struct stat* st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *why = errno == ELOOP ? "a symbolic link, not a file" : std::strerror(errno);
    return -1;
  }
  if (::fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    *why = "not a regular file";
    ::close(fd);
    return -1;
  }
  return fd;
}

bool ReadAll(int fd, size_t limit, std::string* out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > limit) return true;
  }
}

}  // namespace

int ApprovalsRequired(const ApprovalPolicy& policy, const std::map<std::string, int64_t>& totals) {
  int needed = std::max(policy.required, 0);
  for (const auto& [currency, total] : totals) {
    auto cap = policy.large_above.find(currency);
    if (cap != policy.large_above.end() && total > cap->second)
      needed = std::max(needed, policy.large_required);
  }
  return needed;
}

std::optional<SignatureName> ParseSignatureName(std::string_view name) {
  constexpr std::string_view kSig = ".sig";
  constexpr std::string_view kCsv = ".csv";
  if (name.size() <= kSig.size() || name.substr(name.size() - kSig.size()) != kSig)
    return std::nullopt;
  std::string_view stem = name.substr(0, name.size() - kSig.size());  // <batch>.csv[.<label>]
  SignatureName out;
  if (stem.size() > kCsv.size() && stem.substr(stem.size() - kCsv.size()) == kCsv) {
    out.batch_id = std::string(stem.substr(0, stem.size() - kCsv.size()));
  } else {
    const size_t dot = stem.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    std::string_view label = stem.substr(dot + 1);
    std::string_view csv = stem.substr(0, dot);
    if (label.empty() || !std::all_of(label.begin(), label.end(), IsLabelChar)) return std::nullopt;
    if (csv.size() <= kCsv.size() || csv.substr(csv.size() - kCsv.size()) != kCsv)
      return std::nullopt;
    out.batch_id = std::string(csv.substr(0, csv.size() - kCsv.size()));
    out.label = std::string(label);
  }
  if (!IsValidId(out.batch_id)) return std::nullopt;
  return out;
}

std::string SignatureLabel(std::string_view user) {
  std::string label;
  for (char c : user)
    if (IsLabelChar(c)) label += c;
  return label.empty() ? "user" : label.substr(0, 64);
}

Result<SignatureFile> ReadSignatureFile(const std::string& dir, const std::string& name) {
  SignatureFile out;
  struct stat st;
  const int fd = OpenRegular(dir + "/" + name, &out.unusable, &st);
  if (fd < 0) return out;
  if (static_cast<size_t>(st.st_size) > kMaxSignatureFile) {
    ::close(fd);
    out.unusable = "larger than " + std::to_string(kMaxSignatureFile / 1024) + " KiB";
    return out;
  }
  const bool read = ReadAll(fd, kMaxSignatureFile, &out.bytes);
  ::close(fd);
  if (!read)
    return Status::Unavailable("cannot read " + dir + "/" + name + ": " + std::strerror(errno));
  if (out.bytes.size() > kMaxSignatureFile) {  // it grew while we read it
    out.bytes.clear();
    out.unusable = "larger than " + std::to_string(kMaxSignatureFile / 1024) + " KiB";
  }
  return out;
}

Result<std::string> ReadApprovedBytes(const std::string& path, std::string_view sha256) {
  std::string why;
  struct stat st;
  const int fd = OpenRegular(path, &why, &st);
  if (fd < 0) return Status::NotFound(path + ": " + why);
  std::string bytes;
  const bool read = ReadAll(fd, SIZE_MAX, &bytes);
  ::close(fd);
  if (!read) return Status::Unavailable("cannot read " + path + ": " + std::strerror(errno));
  if (Sha256Hex(bytes) != sha256)
    return Status::FailedPrecondition(
        path +
        " is not the file that was accepted (its sha256 differs): no signature over it counts");
  return bytes;
}

Result<std::vector<SignatureCheck>> CheckSignatures(const ApprovalPolicy& policy,
                                                    const std::string& dir,
                                                    const std::vector<std::string>& files,
                                                    std::string_view data,
                                                    const SshKeygenOptions& ssh) {
  std::vector<SignatureCheck> checks;
  for (const std::string& name : files) {
    SignatureCheck check;
    check.file = name;
    auto file = ReadSignatureFile(dir, name);
    if (!file.ok()) return file.status();
    if (!file->unusable.empty()) {
      check.reason = file->unusable;
      checks.push_back(std::move(check));
      continue;
    }
    auto verdict =
        VerifySshSignature(policy.allowed_signers, kApprovalNamespace, file->bytes, data, ssh);
    if (!verdict.ok()) return verdict.status();
    check.valid = verdict->valid;
    check.signer = verdict->signer;
    check.reason = verdict->reason;
    checks.push_back(std::move(check));
  }
  return checks;
}

}  // namespace payoutd
