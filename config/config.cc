#include "config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace payoutd {
namespace {

namespace fs = std::filesystem;

// The largest secret file we read. A merchant secret or bearer token is a few hundred bytes; a
// bigger file is almost certainly the wrong file.
constexpr size_t kMaxSecretBytes = 64 * 1024;
// Values echoed back in errors are cut to this many characters, so one error stays one line.
constexpr size_t kMaxEcho = 60;

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// A value as shown in an error: quoted, control characters escaped, long values cut.
std::string Quote(std::string_view text) {
  std::string out = "'";
  size_t shown = 0;
  for (unsigned char ch : text) {
    if (shown == kMaxEcho) {
      out += "...";
      break;
    }
    if (ch < 0x20 || ch == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
    ++shown;
  }
  return out + "'";
}

// A key as it appears in a key path: printable, short.
std::string KeyName(std::string_view key) {
  std::string q = Quote(key);
  std::string_view inner(q.data() + 1, q.size() - 2);
  bool plain = !inner.empty() && std::all_of(inner.begin(), inner.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  return plain ? std::string(inner) : q;
}

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? KeyName(key) : path + "." + KeyName(key);
}

bool HasControlChars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
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

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  YAML::Mark m = node.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

// What a non-scalar value is, for "expected X, got Y".
std::string Describe(const YAML::Node& node) {
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (node.IsNull()) return "nothing";
  return Quote(node.Scalar());
}

const char* LevelName(log::Level level) {
  switch (level) {
    case log::Level::kDebug: return "debug";
    case log::Level::kInfo: return "info";
    case log::Level::kWarn: return "warn";
    case log::Level::kError: return "error";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// URLs and listen addresses.

struct UrlParts {
  std::string scheme;
  std::string authority;
  std::string rest;  // path, query and fragment
};

// Checks an http(s) URL; on failure returns why. The reason never repeats a user:password part.
std::optional<std::string> CheckUrl(std::string_view url, bool allow_query, UrlParts* parts) {
  if (url.empty()) return "expected an http:// or https:// URL, got nothing";
  if (HasControlChars(url) || url.find(' ') != std::string_view::npos) {
    return "a URL must not contain spaces or control characters";
  }
  size_t sep = url.find("://");
  std::string scheme(url.substr(0, sep == std::string_view::npos ? 0 : sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (sep == std::string_view::npos || (scheme != "http" && scheme != "https")) {
    return "expected an http:// or https:// URL";
  }
  std::string_view after = url.substr(sep + 3);
  size_t end = after.find_first_of("/?#");
  std::string_view authority = after.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return "a URL must not carry credentials (user:password@); the secret belongs in auth.secret_file";
  }
  std::string_view host = authority;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) return "expected a host in the URL";
    std::string_view tail = host.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':') return "expected a host in the URL";
      port = tail.substr(1);
      if (port.empty()) return "expected a port number after ':'";
    }
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
      if (port.empty()) return "expected a port number after ':'";
    }
    if (host.empty()) return "expected a host in the URL";
  }
  if (!port.empty()) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
      return "expected a port from 1 to 65535 in the URL";
    }
  }
  if (!allow_query && rest.find_first_of("?#") != std::string_view::npos) {
    return "the base URL must not have a query or fragment";
  }
  if (parts != nullptr) *parts = {scheme, std::string(authority), std::string(rest)};
  return std::nullopt;
}

// A URL for display: any query or fragment (which may carry a token) is elided.
std::string RedactUrl(const std::string& url) {
  UrlParts parts;
  if (url.empty() || CheckUrl(url, true, &parts)) return url.empty() ? "" : "(invalid)";
  size_t q = parts.rest.find_first_of("?#");
  std::string shown = parts.scheme + "://" + parts.authority + parts.rest.substr(0, q);
  if (q != std::string::npos) shown += "?...";
  return shown;
}

// host:port, [v6]:port; port 0 asks the system for any free port.
std::optional<std::string> CheckListen(std::string_view text) {
  if (HasControlChars(text) || text.find(' ') != std::string_view::npos) {
    return "expected host:port, e.g. 127.0.0.1:9464";
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return "expected host:port, e.g. 127.0.0.1:9464";
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return "expected host:port, e.g. [::1]:9464";
  } else if (host.find(':') != std::string_view::npos) {
    return "an IPv6 host must be written in brackets, e.g. [::1]:9464";
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    return "expected a port from 0 to 65535 after ':'";
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The secret file.

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
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  return dir != nullptr && *dir != '\0' && IsUnder(file, dir);
}

std::string ModeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%03o", static_cast<unsigned>(mode & 0777));
  return buf;
}

