#include "config/yaml_walker.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include <yaml-cpp/eventhandler.h>

#include "config/duration.h"
#include "config/text.h"

namespace payoutd {
namespace {

// A key as it appears in a key path: printable, short.
std::string KeyName(std::string_view key) {
  std::string q = Quote(key);
  std::string_view inner(q.data() + 1, q.size() - 2);
  bool plain = !inner.empty() && std::all_of(inner.begin(), inner.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  return plain ? std::string(inner) : q;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown key", with the allowed key it was probably meant to be.
std::string UnknownKey(std::string_view name, std::initializer_list<std::string_view> allowed) {
  std::string message = "unknown key";
  std::string_view best;
  size_t best_distance = 3;
  for (std::string_view a : allowed) {
    size_t d = EditDistance(name, a);
    if (d < best_distance) best = a, best_distance = d;
  }
  if (!best.empty()) message += " (did you mean '" + std::string(best) + "'?)";
  return message;
}

// Records where each document of a YAML stream starts, and nothing else.
class DocumentCounter final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// YAML::LoadAll loops forever on some malformed input (a stray ',' at block level makes the
// parser report the same empty document again and again), so documents are counted with a
// bounded scan first. Fails when there is more than one, or the scan went back.
Status CheckOneDocument(const std::string& text, const std::string& where) {
  std::istringstream in(text);
  YAML::Parser scan(in);
  DocumentCounter counter;
  for (int i = 0; i < 3 && scan.HandleNextDocument(counter); ++i) {
  }
  const std::vector<YAML::Mark>& starts = counter.starts;
  for (size_t i = 1; i < starts.size(); ++i) {
    if (starts[i].pos <= starts[i - 1].pos) {
      return Status::InvalidArgument(where + ": not valid YAML: unexpected text (line " +
                                     std::to_string(starts[i].line + 1) + ")");
    }
  }
  if (starts.size() > 1) {
    return Status::InvalidArgument(where + ": holds more than one YAML document (line " +
                                   std::to_string(starts[1].line + 1) +
                                   "); a configuration is one document");
  }
  return Status::Ok();
}

}  // namespace

Result<YAML::Node> LoadOneDocument(const std::string& text, const std::string& where) {
  try {
    PAYOUTD_RETURN_IF_ERROR(CheckOneDocument(text, where));
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    std::string message = where + ": not valid YAML: " + e.msg;
    if (!e.mark.is_null()) message += " (line " + std::to_string(e.mark.line + 1) + ")";
    return Status::InvalidArgument(message);
  }
}

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  YAML::Mark m = node.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

std::string JoinKey(const std::string& path, std::string_view key) {
  return path.empty() ? KeyName(key) : path + "." + KeyName(key);
}

std::string Describe(const YAML::Node& node) {
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (node.IsNull()) return "nothing";
  return Quote(node.Scalar());
}

int YamlEntry::line() const {
  return LineOf(value) > 0 ? LineOf(value) : LineOf(key);
}

const YamlEntry* YamlSection::Find(std::string_view key) const {
  auto it = entries.find(key);
  return it == entries.end() ? nullptr : &it->second;
}

bool YamlSection::IsBlank(std::string_view key) const {
  const YamlEntry* e = Find(key);
  return e != nullptr && e->value.IsNull();
}

void YamlWalker::Error(const std::string& path, int line, const std::string& message) {
  std::string text = path.empty() ? message : path + ": " + message;
  if (line > 0) text += " (line " + std::to_string(line) + ")";
  issues_.push_back({line, std::move(text)});
}

void YamlWalker::Missing(const YamlSection& s, std::string_view key) {
  Error(JoinKey(s.path, key), s.line,
        s.present ? "required key is missing" : "required, but missing");
}

YamlSection YamlWalker::Open(const YAML::Node& node, const std::string& path, int line,
                             std::initializer_list<std::string_view> allowed) {
  YamlSection s;
  s.path = path;
  s.line = line;
  if (!node.IsDefined() || node.IsNull()) return s;  // an empty section: every key defaulted
  const std::string where = path.empty() ? "configuration" : path;
  if (!node.IsMap()) {
    Error(where, line > 0 ? line : LineOf(node),
          "expected a mapping of keys, got " + Describe(node));
    return s;
  }
  s.present = true;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: the iterator hands out a temporary pair.
    YAML::Node k = it->first;
    YAML::Node v = it->second;
    int kline = LineOf(k);
    if (!k.IsScalar()) {
      Error(where, kline, "expected a plain key, got " + Describe(k));
      continue;
    }
    const std::string& name = k.Scalar();
    if (allowed.size() > 0 && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      Error(JoinKey(path, name), kline, UnknownKey(name, allowed));
      continue;
    }
    if (const YamlEntry* first = s.Find(name)) {
      Error(JoinKey(path, name), kline,
            "duplicate key (first at line " + std::to_string(LineOf(first->key)) + ")");
      continue;
    }
    s.entries.emplace(name, YamlEntry{k, v});
  }
  return s;
}

YamlSection YamlWalker::Child(const YamlSection& parent, std::string_view key,
                              std::initializer_list<std::string_view> allowed) {
  const YamlEntry* e = parent.Find(key);
  if (e == nullptr) return Open(YAML::Node(), JoinKey(parent.path, key), 0, allowed);
  return Open(e->value, JoinKey(parent.path, key), LineOf(e->key), allowed);
}

bool YamlWalker::Text(const YamlSection& s, std::string_view key, const char* what, bool required,
                      std::string* out, int* line) {
  const YamlEntry* e = s.Find(key);
  if (e == nullptr) {
    if (required) Missing(s, key);
    return false;
  }
  if (line != nullptr) *line = e->line();
  if (!e->value.IsScalar()) {
    Error(JoinKey(s.path, key), e->line(),
          std::string("expected ") + what + ", got " + Describe(e->value));
    return false;
  }
  *out = e->value.Scalar();
  return true;
}

bool YamlWalker::String(const YamlSection& s, std::string_view key, bool required, bool allow_empty,
                        std::string* out) {
  // An optional text whose default is empty may be left blank ("key:").
  if (allow_empty && s.IsBlank(key)) {
    out->clear();
    return true;
  }
  std::string text;
  int line = 0;
  if (!Text(s, key, "a string", required, &text, &line)) return false;
  if (text.empty() && !allow_empty) {
    Error(JoinKey(s.path, key), line, "must not be empty");
    return false;
  }
  if (HasControlChars(text)) {
    Error(JoinKey(s.path, key), line, "must not contain control characters, got " + Quote(text));
    return false;
  }
  *out = std::move(text);
  return true;
}

bool YamlWalker::Bool(const YamlSection& s, std::string_view key, bool* out) {
  std::string text;
  int line = 0;
  if (!Text(s, key, "true or false", false, &text, &line)) return false;
  bool value = false;
  if (!YAML::convert<bool>::decode(s.Find(key)->value, value)) {
    Error(JoinKey(s.path, key), line, "expected true or false, got " + Quote(text));
    return false;
  }
  *out = value;
  return true;
}

template <typename T>
bool YamlWalker::Integer(const YamlSection& s, std::string_view key, int64_t lo, int64_t hi,
                         T* out) {
  std::string range = hi == std::numeric_limits<int64_t>::max()
                          ? "an integer of at least " + std::to_string(lo)
                          : "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  std::string text;
  int line = 0;
  if (!Text(s, key, range.c_str(), false, &text, &line)) return false;
  int64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || value < lo ||
      value > hi) {
    Error(JoinKey(s.path, key), line, "expected " + range + ", got " + Quote(text));
    return false;
  }
  *out = static_cast<T>(value);
  return true;
}

template bool YamlWalker::Integer(const YamlSection&, std::string_view, int64_t, int64_t, int*);
template bool YamlWalker::Integer(const YamlSection&, std::string_view, int64_t, int64_t, int64_t*);

bool YamlWalker::PositiveNumber(const YamlSection& s, std::string_view key, double* out) {
  std::string text;
  int line = 0;
  if (!Text(s, key, "a positive number", false, &text, &line)) return false;
  double value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() ||
      !std::isfinite(value) || value <= 0) {
    Error(JoinKey(s.path, key), line, "expected a positive number, got " + Quote(text));
    return false;
  }
  *out = value;
  return true;
}

