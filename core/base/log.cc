#include "core/base/log.h"

#include "core/base/json_text.h"
#include "core/base/mutex.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace payoutd::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};
// Held while a line is written, so that lines from several threads never interleave.
Mutex g_mu;
void (*g_sink)(std::string_view) GUARDED_BY(g_mu) = nullptr;

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// Text values are quoted when they hold spaces, quotes or '=' so a line stays one event.
void AppendTextValue(std::string& out, std::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s)
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) plain = false;
  if (plain) {
    out.append(s);
  } else {
    AppendJsonString(out, s);
  }
}

}  // namespace

bool ParseLevel(std::string_view s, Level* out) {
  if (s == "debug")
    *out = Level::kDebug;
  else if (s == "info")
    *out = Level::kInfo;
  else if (s == "warn" || s == "warning")
    *out = Level::kWarn;
  else if (s == "error")
    *out = Level::kError;
  else
    return false;
  return true;
}

bool ParseFormat(std::string_view s, Format* out) {
  if (s == "text")
    *out = Format::kText;
  else if (s == "json")
    *out = Format::kJson;
  else
    return false;
  return true;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

std::string_view FormatName(Format format) {
  return format == Format::kJson ? "json" : "text";
}

void SetLevel(Level level) {
  g_level = static_cast<int>(level);
}
void SetFormat(Format format) {
  g_format = static_cast<int>(format);
}
void Configure(const Options& options) {
  SetLevel(options.level);
  SetFormat(options.format);
}
void SetSink(void (*sink)(std::string_view)) {
  MutexLock lock(&g_mu);
  g_sink = sink;
}
bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  std::string line;
  line.reserve(128);
  if (static_cast<Format>(g_format.load()) == Format::kJson) {
    line += "{\"ts\":";
    AppendJsonString(line, Timestamp());
    line += ",\"level\":";
    AppendJsonString(line, LevelName(level));
    line += ",\"event\":";
    AppendJsonString(line, event);
    for (const auto& [k, v] : fields) {
      line.push_back(',');
      AppendJsonString(line, k);
      line.push_back(':');
      AppendJsonString(line, v);
    }
    line += "}\n";
  } else {
    line += Timestamp();
    line.push_back(' ');
    line += LevelName(level);
    line.push_back(' ');
    line.append(event);
    for (const auto& [k, v] : fields) {
      line.push_back(' ');
      line.append(k);
      line.push_back('=');
      AppendTextValue(line, v);
    }
    line.push_back('\n');
  }
  MutexLock lock(&g_mu);
  if (auto sink = g_sink) {
    sink(line);
  } else {
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
}

}  // namespace payoutd::log

namespace payoutd {
std::string MaskAccount(std::string_view account_number) {
  if (account_number.size() <= 4) return "****";
  return "****" + std::string(account_number.substr(account_number.size() - 4));
}
}  // namespace payoutd