// Reads the secret; on failure returns why, naming the file but never its content.
std::optional<std::string> ReadSecretFile(const std::string& file, std::string* secret) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return "cannot open " + file + ": " + std::strerror(errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return "cannot stat " + file + ": " + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return file + " is not a regular file";
  if ((st.st_mode & 077) != 0 && !UnderCredentialsDirectory(file)) {
    return file + " is accessible by group or others (mode " + ModeText(st.st_mode) +
           "); run 'chmod 600' on it, or pass it with systemd LoadCredential=";
  }
  std::string content;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return "cannot read " + file + ": " + std::strerror(errno);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxSecretBytes) return file + " is too large to be a secret";
  }
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
  if (content.empty()) return file + " is empty";
  *secret = std::move(content);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The parser: walks the known schema, never the document, so that every key is checked against
// the keys its mapping allows and no value is read twice.

struct Entry {
  YAML::Node key;
  YAML::Node value;
};

// One mapping of the document, its keys checked.
struct Section {
  std::string path;  // "" for the root
  int line = 0;      // the line of its key; 0 for the root or when absent
  bool present = false;
  std::map<std::string, Entry, std::less<>> entries;

  const Entry* Find(std::string_view key) const {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  }
};

struct Issue {
  int line;
  std::string text;
};

class ConfigParser {
 public:
  ConfigParser(fs::path base_dir, bool read_secret)
      : base_dir_(std::move(base_dir)), read_secret_(read_secret) {}

  void Parse(const YAML::Node& root, Config* c);
  std::vector<Issue>& issues() { return issues_; }

 private:
  void Error(const std::string& path, int line, const std::string& message) {
    std::string text = path.empty() ? message : path + ": " + message;
    if (line > 0) text += " (line " + std::to_string(line) + ")";
    issues_.push_back({line, std::move(text)});
  }

  // Opens `node` as a mapping at `path`. With `allowed` empty any key is accepted.
  Section Open(const YAML::Node& node, const std::string& path, int line,
               std::initializer_list<std::string_view> allowed);
  Section Child(const Section& parent, std::string_view key, std::initializer_list<std::string_view> allowed);

  // Each reads `key` of `s` into *out when it is present and valid; otherwise *out keeps its
  // default and an error is recorded. Return true when the key was present and valid.
  bool Text(const Section& s, std::string_view key, const char* what, bool required, std::string* out,
            int* line = nullptr);
  bool String(const Section& s, std::string_view key, bool required, bool allow_empty, std::string* out);
  bool Path(const Section& s, std::string_view key, bool required, std::string* out);
  bool Bool(const Section& s, std::string_view key, bool* out);
  template <typename T>
  bool Integer(const Section& s, std::string_view key, int64_t lo, int64_t hi, T* out);
  bool PositiveNumber(const Section& s, std::string_view key, double* out);
  bool PositiveDuration(const Section& s, std::string_view key, Duration* out);
  bool Url(const Section& s, std::string_view key, bool required, bool allow_query, std::string* out);
  bool Listen(const Section& s, std::string_view key, bool allow_empty, std::string* out);
  bool StatusList(const Section& s, std::string_view key, std::vector<std::string>* out);

  void Missing(const Section& s, std::string_view key) {
    Error(Join(s.path, key), s.line, s.present ? "required key is missing" : "required, but missing");
  }
  std::string Resolve(const std::string& p) const {
    if (p.empty()) return p;
    fs::path path(p);
    return (path.is_absolute() ? path : base_dir_ / path).lexically_normal().string();
  }

  void ParseGateway(const Section& root, Config* c);
  void ParseAuth(const Section& root, Config* c);
  void ParseLimitsAndRetry(const Section& root, Config* c);
  void ParsePolling(const Section& root, Config* c);
  void ParseBatches(const Section& root, Config* c);
  void ParseRest(const Section& root, Config* c);
  std::map<std::string, int64_t> Caps(const Section& batches, std::string_view key, const CurrencyTable& table);

  fs::path base_dir_;
  bool read_secret_;
  std::vector<Issue> issues_;
};