bool YamlWalker::PositiveDuration(const YamlSection& s, std::string_view key, Duration* out) {
  return ReadDuration(s, key, /*allow_zero=*/false, out);
}

bool YamlWalker::NonNegativeDuration(const YamlSection& s, std::string_view key, Duration* out) {
  return ReadDuration(s, key, /*allow_zero=*/true, out);
}

bool YamlWalker::ReadDuration(const YamlSection& s, std::string_view key, bool allow_zero,
                              Duration* out) {
  static constexpr const char* kWhat = "a duration like 250ms, 2s, 5m, 72h or 1h30m";
  std::string text;
  int line = 0;
  if (!Text(s, key, kWhat, false, &text, &line)) return false;
  std::optional<Duration> d = ParseDuration(text);
  if (!d) {
    Error(JoinKey(s.path, key), line, std::string("expected ") + kWhat + ", got " + Quote(text));
    return false;
  }
  if (d->count() == 0 && !allow_zero) {  // ParseDuration takes no sign: never negative
    Error(JoinKey(s.path, key), line, "expected a duration greater than zero, got " + Quote(text));
    return false;
  }
  *out = *d;
  return true;
}

void YamlWalker::OrderedDurations(const YamlSection& s, std::string_view lower_key, Duration* lower,
                                  std::string_view upper_key, Duration* upper) {
  bool lower_given = PositiveDuration(s, lower_key, lower);
  bool upper_given = PositiveDuration(s, upper_key, upper);
  if ((!lower_given && !upper_given) || *lower <= *upper) return;
  std::string_view key = lower_given ? lower_key : upper_key;
  Error(JoinKey(s.path, key), LineOf(s.Find(key)->value),
        JoinKey(s.path, lower_key) + " (" + FormatDuration(*lower) + ") must not exceed " +
            JoinKey(s.path, upper_key) + " (" + FormatDuration(*upper) + ")");
}

std::string YamlWalker::Errors() const {
  std::vector<Issue> issues = issues_;
  // In file order, so the operator can fix them top to bottom; errors without a line go last.
  std::stable_sort(issues.begin(), issues.end(), [](const Issue& a, const Issue& b) {
    int la = a.line > 0 ? a.line : std::numeric_limits<int>::max();
    int lb = b.line > 0 ? b.line : std::numeric_limits<int>::max();
    return la < lb;
  });
  std::string message;
  for (const Issue& issue : issues) {
    if (!message.empty()) message += '\n';
    message += issue.text;
  }
  return message;
}

}  // namespace payoutd
