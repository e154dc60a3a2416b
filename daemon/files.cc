#include "daemon/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace payoutd {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::Error(what + " " + path + ": " + std::strerror(errno));
}

Status FsyncPath(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("cannot fsync", path);
  return Status::Ok();
}

}  // namespace

std::string DirName(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

std::string BaseName(const std::string& path) { return std::filesystem::path(path).filename().string(); }

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Error("cannot create folder " + dir + ": " + ec.message());
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::function<Status(std::ostream&)>& write) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Errno("cannot create", tmp);
    Status st = write(out);
    if (!st.ok()) return st;
    out.flush();
    if (!out) return Errno("cannot write", tmp);
  }
  if (Status st = FsyncPath(tmp, false); !st.ok()) return st;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("cannot rename", tmp);
  return FsyncPath(DirName(path), true);
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  return WriteFileAtomically(path, [&](std::ostream& out) {
    out << content;
    return Status::Ok();
  });
}

Status MoveFile(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return Errno("cannot move", from);
  if (Status st = FsyncPath(DirName(to), true); !st.ok()) return st;
  if (DirName(from) != DirName(to)) return FsyncPath(DirName(from), true);
  return Status::Ok();
}

std::string FreePath(const std::string& dir, const std::string& stem, const std::string& ext) {
  std::string p = dir + "/" + stem + ext;
  for (int n = 1; FileExists(p); ++n) p = dir + "/" + stem + "." + std::to_string(n) + ext;
  return p;
}

}  // namespace payoutd