Section ConfigParser::Open(const YAML::Node& node, const std::string& path, int line,
                           std::initializer_list<std::string_view> allowed) {
  Section s;
  s.path = path;
  s.line = line;
  if (!node.IsDefined() || node.IsNull()) return s;  // an empty section: every key defaulted
  if (!node.IsMap()) {
    Error(path.empty() ? "configuration" : path, line > 0 ? line : LineOf(node),
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
      Error(path.empty() ? "configuration" : path, kline, "expected a plain key, got " + Describe(k));
      continue;
    }
    const std::string& name = k.Scalar();
    std::string full = Join(path, name);
    if (allowed.size() > 0 && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string message = "unknown key";
      std::string_view best;
      size_t best_distance = 3;
      for (std::string_view a : allowed) {
        size_t d = EditDistance(name, a);
        if (d < best_distance) best = a, best_distance = d;
      }
      if (!best.empty()) message += " (did you mean '" + std::string(best) + "'?)";
      Error(full, kline, message);
      continue;
    }
    if (s.entries.count(name) != 0) {
      Error(full, kline,
            "duplicate key (first at line " + std::to_string(LineOf(s.entries[name].key)) + ")");
      continue;
    }
    s.entries.emplace(name, Entry{k, v});
  }
  return s;
}

Section ConfigParser::Child(const Section& parent, std::string_view key,
                            std::initializer_list<std::string_view> allowed) {
  const Entry* e = parent.Find(key);
  if (e == nullptr) return Open(YAML::Node(), Join(parent.path, key), 0, allowed);
  return Open(e->value, Join(parent.path, key), LineOf(e->key), allowed);
}

bool ConfigParser::Text(const Section& s, std::string_view key, const char* what, bool required,
                        std::string* out, int* line) {
  const Entry* e = s.Find(key);
  if (e == nullptr) {
    if (required) Missing(s, key);
    return false;
  }
  int l = LineOf(e->value) > 0 ? LineOf(e->value) : LineOf(e->key);
  if (line != nullptr) *line = l;
  if (!e->value.IsScalar()) {
    Error(Join(s.path, key), l, std::string("expected ") + what + ", got " + Describe(e->value));
    return false;
  }
  *out = e->value.Scalar();
  return true;
}

bool ConfigParser::String(const Section& s, std::string_view key, bool required, bool allow_empty,
                          std::string* out) {
  const Entry* e = s.Find(key);
  // An optional text whose default is empty may be left blank ("key:").
  if (e != nullptr && allow_empty && e->value.IsNull()) {
    out->clear();
    return true;
  }
  std::string text;
  int line = 0;
  if (!Text(s, key, "a string", required, &text, &line)) return false;
  if (text.empty() && !allow_empty) {
    Error(Join(s.path, key), line, "must not be empty");
    return false;
  }
  if (HasControlChars(text)) {
    Error(Join(s.path, key), line, "must not contain control characters, got " + Quote(text));
    return false;
  }
  *out = std::move(text);
  return true;
}

bool ConfigParser::Path(const Section& s, std::string_view key, bool required, std::string* out) {
  std::string text;
  if (!String(s, key, required, !required, &text)) return false;
  *out = Resolve(text);
  return true;
}

bool ConfigParser::Bool(const Section& s, std::string_view key, bool* out) {
  std::string text;
  int line = 0;
  if (!Text(s, key, "true or false", false, &text, &line)) return false;
  bool value = false;
  if (!YAML::convert<bool>::decode(s.Find(key)->value, value)) {
    Error(Join(s.path, key), line, "expected true or false, got " + Quote(text));
    return false;
  }
  *out = value;
  return true;
}

template <typename T>
bool ConfigParser::Integer(const Section& s, std::string_view key, int64_t lo, int64_t hi, T* out) {
  std::string range = hi == std::numeric_limits<int64_t>::max()
                          ? "an integer of at least " + std::to_string(lo)
                          : "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  std::string text;
  int line = 0;
  if (!Text(s, key, range.c_str(), false, &text, &line)) return false;
  int64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || value < lo || value > hi) {
    Error(Join(s.path, key), line, "expected " + range + ", got " + Quote(text));
    return false;
  }
  *out = static_cast<T>(value);
  return true;
}

bool ConfigParser::PositiveNumber(const Section& s, std::string_view key, double* out) {
  std::string text;
  int line = 0;
  if (!Text(s, key, "a positive number", false, &text, &line)) return false;
  double value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || !std::isfinite(value) ||
      value <= 0) {
    Error(Join(s.path, key), line, "expected a positive number, got " + Quote(text));
    return false;
  }
  *out = value;
  return true;
}

