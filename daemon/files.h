// File operations the spool and the reports rely on for durability.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"

namespace payoutd {

// Writes `path` atomically: into `path.tmp`, fsync, rename over `path`, fsync of the folder. A
// crash leaves either the old file (or none) or the whole new one, never a part.
Status WriteFileAtomically(const std::string& path,
                           const std::function<Status(std::ostream&)>& write);
Status WriteFileAtomically(const std::string& path, const std::string& content);

// rename(2) then fsync of both folders, so the move survives a crash.
Status MoveFile(const std::string& from, const std::string& to);

// Files that appear together: a batch's reports and its input in done/, or its errors and its input
// in rejected/. Write() fills `path.tmp` and fsyncs it; Move() notes a rename; Commit() makes every
// rename back to back, in the order given, and only then fsyncs each folder touched. Someone who
// waits for any one of the files finds the others already there: there is no folder fsync between
// two renames, which used to leave milliseconds in which a report was there and its input was not.
// Renames in one folder reach the disk in order on a journalling file system (ext4, xfs); if the
// last rename is lost in a crash, the caller's state says the work is not done and it is redone.
class FileSet {
 public:
  Status Write(const std::string& path, const std::function<Status(std::ostream&)>& write);
  Status Write(const std::string& path, const std::string& content);
  void Move(const std::string& from, const std::string& to);
  Status Commit();

 private:
  std::vector<std::pair<std::string, std::string>> renames_;  // from, to
};

// `dir/stem + ext`, or `dir/stem.N + ext` with the smallest N >= 1 that does not exist yet, so that
// nothing already in `dir` is overwritten.
std::string FreePath(const std::string& dir, const std::string& stem, const std::string& ext);

Status MakeDirs(const std::string& dir);
bool FileExists(const std::string& path);
std::string DirName(const std::string& path);
std::string BaseName(const std::string& path);

}  // namespace payoutd
