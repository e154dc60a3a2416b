#include "core/base/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

namespace payoutd {
namespace {

namespace fs = std::filesystem;

// The largest secret file we read. A merchant secret or bearer token is a few hundred bytes; a
// bigger file is almost certainly the wrong file.
constexpr size_t kMaxSecretBytes = 64 * 1024;

// $CREDENTIALS_DIRECTORY, or nullptr when it is not set or empty.
const char* CredentialsDirectory() {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  return dir != nullptr && *dir != '\0' ? dir : nullptr;
}

bool IsUnder(const fs::path& file, const fs::path& dir) {
  std::error_code ec;
  fs::path f = fs::canonical(file, ec);
  if (ec) return false;
  fs::path d = fs::canonical(dir, ec);
  if (ec) return false;
  auto [dit, fit] = std::mismatch(d.begin(), d.end(), f.begin(), f.end());
  return dit == d.end() && fit != f.end();
}

bool UnderCredentialsDirectory(const std::string& file) {
  const char* dir = CredentialsDirectory();
  return dir != nullptr && IsUnder(file, dir);
}

std::string ModeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%03o", static_cast<unsigned>(mode & 0777));
  return buf;
}

// The whole content of `fd`, or why not; more than kMaxSecretBytes is refused.
Result<std::string> ReadAll(int fd, const std::string& file) {
  std::string content;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable("cannot read " + file + ": " + std::strerror(errno));
    }
    if (n == 0) return content;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxSecretBytes) {
      return Status::InvalidArgument(file + " is too large to be a secret");
    }
  }
}

}  // namespace

std::optional<std::string> ExpandCredentialsDirectory(const std::string& file) {
  constexpr std::string_view kWithDefault = "${CREDENTIALS_DIRECTORY:-";
  if (file.rfind(kWithDefault, 0) == 0) {
    const size_t close = file.find("}/", kWithDefault.size());
    if (close != std::string::npos) {
      const char* dir = CredentialsDirectory();
      std::string base =
          dir ? std::string(dir) : file.substr(kWithDefault.size(), close - kWithDefault.size());
      return (fs::path(base) / file.substr(close + 2)).lexically_normal().string();
    }
  }
  for (std::string_view prefix : {"$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"}) {
    if (file.rfind(prefix, 0) != 0) continue;
    const char* dir = CredentialsDirectory();
    if (dir == nullptr) return std::nullopt;
    return (fs::path(dir) / file.substr(prefix.size())).lexically_normal().string();
  }
  return file;
}

Result<std::string> ReadSecretFile(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::Unavailable("cannot open " + file + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Status::Unavailable("cannot stat " + file + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(file + " is not a regular file");
  if ((st.st_mode & 077) != 0 && !UnderCredentialsDirectory(file)) {
    return Status::FailedPrecondition(file + " is accessible by group or others (mode " +
                                      ModeText(st.st_mode) +
                                      "); run 'chmod 600' on it, or pass it with systemd "
                                      "LoadCredential=");
  }
  PAYOUTD_ASSIGN_OR_RETURN(std::string secret, ReadAll(fd, file));
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return Status::InvalidArgument(file + " is empty");
  return secret;
}

}  // namespace payoutd