bool ConfigParser::PositiveDuration(const Section& s, std::string_view key, Duration* out) {
  static constexpr const char* kWhat = "a duration like 250ms, 2s, 5m, 72h or 1h30m";
  std::string text;
  int line = 0;
  if (!Text(s, key, kWhat, false, &text, &line)) return false;
  std::optional<Duration> d = ParseDuration(text);
  if (!d) {
    Error(Join(s.path, key), line, std::string("expected ") + kWhat + ", got " + Quote(text));
    return false;
  }
  if (d->count() <= 0) {
    Error(Join(s.path, key), line, "expected a duration greater than zero, got " + Quote(text));
    return false;
  }
  *out = *d;
  return true;
}

bool ConfigParser::Url(const Section& s, std::string_view key, bool required, bool allow_query,
                       std::string* out) {
  std::string text;
  int line = 0;
  const Entry* e = s.Find(key);
  if (!required && e != nullptr && e->value.IsNull()) {
    out->clear();
    return true;
  }
  if (!Text(s, key, "an http:// or https:// URL", required, &text, &line)) return false;
  if (text.empty() && !required) {
    out->clear();
    return true;
  }
  if (std::optional<std::string> why = CheckUrl(text, allow_query, nullptr)) {
    // Echo the value only when it cannot hold a password.
    bool echo = text.find('@') == std::string::npos;
    Error(Join(s.path, key), line, *why + (echo ? ", got " + Quote(text) : std::string()));
    return false;
  }
  // A base URL is joined with "/payouts/<id>": drop trailing slashes so the join stays clean.
  if (!allow_query) {
    while (text.size() > 1 && text.back() == '/' && text[text.size() - 2] != '/') text.pop_back();
  }
  *out = std::move(text);
  return true;
}

bool ConfigParser::Listen(const Section& s, std::string_view key, bool allow_empty, std::string* out) {
  std::string text;
  int line = 0;
  const Entry* e = s.Find(key);
  if (allow_empty && e != nullptr && e->value.IsNull()) {
    out->clear();
    return true;
  }
  if (!Text(s, key, "host:port", false, &text, &line)) return false;
  if (text.empty() && allow_empty) {
    out->clear();
    return true;
  }
  if (std::optional<std::string> why = CheckListen(text)) {
    Error(Join(s.path, key), line, *why + ", got " + Quote(text));
    return false;
  }
  *out = std::move(text);
  return true;
}

bool ConfigParser::StatusList(const Section& s, std::string_view key, std::vector<std::string>* out) {
  const Entry* e = s.Find(key);
  if (e == nullptr) return false;
  std::string path = Join(s.path, key);
  int line = LineOf(e->value) > 0 ? LineOf(e->value) : LineOf(e->key);
  if (!e->value.IsSequence()) {
    Error(path, line, "expected a list of gateway statuses, got " + Describe(e->value));
    return false;
  }
  std::vector<std::string> statuses;
  bool ok = true;
  for (size_t i = 0; i < e->value.size(); ++i) {
    YAML::Node item = e->value[i];
    std::string item_path = path + "[" + std::to_string(i) + "]";
    int item_line = LineOf(item) > 0 ? LineOf(item) : line;
    if (!item.IsScalar() || item.Scalar().empty() || HasControlChars(item.Scalar()) ||
        item.Scalar().find(' ') != std::string::npos) {
      Error(item_path, item_line, "expected a gateway status such as SUCCESS, got " + Describe(item));
      ok = false;
      continue;
    }
    if (std::find(statuses.begin(), statuses.end(), item.Scalar()) != statuses.end()) {
      Error(item_path, item_line, "status " + Quote(item.Scalar()) + " is listed twice");
      ok = false;
      continue;
    }
    statuses.push_back(item.Scalar());
  }
  if (!ok) return false;
  if (statuses.empty()) {
    Error(path, line, "must list at least one status");
    return false;
  }
  *out = std::move(statuses);
  return true;
}

void ConfigParser::Parse(const YAML::Node& root, Config* c) {
  Section top = Open(root, "", 0,
                     {"gateway", "auth", "limits", "retry", "polling", "spool", "batches", "state",
                      "metrics", "callbacks", "log", "shutdown_grace"});
  ParseGateway(top, c);
  ParseAuth(top, c);
  ParseLimitsAndRetry(top, c);
  ParsePolling(top, c);
  ParseBatches(top, c);
  ParseRest(top, c);
}

