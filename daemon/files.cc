#include "daemon/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace payoutd {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::Unavailable(what + " " + path + ": " + std::strerror(errno));
}

Status FsyncPath(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("cannot fsync", path);
  return Status::Ok();
}

Status WriteTemp(const std::string& tmp, const std::function<Status(std::ostream&)>& write) {
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Errno("cannot create", tmp);
    PAYOUTD_RETURN_IF_ERROR(write(out));
    out.flush();
    if (!out) return Errno("cannot write", tmp);
  }
  return FsyncPath(tmp, false);
}

std::function<Status(std::ostream&)> Content(const std::string& content) {
  return [&content](std::ostream& out) {
    out << content;
    return Status::Ok();
  };
}

}  // namespace

std::string DirName(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

std::string BaseName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create folder " + dir + ": " + ec.message());
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path,
                           const std::function<Status(std::ostream&)>& write) {
  FileSet set;
  PAYOUTD_RETURN_IF_ERROR(set.Write(path, write));
  return set.Commit();
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  return WriteFileAtomically(path, Content(content));
}

Status MoveFile(const std::string& from, const std::string& to) {
  FileSet set;
  set.Move(from, to);
  return set.Commit();
}

Status FileSet::Write(const std::string& path, const std::function<Status(std::ostream&)>& write) {
  std::string tmp = path + ".tmp";
  PAYOUTD_RETURN_IF_ERROR(WriteTemp(tmp, write));
  renames_.emplace_back(tmp, path);
  return Status::Ok();
}

Status FileSet::Write(const std::string& path, const std::string& content) {
  return Write(path, Content(content));
}

void FileSet::Move(const std::string& from, const std::string& to) {
  renames_.emplace_back(from, to);
}

Status FileSet::Commit() {
  auto renames = std::move(renames_);
  renames_.clear();
  // Folders to fsync: where files arrived first (that is what makes them durable), then where they
  // left.
  std::vector<std::string> dirs;
  auto note = [&dirs](const std::string& dir) {
    if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
  };
  for (const auto& [from, to] : renames) {
    if (::rename(from.c_str(), to.c_str()) != 0) return Errno("cannot move", from);
    note(DirName(to));
  }
  for (const auto& [from, to] : renames) note(DirName(from));
  for (const auto& dir : dirs) PAYOUTD_RETURN_IF_ERROR(FsyncPath(dir, true));
  return Status::Ok();
}

std::string FreePath(const std::string& dir, const std::string& stem, const std::string& ext) {
  std::string p = dir + "/" + stem + ext;
  for (int n = 1; FileExists(p); ++n) p = dir + "/" + stem + "." + std::to_string(n) + ext;
  return p;
}

}  // namespace payoutd
