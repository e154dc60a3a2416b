// File operations the spool and the reports rely on for durability.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "core/result.h"

namespace payoutd {

// Writes `path` atomically: into `path.tmp`, fsync, rename over `path`, fsync of the folder. A crash
// leaves either the old file (or none) or the whole new one, never a part.
Status WriteFileAtomically(const std::string& path, const std::function<Status(std::ostream&)>& write);
Status WriteFileAtomically(const std::string& path, const std::string& content);

// rename(2) then fsync of both folders, so the move survives a crash.
Status MoveFile(const std::string& from, const std::string& to);

// `dir/stem + ext`, or `dir/stem.N + ext` with the smallest N >= 1 that does not exist yet, so that
// nothing already in `dir` is overwritten.
std::string FreePath(const std::string& dir, const std::string& stem, const std::string& ext);

Status MakeDirs(const std::string& dir);
bool FileExists(const std::string& path);
std::string DirName(const std::string& path);
std::string BaseName(const std::string& path);

}  // namespace payoutd