void ConfigParser::ParseGateway(const Section& top, Config* c) {
  Section g = Child(top, "gateway", {"base_url", "api_version", "timeout", "connect_timeout", "ca_file", "verify_tls"});
  GatewayOptions& o = c->gateway;
  Url(g, "base_url", true, false, &o.base_url);
  Integer(g, "api_version", 1, std::numeric_limits<int>::max(), &o.api_version);
  PositiveDuration(g, "timeout", &o.timeout);
  PositiveDuration(g, "connect_timeout", &o.connect_timeout);
  if (Path(g, "ca_file", false, &o.ca_file) && read_secret_ && !o.ca_file.empty() &&
      ::access(o.ca_file.c_str(), R_OK) != 0) {
    Error(Join(g.path, "ca_file"), LineOf(g.Find("ca_file")->value),
          "cannot read " + o.ca_file + ": " + std::strerror(errno));
  }
  Bool(g, "verify_tls", &o.verify_tls);
}

void ConfigParser::ParseAuth(const Section& top, Config* c) {
  Section a = Child(top, "auth", {"mode", "merchant_code", "secret_file", "token_ttl"});
  GatewayOptions& o = c->gateway;
  std::string mode;
  int mode_line = 0;
  if (Text(a, "mode", "jwt-hs256 or static", false, &mode, &mode_line)) {
    if (mode == "jwt-hs256") {
      o.auth_mode = GatewayOptions::AuthMode::kJwtHs256;
    } else if (mode == "static") {
      o.auth_mode = GatewayOptions::AuthMode::kStatic;
    } else {
      Error(Join(a.path, "mode"), mode_line, "expected jwt-hs256 or static, got " + Quote(mode));
    }
  }
  String(a, "merchant_code", true, false, &o.merchant_code);
  PositiveDuration(a, "token_ttl", &o.token_ttl);

  std::string file;
  if (!String(a, "secret_file", true, false, &file)) return;
  int line = LineOf(a.Find("secret_file")->value);
  // systemd passes credentials in a per-service folder named by $CREDENTIALS_DIRECTORY, which
  // YAML cannot expand: "$CREDENTIALS_DIRECTORY/name" (or "${...}/name") refers to it.
  bool unexpanded = false;
  for (std::string_view prefix : {"$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"}) {
    if (file.rfind(prefix, 0) != 0) continue;
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir != nullptr && *dir != '\0') {
      file = (fs::path(dir) / file.substr(prefix.size())).lexically_normal().string();
    } else if (!read_secret_) {
      unexpanded = true;  // left as written: nothing will read it
    } else {
      Error(Join(a.path, "secret_file"), line,
            "refers to $CREDENTIALS_DIRECTORY, which is not set (is LoadCredential= configured?)");
      return;
    }
    break;
  }
  c->secret_file = unexpanded ? file : Resolve(file);
  if (!read_secret_) return;
  std::string secret;
  if (std::optional<std::string> why = ReadSecretFile(c->secret_file, &secret)) {
    Error(Join(a.path, "secret_file"), line, *why);
    return;
  }
  // A bearer token goes verbatim into an HTTP header: a line break inside would split it.
  if (o.auth_mode == GatewayOptions::AuthMode::kStatic && HasControlChars(secret)) {
    Error(Join(a.path, "secret_file"), line,
          c->secret_file + " holds control characters; a static bearer token must be one line");
    return;
  }
  o.secret = std::move(secret);
}

void ConfigParser::ParseLimitsAndRetry(const Section& top, Config* c) {
  Section l = Child(top, "limits", {"requests_per_second", "burst", "max_in_flight"});
  LimitOptions& limits = c->gateway.limits;
  PositiveNumber(l, "requests_per_second", &limits.requests_per_second);
  Integer(l, "burst", 1, std::numeric_limits<int>::max(), &limits.burst);
  Integer(l, "max_in_flight", 1, 10000, &limits.max_in_flight);

  Section r = Child(top, "retry", {"max_attempts", "initial_backoff", "max_backoff"});
  RetryOptions& retry = c->gateway.retry;
  Integer(r, "max_attempts", 1, 100, &retry.max_attempts);
  bool initial = PositiveDuration(r, "initial_backoff", &retry.initial_backoff);
  bool max = PositiveDuration(r, "max_backoff", &retry.max_backoff);
  if ((initial || max) && retry.initial_backoff > retry.max_backoff) {
    std::string_view key = initial ? "initial_backoff" : "max_backoff";
    Error(Join(r.path, key), LineOf(r.Find(key)->value),
          "retry.initial_backoff (" + FormatDuration(retry.initial_backoff) +
              ") must not exceed retry.max_backoff (" + FormatDuration(retry.max_backoff) + ")");
  }
}

