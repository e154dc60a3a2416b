// Reading a YAML document along a known schema, with errors an operator can act on.
//
// The walker walks the schema, never the document: a mapping is opened with the keys it allows,
// so a key nobody asked for is an error ("unknown key (did you mean 'burst'?)") rather than a
// silently ignored default, a key given twice is an error, and no value is read twice. Each typed
// reader leaves its output at its default when the key is absent or bad, and records one error
// that names the key path, the problem, the value and its line:
//   "limits.requests_per_second: expected a positive number, got 'fast' (line 12)"
// Errors are collected, not thrown, so that one pass reports every error of the file.
// What the keys are, their defaults and their meaning is the schema's business (config.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/base/clock.h"
#include "core/base/status.h"

namespace payoutd {

// The one document of a YAML text. A stream of several documents, or text that is not YAML, is
// refused naming `where` and the line: "<where>: not valid YAML: ... (line 3)".
Result<YAML::Node> LoadOneDocument(const std::string& text, const std::string& where);

// The line of a node, counted from 1; 0 when it has none.
int LineOf(const YAML::Node& node);

// "limits" and "burst" make "limits.burst"; a key that is not a plain word is quoted.
std::string JoinKey(const std::string& path, std::string_view key);

// What a value is, for "expected X, got Y": "a list", "a mapping", "nothing" or the quoted text.
std::string Describe(const YAML::Node& node);

struct YamlEntry {
  YAML::Node key;
  YAML::Node value;
  // The line of the value, else of its key.
  int line() const;
};

// One mapping of the document, its keys checked.
struct YamlSection {
  std::string path;  // the key path, "" for the root
  int line = 0;      // the line of its key; 0 for the root or when absent
  bool present = false;
  std::map<std::string, YamlEntry, std::less<>> entries;

  const YamlEntry* Find(std::string_view key) const;
  // True when `key` is given without a value ("key:").
  bool IsBlank(std::string_view key) const;
};

class YamlWalker {
 public:
  // Records "<path>: <message> (line <line>)"; no path part for "", no line part for 0.
  void Error(const std::string& path, int line, const std::string& message);
  // Records that the required `key` of `s` is missing, at the line of `s`.
  void Missing(const YamlSection& s, std::string_view key);

  // Opens `node` as a mapping at `path`. With `allowed` empty any key is accepted. An absent or
  // empty node is an empty section whose keys all take their defaults.
  YamlSection Open(const YAML::Node& node, const std::string& path, int line,
                   std::initializer_list<std::string_view> allowed);
  YamlSection Child(const YamlSection& parent, std::string_view key,
                    std::initializer_list<std::string_view> allowed);

  // Each reads `key` of `s` into *out when it is present and valid; otherwise *out keeps its
  // default and an error is recorded. They return true when the key was present and valid.
  // Text: any scalar; `what` says what was expected when it is not one.
  bool Text(const YamlSection& s, std::string_view key, const char* what, bool required,
            std::string* out, int* line = nullptr);
  // A string without control characters; "" (or a blank "key:") only when `allow_empty`.
  bool String(const YamlSection& s, std::string_view key, bool required, bool allow_empty,
              std::string* out);
  bool Bool(const YamlSection& s, std::string_view key, bool* out);
  // An integer in [lo, hi]; T is int or int64_t.
  template <typename T>
  bool Integer(const YamlSection& s, std::string_view key, int64_t lo, int64_t hi, T* out);
  bool PositiveNumber(const YamlSection& s, std::string_view key, double* out);
  // A duration (config/duration.h) greater than zero.
  bool PositiveDuration(const YamlSection& s, std::string_view key, Duration* out);
  // A duration of zero or more ("0s" means "no wait").
  bool NonNegativeDuration(const YamlSection& s, std::string_view key, Duration* out);
  // Two positive durations of `s` that must be in order (lower <= upper), such as
  // retry.initial_backoff and retry.max_backoff. Out of order is one error, at the key given
  // (the lower one when both are).
  void OrderedDurations(const YamlSection& s, std::string_view lower_key, Duration* lower,
                        std::string_view upper_key, Duration* upper);

  bool ok() const { return issues_.empty(); }
  // Every error recorded, one per line, in file order; those without a line last.
  std::string Errors() const;

 private:
  bool ReadDuration(const YamlSection& s, std::string_view key, bool allow_zero, Duration* out);

  struct Issue {
    int line;
    std::string text;
  };
  std::vector<Issue> issues_;
};

}  // namespace payoutd
