// Structured logging: one event per line on stderr, as text (`ts level event key=value ...`) or as
// JSON. Callers pass an event name and fields; never pass a secret, a token or a full account
// number (use MaskAccount). Thread-safe: a line is written whole.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace payoutd::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kText, kJson };

// The configuration's `log` section (docs/configuration.md#log); reloaded on SIGHUP.
struct Options {
  Level level = Level::kInfo;
  Format format = Format::kText;
};

// Parses "debug" | "info" | "warn" (or "warning") | "error"; false when unknown.
bool ParseLevel(std::string_view s, Level* out);
bool ParseFormat(std::string_view s, Format* out);
// The names ParseLevel and ParseFormat read, as log lines and `payoutd check` write them.
std::string_view LevelName(Level level);
std::string_view FormatName(Format format);

void SetLevel(Level level);
void SetFormat(Format format);
void Configure(const Options& options);
// Where lines go; stderr by default. For tests.
void SetSink(void (*sink)(std::string_view line));
bool Enabled(Level level);

using Field = std::pair<std::string_view, std::string>;
void Write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void Debug(std::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kDebug, e, f);
}
inline void Info(std::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kInfo, e, f);
}
inline void Warn(std::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kWarn, e, f);
}
inline void Error(std::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kError, e, f);
}

}  // namespace payoutd::log

namespace payoutd {
// "11223344" -> "****3344"; short numbers are masked whole ("****").
std::string MaskAccount(std::string_view account_number);
}  // namespace payoutd