void ConfigParser::ParsePolling(const Section& top, Config* c) {
  Section p = Child(top, "polling",
                    {"initial_delay", "max_interval", "give_up_after", "final_statuses", "success_statuses"});
  PollingOptions& o = c->polling;
  bool initial = PositiveDuration(p, "initial_delay", &o.initial_delay);
  bool max = PositiveDuration(p, "max_interval", &o.max_interval);
  if ((initial || max) && o.initial_delay > o.max_interval) {
    std::string_view key = initial ? "initial_delay" : "max_interval";
    Error(Join(p.path, key), LineOf(p.Find(key)->value),
          "polling.initial_delay (" + FormatDuration(o.initial_delay) +
              ") must not exceed polling.max_interval (" + FormatDuration(o.max_interval) + ")");
  }
  PositiveDuration(p, "give_up_after", &o.give_up_after);
  bool final_ok = p.Find("final_statuses") == nullptr || StatusList(p, "final_statuses", &o.final_statuses);
  bool success_ok =
      p.Find("success_statuses") == nullptr || StatusList(p, "success_statuses", &o.success_statuses);
  if (!final_ok || !success_ok) return;
  for (size_t i = 0; i < o.success_statuses.size(); ++i) {
    const std::string& s = o.success_statuses[i];
    if (std::find(o.final_statuses.begin(), o.final_statuses.end(), s) != o.final_statuses.end()) continue;
    const Entry* e = p.Find("success_statuses");
    const Entry* f = p.Find("final_statuses");
    int line = e != nullptr ? LineOf(e->value[i]) : f != nullptr ? LineOf(f->value) : p.line;
    Error(Join(p.path, "success_statuses"), line,
          "status " + Quote(s) + " is not in polling.final_statuses; a success must be final");
  }
}

std::map<std::string, int64_t> ConfigParser::Caps(const Section& batches, std::string_view key,
                                                  const CurrencyTable& table) {
  std::map<std::string, int64_t> caps;
  Section s = Child(batches, key, {});
  for (const auto& [code, entry] : s.entries) {
    std::string path = Join(s.path, code);
    int line = LineOf(entry.key);
    std::optional<int> minor = table.MinorUnits(code);
    if (!minor) {
      Error(path, line,
            "unknown currency " + Quote(code) +
                " (use an ISO 4217 code, or declare it under batches.currencies)");
      continue;
    }
    if (!entry.value.IsScalar()) {
      Error(path, LineOf(entry.value) > 0 ? LineOf(entry.value) : line,
            "expected a decimal amount such as \"5000.00\", got " + Describe(entry.value));
      continue;
    }
    Result<int64_t> amount = ParseAmount(entry.value.Scalar(), *minor);
    if (!amount) {
      Error(path, LineOf(entry.value), amount.error() + ", got " + Quote(entry.value.Scalar()));
      continue;
    }
    caps[code] = *amount;
  }
  return caps;
}

void ConfigParser::ParseBatches(const Section& top, Config* c) {
  Section b = Child(top, "batches",
                    {"delimiter", "default_method", "default_operator_code", "max_rows", "max_amount",
                     "max_total", "currencies"});
  BatchOptions& o = c->batches;
  std::string delimiter;
  int line = 0;
  if (Text(b, "delimiter", "a single character", false, &delimiter, &line)) {
    if (delimiter.size() != 1 || delimiter[0] == '"' || delimiter[0] == '\r' || delimiter[0] == '\n' ||
        static_cast<unsigned char>(delimiter[0]) >= 0x80) {
      Error(Join(b.path, "delimiter"), line,
            "expected a single ASCII character other than a quote or line break, got " + Quote(delimiter));
    } else {
      o.delimiter = delimiter[0];
    }
  }
  String(b, "default_method", false, false, &o.default_method);
  String(b, "default_operator_code", false, true, &o.default_operator_code);
  Integer(b, "max_rows", 1, std::numeric_limits<int64_t>::max(), &o.max_rows);

  // Currency overrides first: the caps below are read with the currencies' final minor units.
  std::map<std::string, int> overrides;
  Section cur = Child(b, "currencies", {});
  for (const auto& [code, entry] : cur.entries) {
    std::string path = Join(cur.path, code);
    bool code_ok = code.size() == 3 && std::all_of(code.begin(), code.end(), [](char ch) {
                     return ch >= 'A' && ch <= 'Z';
                   });
    if (!code_ok) {
      Error(path, LineOf(entry.key), "expected a currency code of three upper-case letters, got " + Quote(code));
      continue;
    }
    Section one = Open(entry.value, path, LineOf(entry.key), {"minor_units"});
    int minor = -1;
    if (one.Find("minor_units") == nullptr) {
      if (one.present || !entry.value.IsDefined() || entry.value.IsNull()) Missing(one, "minor_units");
      continue;
    }
    if (Integer(one, "minor_units", 0, 9, &minor)) overrides[code] = minor;
  }
  o.currencies = CurrencyTable::Iso4217().WithOverrides(overrides);
  // The client writes request amounts with the same digits the validator read them with (§8.5).
  c->gateway.currency_minor_units = overrides;
  o.max_amount = Caps(b, "max_amount", o.currencies);
  o.max_total = Caps(b, "max_total", o.currencies);
}

void ConfigParser::ParseRest(const Section& top, Config* c) {
  Section spool = Child(top, "spool", {"dir", "settle"});
  Path(spool, "dir", true, &c->spool.dir);
  PositiveDuration(spool, "settle", &c->spool.settle);

  Section state = Child(top, "state", {"path"});
  Path(state, "path", true, &c->state_path);

  Section metrics = Child(top, "metrics", {"listen"});
  Listen(metrics, "listen", true, &c->metrics_listen);

  Section callbacks = Child(top, "callbacks", {"url", "listen"});
  Url(callbacks, "url", false, true, &c->gateway.callback_url);
  Listen(callbacks, "listen", true, &c->callbacks_listen);

  Section logs = Child(top, "log", {"level", "format"});
  std::string text;
  int line = 0;
  if (Text(logs, "level", "debug, info, warn or error", false, &text, &line) &&
      !log::ParseLevel(text, &c->log_level)) {
    Error(Join(logs.path, "level"), line, "expected debug, info, warn or error, got " + Quote(text));
  }
  if (Text(logs, "format", "text or json", false, &text, &line) && !log::ParseFormat(text, &c->log_format)) {
    Error(Join(logs.path, "format"), line, "expected text or json, got " + Quote(text));
  }

  PositiveDuration(top, "shutdown_grace", &c->shutdown_grace);
}

// Records where each document of a YAML stream starts, and nothing else.
class DocumentCounter final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Units of a duration, longest first; FormatDuration writes them in this order.
struct Unit {
  std::string_view name;
  int64_t nanos;
};
constexpr Unit kUnits[] = {{"h", 3'600'000'000'000}, {"m", 60'000'000'000}, {"s", 1'000'000'000},
                           {"ms", 1'000'000},        {"us", 1'000},          {"ns", 1}};

}  // namespace

std::optional<Duration> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t digits = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == digits) return std::nullopt;
    int64_t value = 0;
    auto [p, ec] = std::from_chars(text.data() + digits, text.data() + i, value);
    if (ec != std::errc() || p != text.data() + i) return std::nullopt;
    size_t letters = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(letters, i - letters);
    const Unit* u = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const Unit& x) { return x.name == unit; });
    if (u == std::end(kUnits)) return std::nullopt;
    int64_t part = 0;
    if (__builtin_mul_overflow(value, u->nanos, &part) || __builtin_add_overflow(total, part, &total)) {
      return std::nullopt;
    }
  }
  return Duration(total);
}

std::string FormatDuration(Duration d) {
  int64_t n = d.count();
  if (n == 0) return "0s";
  std::string out;
  // Work on the magnitude as unsigned so that the most negative value has one too.
  uint64_t rest = n < 0 ? uint64_t(0) - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  if (n < 0) out += '-';
  for (const Unit& u : kUnits) {
    uint64_t count = rest / static_cast<uint64_t>(u.nanos);
    if (count == 0) continue;
    out += std::to_string(count);
    out += u.name;
    rest -= count * static_cast<uint64_t>(u.nanos);
  }
  return out;
}

Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin, bool read_secret) {
  std::string where = origin.empty() ? "configuration" : origin;
  YAML::Node root;
  try {
    // YAML::LoadAll loops forever on some malformed input (a stray ',' at block level makes the
    // parser report the same empty document again and again), so count documents with a bounded
    // scan and load only the first.
    std::istringstream in(yaml_text);
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
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    std::string text = where + ": not valid YAML: " + e.msg;
    if (!e.mark.is_null()) text += " (line " + std::to_string(e.mark.line + 1) + ")";
    return Status::InvalidArgument(text);
  }

  std::error_code ec;
  fs::path base = fs::absolute(fs::path(origin.empty() ? "." : origin), ec).parent_path();
  if (ec) base = fs::path(origin).parent_path();

  Config config;
  config.path = origin;
  ConfigParser parser(base, read_secret);
  try {
    parser.Parse(root, &config);
  } catch (const YAML::Exception& e) {
    // The parser reads only nodes it has checked; this is a safety net, not a path we expect.
    parser.issues().push_back({0, where + ": cannot read the configuration: " + e.msg});
  }
  std::vector<Issue>& issues = parser.issues();
  if (issues.empty()) return config;

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
  return Status::InvalidArgument(message);
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Unavailable(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Unavailable(path + ": cannot read: " + std::strerror(errno));
  return ParseConfig(text.str(), path, true);
}

std::string Summarize(const Config& c) {
  const GatewayOptions& g = c.gateway;
  std::ostringstream out;
  auto line = [&out](std::string_view label, const std::string& value) {
    out << label << ':' << std::string(label.size() < 11 ? 11 - label.size() : 1, ' ') << value << '\n';
  };
  line("config", c.path);

  std::string gateway = RedactUrl(g.base_url) + " (API v" + std::to_string(g.api_version) + ", timeout " +
                        FormatDuration(g.timeout) + ", connect " + FormatDuration(g.connect_timeout);
  if (!g.verify_tls) {
    gateway += ", TLS NOT verified";
  } else if (!g.ca_file.empty()) {
    gateway += ", CA " + g.ca_file;
  }
  line("gateway", gateway + ")");

  std::string auth = g.auth_mode == GatewayOptions::AuthMode::kStatic
                         ? "static bearer token"
                         : "jwt-hs256 (token ttl " + FormatDuration(g.token_ttl) + ")";
  line("auth", auth + ", merchant " + Quote(g.merchant_code) + ", secret from " + c.secret_file +
                   (g.secret.empty() ? " (not read)" : " (loaded)"));

  std::ostringstream rps;
  rps << g.limits.requests_per_second;
  line("limits", rps.str() + " requests/s, burst " + std::to_string(g.limits.burst) + ", at most " +
                     std::to_string(g.limits.max_in_flight) + " in flight");
  line("retry", std::to_string(g.retry.max_attempts) + " attempts, backoff " +
                    FormatDuration(g.retry.initial_backoff) + " up to " + FormatDuration(g.retry.max_backoff));

  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  line("polling", "first after " + FormatDuration(c.polling.initial_delay) + ", every " +
                      FormatDuration(c.polling.max_interval) + " at most, give up after " +
                      FormatDuration(c.polling.give_up_after) + "; final " + list(c.polling.final_statuses) +
                      "; success " + list(c.polling.success_statuses));
  line("spool", c.spool.dir + " (settle " + FormatDuration(c.spool.settle) + ")");
  line("state", c.state_path);

  const BatchOptions& b = c.batches;
  std::string delim = b.delimiter == '\t' ? "tab" : std::string("'") + b.delimiter + "'";
  std::string batches = "delimiter " + delim + ", method " + b.default_method + ", operator " +
                        (b.default_operator_code.empty() ? "from each row" : b.default_operator_code) +
                        ", at most " + std::to_string(b.max_rows) + " rows";
  line("batches", batches);
  auto caps = [&b](const std::map<std::string, int64_t>& m) {
    std::string s;
    for (const auto& [code, minor] : m) {
      s += (s.empty() ? "" : ", ") + FormatFixedAmount(minor, b.currencies.MinorUnits(code).value_or(0)) +
           " " + code;
    }
    return s.empty() ? std::string("none") : s;
  };
  line("caps", "per payout " + caps(b.max_amount) + "; per batch " + caps(b.max_total));
  std::string overridden;
  const auto& iso = CurrencyTable::Iso4217();
  for (const auto& [code, minor] : b.currencies.entries()) {
    std::optional<int> builtin = iso.MinorUnits(code);
    if (builtin == minor) continue;
    overridden += (overridden.empty() ? "" : ", ") + code + " " + std::to_string(minor) + " minor digits" +
                  (builtin ? "" : " (added)");
  }
  line("currencies", overridden.empty() ? "ISO 4217" : "ISO 4217 with " + overridden);

  line("metrics", c.metrics_listen.empty() ? "off" : "http://" + c.metrics_listen + "/metrics");
  std::string callbacks = g.callback_url.empty() ? "no callbackUrl" : "callbackUrl " + RedactUrl(g.callback_url);
  callbacks += c.callbacks_listen.empty() ? ", no local receiver" : ", receiver on " + c.callbacks_listen;
  line("callbacks", callbacks);
  line("log", std::string(LevelName(c.log_level)) + ", " +
                  (c.log_format == log::Format::kJson ? "json" : "text"));
  line("shutdown", "grace " + FormatDuration(c.shutdown_grace));
  return out.str();
}

}  // namespace payoutd
