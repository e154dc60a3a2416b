#include "config/config.h"
#include "config/summary.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace payoutd {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The smallest configuration that is accepted: only the required keys.
const char kMinimal[] = R"(gateway:
  base_url: https://gw.example.com
auth:
  merchant_code: M1
  secret_file: secret.key
spool:
  dir: spool
state:
  path: state.db
)";

std::string WithMinimal(const std::string& extra) {
  return std::string(kMinimal) + extra;
}

// Parses without touching the secret, as if from /etc/payoutd/payoutd.yaml.
Result<Config> Parse(const std::string& yaml) {
  return ParseConfig(yaml, "/etc/payoutd/payoutd.yaml", false);
}

std::string ErrorsOf(const std::string& yaml) {
  Result<Config> r = Parse(yaml);
  return r.ok() ? std::string("<accepted>") : r.error();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "payoutd-config-test-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& content, fs::perms mode) const {
    fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    fs::permissions(p, mode);
    return p.string();
  }

 private:
  fs::path path_;
};

constexpr fs::perms kOwnerOnly = fs::perms::owner_read | fs::perms::owner_write;
constexpr fs::perms kWorldReadable = kOwnerOnly | fs::perms::group_read | fs::perms::others_read;

// Sets an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// ---------------------------------------------------------------------------------------------
// Defaults and every key.

TEST(ParseConfig, MinimalFileGetsEveryDefault) {
  Result<Config> r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = *r;
  const Config d;  // the struct's own defaults are those of docs/configuration.md
  EXPECT_EQ(c.path, "/etc/payoutd/payoutd.yaml");
  EXPECT_EQ(c.gateway.base_url, "https://gw.example.com");
  EXPECT_EQ(c.gateway.api_version, 2);
  EXPECT_EQ(c.gateway.timeout, seconds(30));
  EXPECT_EQ(c.gateway.connect_timeout, seconds(5));
  EXPECT_EQ(c.gateway.ca_file, "");
  EXPECT_TRUE(c.gateway.verify_tls);
  EXPECT_EQ(c.gateway.auth_mode, GatewayOptions::AuthMode::kJwtHs256);
  EXPECT_EQ(c.gateway.merchant_code, "M1");
  EXPECT_EQ(c.gateway.secret, "");  // not read
  EXPECT_EQ(c.secret_file, "/etc/payoutd/secret.key");
  EXPECT_EQ(c.gateway.token_ttl, minutes(10));
  EXPECT_EQ(c.gateway.limits.requests_per_second, 50);
  EXPECT_EQ(c.gateway.limits.burst, 10);
  EXPECT_EQ(c.gateway.limits.max_in_flight, 64);
  EXPECT_EQ(c.gateway.retry.max_attempts, 8);
  EXPECT_EQ(c.gateway.retry.initial_backoff, milliseconds(500));
  EXPECT_EQ(c.gateway.retry.max_backoff, seconds(60));
  EXPECT_EQ(c.gateway.callback_url, "");
  EXPECT_EQ(c.polling.initial_delay, seconds(2));
  EXPECT_EQ(c.polling.max_interval, seconds(60));
  EXPECT_EQ(c.polling.give_up_after, hours(72));
  EXPECT_EQ(c.polling.final_statuses,
            (std::vector<std::string>{"SUCCESS", "FAILED", "REJECTED", "CANCELLED", "EXPIRED"}));
  EXPECT_EQ(c.polling.success_statuses, std::vector<std::string>{"SUCCESS"});
  EXPECT_EQ(c.spool.dir, "/etc/payoutd/spool");
  EXPECT_EQ(c.spool.settle, seconds(2));
  EXPECT_EQ(c.batches.delimiter, ',');
  EXPECT_EQ(c.batches.default_method, "BANK_TRANSFER");
  EXPECT_EQ(c.batches.default_operator_code, "");
  EXPECT_EQ(c.batches.max_rows, 1'000'000);
  EXPECT_TRUE(c.batches.max_amount.empty());
  EXPECT_TRUE(c.batches.max_total.empty());
  EXPECT_EQ(c.batches.currencies.entries(), CurrencyTable::Iso4217().entries());
  EXPECT_EQ(c.state.path, "/etc/payoutd/state.db");
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9464");
  EXPECT_EQ(c.callbacks.listen, "");
  EXPECT_EQ(c.log.level, log::Level::kInfo);
  EXPECT_EQ(c.log.format, log::Format::kText);
  EXPECT_EQ(c.shutdown_grace, seconds(10));
  EXPECT_EQ(c.shutdown_grace, d.shutdown_grace);
}

const char kEveryKey[] = R"(gateway:
  base_url: http://127.0.0.1:8080/v1/
  api_version: 3
  timeout: 45s
  connect_timeout: 1500ms
  ca_file: certs/ca.pem
  verify_tls: false
auth:
  mode: static
  merchant_code: TST-MERCHANT
  secret_file: /run/keys/token
  token_ttl: 1h30m
limits:
  requests_per_second: 12.5
  burst: 3
  max_in_flight: 10000
retry:
  max_attempts: 100
  initial_backoff: 100ms
  max_backoff: 5m
polling:
  initial_delay: 250ms
  max_interval: 30s
  give_up_after: 24h
  final_statuses: [PAID, DECLINED]
  success_statuses: [PAID]
spool:
  dir: /srv/payouts/spool
  settle: 5s
batches:
  delimiter: ";"
  default_method: MOBILE_MONEY
  default_operator_code: MPESA
  max_rows: 5000
  currencies:
    XYZ: {minor_units: 3}
    JPY: {minor_units: 2}
  max_amount: {USD: "5000.00", JPY: "100.50", XYZ: "1.234"}
  max_total:
    USD: 250000
state:
  path: ../state/payoutd.db
metrics:
  listen: "[::1]:9000"
callbacks:
  url: https://me.example.com/payout-callback?k=v
  listen: 0.0.0.0:8443
log:
  level: debug
  format: json
shutdown_grace: 45s
)";

TEST(ParseConfig, ReadsEveryKeyIntoTheStruct) {
  Result<Config> r = Parse(kEveryKey);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = *r;
  EXPECT_EQ(c.gateway.base_url, "http://127.0.0.1:8080/v1");  // trailing slash dropped
  EXPECT_EQ(c.gateway.api_version, 3);
  EXPECT_EQ(c.gateway.timeout, seconds(45));
  EXPECT_EQ(c.gateway.connect_timeout, milliseconds(1500));
  EXPECT_EQ(c.gateway.ca_file, "/etc/payoutd/certs/ca.pem");
  EXPECT_FALSE(c.gateway.verify_tls);
  EXPECT_EQ(c.gateway.auth_mode, GatewayOptions::AuthMode::kStatic);
  EXPECT_EQ(c.gateway.merchant_code, "TST-MERCHANT");
  EXPECT_EQ(c.secret_file, "/run/keys/token");
  EXPECT_EQ(c.gateway.token_ttl, minutes(90));
  EXPECT_EQ(c.gateway.limits.requests_per_second, 12.5);
  EXPECT_EQ(c.gateway.limits.burst, 3);
  EXPECT_EQ(c.gateway.limits.max_in_flight, 10000);
  EXPECT_EQ(c.gateway.retry.max_attempts, 100);
  EXPECT_EQ(c.gateway.retry.initial_backoff, milliseconds(100));
  EXPECT_EQ(c.gateway.retry.max_backoff, minutes(5));
  EXPECT_EQ(c.polling.initial_delay, milliseconds(250));
  EXPECT_EQ(c.polling.max_interval, seconds(30));
  EXPECT_EQ(c.polling.give_up_after, hours(24));
  EXPECT_EQ(c.polling.final_statuses, (std::vector<std::string>{"PAID", "DECLINED"}));
  EXPECT_EQ(c.polling.success_statuses, std::vector<std::string>{"PAID"});
  EXPECT_EQ(c.spool.dir, "/srv/payouts/spool");
  EXPECT_EQ(c.spool.settle, seconds(5));
  EXPECT_EQ(c.batches.delimiter, ';');
  EXPECT_EQ(c.batches.default_method, "MOBILE_MONEY");
  EXPECT_EQ(c.batches.default_operator_code, "MPESA");
  EXPECT_EQ(c.batches.max_rows, 5000);
  EXPECT_EQ(c.batches.currencies.MinorUnits("XYZ"), 3);
  EXPECT_EQ(c.batches.currencies.MinorUnits("JPY"), 2);
  EXPECT_EQ(c.batches.currencies.MinorUnits("USD"), 2);
  // The gateway client writes amounts with the same digits the validator used.
  EXPECT_EQ(c.gateway.currency_minor_units.at("XYZ"), 3);
  EXPECT_EQ(c.gateway.currency_minor_units.at("JPY"), 2);
  EXPECT_EQ(c.batches.max_amount,
            (std::map<std::string, int64_t>{{"USD", 500000}, {"JPY", 10050}, {"XYZ", 1234}}));
  EXPECT_EQ(c.batches.max_total, (std::map<std::string, int64_t>{{"USD", 25000000}}));
  EXPECT_EQ(c.state.path, "/etc/state/payoutd.db");
  EXPECT_EQ(c.metrics.listen, "[::1]:9000");
  EXPECT_EQ(c.gateway.callback_url, "https://me.example.com/payout-callback?k=v");
  EXPECT_EQ(c.callbacks.listen, "0.0.0.0:8443");
  EXPECT_EQ(c.log.level, log::Level::kDebug);
  EXPECT_EQ(c.log.format, log::Format::kJson);
  EXPECT_EQ(c.shutdown_grace, seconds(45));
}

TEST(ParseConfig, ResolvesRelativePathsAgainstTheConfigFolder) {
  Result<Config> r = ParseConfig(kMinimal, "/srv/conf/payoutd.yaml", false);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->secret_file, "/srv/conf/secret.key");
  EXPECT_EQ(r->spool.dir, "/srv/conf/spool");
  EXPECT_EQ(r->state.path, "/srv/conf/state.db");
}

TEST(ParseConfig, EmptySectionsTakeDefaults) {
  Result<Config> r = Parse(WithMinimal("limits:\nretry: {}\nlog:\n"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.limits.burst, 10);
  EXPECT_EQ(r->gateway.retry.max_attempts, 8);
}

TEST(ParseConfig, EmptyMetricsListenTurnsMetricsOff) {
  Result<Config> r = Parse(WithMinimal("metrics:\n  listen: \"\"\n"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->metrics.listen, "");
}

TEST(ParseConfig, TabDelimiterIsAccepted) {
  Result<Config> r = Parse(WithMinimal("batches:\n  delimiter: \"\\t\"\n"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->batches.delimiter, '\t');
}

// ---------------------------------------------------------------------------------------------
// Errors: each names the key path and its line.

TEST(ParseConfig, WrongTypeNamesKeyValueAndLine) {
  std::string yaml = WithMinimal("limits:\n  requests_per_second: fast\n");
  EXPECT_EQ(ErrorsOf(yaml),
            "limits.requests_per_second: expected a positive number, got 'fast' (line 11)");
}

TEST(ParseConfig, ListWhereScalarExpectedIsAnError) {
  EXPECT_EQ(ErrorsOf(WithMinimal("retry:\n  max_attempts: [1, 2]\n")),
            "retry.max_attempts: expected an integer from 1 to 100, got a list (line 11)");
}

TEST(ParseConfig, ScalarWhereSectionExpectedIsAnError) {
  EXPECT_EQ(ErrorsOf(WithMinimal("limits: 5\n")),
            "limits: expected a mapping of keys, got '5' (line 10)");
}

TEST(ParseConfig, UnknownTopLevelKeyIsAnError) {
  EXPECT_EQ(ErrorsOf(WithMinimal("shutdown_grase: 5s\n")),
            "shutdown_grase: unknown key (did you mean 'shutdown_grace'?) (line 10)");
}

TEST(ParseConfig, UnknownNestedKeyIsAnErrorNotADefault) {
  std::string yaml = R"(gateway:
  base_url: https://gw.example.com
  timout: 5s
auth:
  merchant_code: M1
  secret_file: secret.key
spool:
  dir: spool
state:
  path: state.db
)";
  EXPECT_EQ(ErrorsOf(yaml), "gateway.timout: unknown key (did you mean 'timeout'?) (line 3)");
}

TEST(ParseConfig, UnknownKeyInsideCurrencyOverrideIsAnError) {
  EXPECT_EQ(
      ErrorsOf(WithMinimal("batches:\n  currencies:\n    XYZ: {minor_unit: 2}\n")),
      "batches.currencies.XYZ.minor_unit: unknown key (did you mean 'minor_units'?) (line 12)\n"
      "batches.currencies.XYZ.minor_units: required key is missing (line 12)");
}

TEST(ParseConfig, DuplicateKeyIsAnError) {
  EXPECT_EQ(ErrorsOf(WithMinimal("log:\n  level: info\n  level: debug\n")),
            "log.level: duplicate key (first at line 11) (line 12)");
}

TEST(ParseConfig, MissingRequiredKeysAreEachNamed) {
  std::string errors = ErrorsOf("log:\n  level: info\n");
  EXPECT_THAT(errors, HasSubstr("gateway.base_url: required, but missing"));
  EXPECT_THAT(errors, HasSubstr("auth.merchant_code: required, but missing"));
  EXPECT_THAT(errors, HasSubstr("auth.secret_file: required, but missing"));
  EXPECT_THAT(errors, HasSubstr("spool.dir: required, but missing"));
  EXPECT_THAT(errors, HasSubstr("state.path: required, but missing"));
}

TEST(ParseConfig, MissingKeyInPresentSectionPointsAtTheSection) {
  std::string yaml =
      "gateway:\n  api_version: 2\nauth:\n  merchant_code: M\n  secret_file: s\n"
      "spool:\n  dir: d\nstate:\n  path: p\n";
  EXPECT_EQ(ErrorsOf(yaml), "gateway.base_url: required key is missing (line 1)");
}

TEST(ParseConfig, EmptyDocumentReportsTheRequiredKeys) {
  Result<Config> r = Parse("");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("gateway.base_url: required"));
}

TEST(ParseConfig, EmptyRequiredStringIsAnError) {
  std::string yaml = std::string(kMinimal);
  yaml.replace(yaml.find("M1"), 2, "\"\"");
  EXPECT_EQ(ErrorsOf(yaml), "auth.merchant_code: must not be empty (line 4)");
}

TEST(ParseConfig, BadDurationNamesTheExpectedForm) {
  EXPECT_EQ(
      ErrorsOf(WithMinimal("shutdown_grace: soon\n")),
      "shutdown_grace: expected a duration like 250ms, 2s, 5m, 72h or 1h30m, got 'soon' (line 10)");
  EXPECT_EQ(
      ErrorsOf(WithMinimal("shutdown_grace: 10\n")),
      "shutdown_grace: expected a duration like 250ms, 2s, 5m, 72h or 1h30m, got '10' (line 10)");
}

TEST(ParseConfig, ZeroDurationIsOutOfRange) {
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  give_up_after: 0s\n")),
            "polling.give_up_after: expected a duration greater than zero, got '0s' (line 11)");
}

TEST(ParseConfig, SpoolSettleMayBeZeroForWritersThatRenameFilesIn) {
  std::string yaml = WithMinimal("");
  yaml.replace(yaml.find("spool:\n"), 7, "spool:\n  settle: 0s\n");
  Result<Config> r = Parse(yaml);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->spool.settle, Duration::zero());
  yaml.replace(yaml.find("0s"), 2, "soon");
  EXPECT_THAT(ErrorsOf(yaml), HasSubstr("spool.settle: expected a duration like"));
}

TEST(ParseConfig, EveryRangeIsChecked) {
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"limits:\n  requests_per_second: 0\n",
       "limits.requests_per_second: expected a positive number, got '0' (line 11)"},
      {"limits:\n  requests_per_second: -3\n",
       "limits.requests_per_second: expected a positive number, got '-3' (line 11)"},
      {"limits:\n  requests_per_second: .nan\n",
       "limits.requests_per_second: expected a positive number, got '.nan' (line 11)"},
      {"limits:\n  burst: 0\n",
       "limits.burst: expected an integer from 1 to 2147483647, got '0' (line 11)"},
      {"limits:\n  max_in_flight: 10001\n",
       "limits.max_in_flight: expected an integer from 1 to 10000, got '10001' (line 11)"},
      {"limits:\n  max_in_flight: 0\n",
       "limits.max_in_flight: expected an integer from 1 to 10000, got '0' (line 11)"},
      {"retry:\n  max_attempts: 0\n",
       "retry.max_attempts: expected an integer from 1 to 100, got '0' (line 11)"},
      {"retry:\n  max_attempts: 101\n",
       "retry.max_attempts: expected an integer from 1 to 100, got '101' (line 11)"},
      {"batches:\n  max_rows: 0\n",
       "batches.max_rows: expected an integer of at least 1, got '0' (line 11)"},
      {"batches:\n  max_rows: 1.5\n",
       "batches.max_rows: expected an integer of at least 1, got '1.5' (line 11)"},
      {"batches:\n  currencies:\n    XYZ: {minor_units: 10}\n",
       "batches.currencies.XYZ.minor_units: expected an integer from 0 to 9, got '10' (line 12)"},
      {"retry:\n  initial_backoff: 2m\n  max_backoff: 1m\n",
       "retry.initial_backoff: retry.initial_backoff (2m) must not exceed retry.max_backoff (1m) "
       "(line 11)"},
      {"polling:\n  initial_delay: 2m\n",
       "polling.initial_delay: polling.initial_delay (2m) must not exceed polling.max_interval "
       "(1m) (line 11)"},
  };
  for (const Case& c : cases) EXPECT_EQ(ErrorsOf(WithMinimal(c.yaml)), c.error) << c.yaml;
}

TEST(ParseConfig, ApiVersionMustBeAtLeastOne) {
  std::string yaml = std::string(kMinimal);
  yaml.insert(yaml.find("auth:"), "  api_version: 0\n");
  EXPECT_EQ(ErrorsOf(yaml),
            "gateway.api_version: expected an integer from 1 to 2147483647, got '0' (line 3)");
}

TEST(ParseConfig, BadBoolIsAnError) {
  std::string yaml = std::string(kMinimal);
  yaml.insert(yaml.find("auth:"), "  verify_tls: maybe\n");
  EXPECT_EQ(ErrorsOf(yaml), "gateway.verify_tls: expected true or false, got 'maybe' (line 3)");
}

std::string WithBaseUrl(const std::string& url) {
  std::string yaml = kMinimal;
  yaml.replace(yaml.find("https://gw.example.com"), 22, url);
  return yaml;
}

TEST(ParseConfig, BaseUrlMustBeHttpOrHttps) {
  EXPECT_EQ(
      ErrorsOf(WithBaseUrl("ftp://gw.example.com")),
      "gateway.base_url: expected an http:// or https:// URL, got 'ftp://gw.example.com' (line 2)");
  EXPECT_EQ(ErrorsOf(WithBaseUrl("gw.example.com")),
            "gateway.base_url: expected an http:// or https:// URL, got 'gw.example.com' (line 2)");
  EXPECT_THAT(ErrorsOf(WithBaseUrl("https:///payouts")), HasSubstr("expected a host in the URL"));
  EXPECT_THAT(ErrorsOf(WithBaseUrl("https://gw:99999")),
              HasSubstr("expected a port from 1 to 65535"));
  EXPECT_THAT(ErrorsOf(WithBaseUrl("https://gw/api?x=1")), HasSubstr("must not have a query"));
  EXPECT_TRUE(Parse(WithBaseUrl("HTTP://[::1]:8080")).ok());
}

TEST(ParseConfig, UrlWithCredentialsIsRefusedWithoutEchoingThem) {
  std::string errors = ErrorsOf(WithBaseUrl("https://user:hunter2@gw.example.com"));
  EXPECT_THAT(errors, HasSubstr("gateway.base_url: a URL must not carry credentials"));
  EXPECT_THAT(errors, Not(HasSubstr("hunter2")));
}

TEST(ParseConfig, CallbackUrlIsCheckedToo) {
  EXPECT_EQ(ErrorsOf(WithMinimal("callbacks:\n  url: mailto:me@example.com\n")),
            "callbacks.url: expected an http:// or https:// URL (line 11)");
}

TEST(ParseConfig, BadListenAddressIsAnError) {
  EXPECT_EQ(ErrorsOf(WithMinimal("metrics:\n  listen: localhost\n")),
            "metrics.listen: expected host:port, e.g. 127.0.0.1:9464, got 'localhost' (line 11)");
  EXPECT_EQ(ErrorsOf(WithMinimal("callbacks:\n  listen: \"127.0.0.1:70000\"\n")),
            "callbacks.listen: expected a port from 0 to 65535 after ':', got '127.0.0.1:70000' "
            "(line 11)");
}

TEST(ParseConfig, UnknownCurrencyInCapsNamesTheKey) {
  EXPECT_EQ(
      ErrorsOf(WithMinimal("batches:\n  max_amount:\n    XYZ: \"10.00\"\n")),
      "batches.max_amount.XYZ: unknown currency 'XYZ' (use an ISO 4217 code, or declare it under "
      "batches.currencies) (line 12)");
  EXPECT_THAT(ErrorsOf(WithMinimal("batches:\n  max_total: {usd: 10}\n")),
              HasSubstr("batches.max_total.usd: unknown currency 'usd'"));
}

TEST(ParseConfig, CapWithTooManyDecimalsForItsCurrencyIsAnError) {
  std::string errors = ErrorsOf(WithMinimal("batches:\n  max_amount: {JPY: \"10.5\"}\n"));
  EXPECT_THAT(errors,
              AllOf(HasSubstr("batches.max_amount.JPY: "), HasSubstr("got '10.5' (line 11)")));
  errors = ErrorsOf(WithMinimal("batches:\n  max_total: {USD: lots}\n"));
  EXPECT_THAT(errors,
              AllOf(HasSubstr("batches.max_total.USD: "), HasSubstr("got 'lots' (line 11)")));
}

TEST(ParseConfig, CurrencyOverrideCodeMustBeThreeUpperCaseLetters) {
  EXPECT_EQ(ErrorsOf(WithMinimal("batches:\n  currencies: {Xy1: {minor_units: 2}}\n")),
            "batches.currencies.Xy1: expected a currency code of three upper-case letters, got "
            "'Xy1' (line 11)");
}

TEST(ParseConfig, BadDelimiterIsAnError) {
  for (const char* bad : {"\"ab\"", "'\"'", "\"\"", "\"\\n\"", "\"é\""}) {
    std::string errors = ErrorsOf(WithMinimal(std::string("batches:\n  delimiter: ") + bad + "\n"));
    EXPECT_THAT(
        errors,
        HasSubstr("batches.delimiter: expected a single ASCII character other than a quote or "
                  "line break"))
        << bad;
    EXPECT_THAT(errors, HasSubstr("(line 11)")) << bad;
  }
}

TEST(ParseConfig, SuccessStatusesMustBeFinal) {
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  final_statuses: [PAID, FAILED]\n")),
            "polling.success_statuses: status 'SUCCESS' is not in polling.final_statuses; a "
            "success must be "
            "final (line 11)");
  EXPECT_EQ(
      ErrorsOf(WithMinimal("polling:\n  success_statuses:\n    - SUCCESS\n    - DONE\n")),
      "polling.success_statuses: status 'DONE' is not in polling.final_statuses; a success must be "
      "final (line 13)");
}

TEST(ParseConfig, StatusListsMustBeNonEmptyListsOfNames) {
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  final_statuses: []\n")),
            "polling.final_statuses: must list at least one status (line 11)");
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  final_statuses: SUCCESS\n")),
            "polling.final_statuses: expected a list of gateway statuses, got 'SUCCESS' (line 11)");
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  final_statuses: [SUCCESS, {a: b}]\n")),
            "polling.final_statuses[1]: expected a gateway status such as SUCCESS, got a mapping "
            "(line 11)");
  EXPECT_EQ(ErrorsOf(WithMinimal("polling:\n  success_statuses: [SUCCESS, SUCCESS]\n")),
            "polling.success_statuses[1]: status 'SUCCESS' is listed twice (line 11)");
}

TEST(ParseConfig, BadLogSettingsAreErrors) {
  EXPECT_EQ(ErrorsOf(WithMinimal("log:\n  level: loud\n")),
            "log.level: expected debug, info, warn or error, got 'loud' (line 11)");
  EXPECT_EQ(ErrorsOf(WithMinimal("log:\n  format: xml\n")),
            "log.format: expected text or json, got 'xml' (line 11)");
}

// kMinimal with its state section's lines replaced by `lines`.
std::string WithState(const std::string& lines) {
  std::string yaml = kMinimal;
  const std::string path = "  path: state.db\n";
  return yaml.replace(yaml.find(path), path.size(), lines);
}

// The PostgreSQL state: url instead of path, the lease, and the errors that name their key.
TEST(ParseConfig, PostgresqlStateTakesUrlInsteadOfPath) {
  Result<Config> r =
      Parse(WithState("  backend: postgresql\n"
                      "  url: \"postgresql://payoutd@db1,db2/p?target_session_attrs=read-write\"\n"
                      "  instance: pay1\n  lease: 5s\n"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->state.backend, StateOptions::Backend::kPostgresql);
  EXPECT_EQ(r->state.url, "postgresql://payoutd@db1,db2/p?target_session_attrs=read-write");
  EXPECT_EQ(r->state.instance, "pay1");
  EXPECT_EQ(r->state.lease, seconds(5));
  std::string summary = Summarize(*r);
  EXPECT_THAT(summary, HasSubstr("postgresql postgresql://payoutd@db1,db2/p"));
  EXPECT_THAT(summary, HasSubstr("instance pay1, lease 5s"));
}

TEST(ParseConfig, BadStateSettingsAreErrors) {
  EXPECT_THAT(ErrorsOf(WithState("  backend: mysql\n  path: state.db\n")),
              HasSubstr("state.backend: expected sqlite or postgresql, got 'mysql'"));
  EXPECT_THAT(ErrorsOf(WithState("  backend: postgresql\n")), HasSubstr("state.url"));
  EXPECT_THAT(ErrorsOf(WithState("  path: state.db\n  lease: 200ms\n")),
              HasSubstr("state.lease: must be at least 1s"));
  std::string errors = ErrorsOf(
      WithState("  backend: postgresql\n  url: \"postgresql://u:hunter2@h/db?nosuchoption=1\"\n"));
  EXPECT_THAT(errors, HasSubstr("state.url"));
  EXPECT_THAT(errors, Not(HasSubstr("hunter2")));
}

TEST(ParseConfig, BadAuthModeIsAnError) {
  std::string yaml = std::string(kMinimal);
  yaml.insert(yaml.find("spool:"), "  mode: basic\n");
  EXPECT_EQ(ErrorsOf(yaml), "auth.mode: expected jwt-hs256 or static, got 'basic' (line 6)");
}

TEST(ParseConfig, CollectsEveryErrorInFileOrder) {
  std::string yaml = R"(gateway:
  base_url: ftp://x
  timeout: forever
auth:
  merchant_code: M1
limits:
  requests_per_second: fast
  burst: 0
  bogus: 1
spool:
  dir: spool
state:
  path: state.db
)";
  EXPECT_EQ(ErrorsOf(yaml),
            "gateway.base_url: expected an http:// or https:// URL, got 'ftp://x' (line 2)\n"
            "gateway.timeout: expected a duration like 250ms, 2s, 5m, 72h or 1h30m, got 'forever' "
            "(line 3)\n"
            "auth.secret_file: required key is missing (line 4)\n"
            "limits.requests_per_second: expected a positive number, got 'fast' (line 7)\n"
            "limits.burst: expected an integer from 1 to 2147483647, got '0' (line 8)\n"
            "limits.bogus: unknown key (line 9)");
}

TEST(ParseConfig, YamlSyntaxErrorNamesTheOriginAndLine) {
  Result<Config> r = ParseConfig("gateway:\n  base_url: [unclosed\n", "/etc/p.yaml", false);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), AllOf(HasSubstr("/etc/p.yaml: not valid YAML"), HasSubstr("(line ")));
}

TEST(ParseConfig, SeveralDocumentsAreRefused) {
  Result<Config> r = ParseConfig(std::string(kMinimal) + "---\n" + kMinimal, "/etc/p.yaml", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.error(),
      "/etc/p.yaml: holds more than one YAML document (line 10); a configuration is one document");
}

// yaml-cpp's LoadAll never returns on these; found by fuzz_config.
TEST(ParseConfig, StrayFlowCommaIsASyntaxErrorNotAHang) {
  EXPECT_EQ(ErrorsOf(","), "/etc/payoutd/payoutd.yaml: not valid YAML: unexpected text (line 1)");
  EXPECT_EQ(ErrorsOf("[a],"),
            "/etc/payoutd/payoutd.yaml: not valid YAML: unexpected text (line 1)");
  EXPECT_THAT(ErrorsOf(std::string(kMinimal) + "log: {level: info},\n"),
              AllOf(HasSubstr("not valid YAML"), HasSubstr("(line 10)")));
}

TEST(ParseConfig, NonMappingDocumentIsRefused) {
  EXPECT_EQ(ErrorsOf("- a\n- b\n").substr(0, 54),
            "configuration: expected a mapping of keys, got a list ");
}

TEST(ParseConfig, ErrorValuesAreEscapedToStayOnOneLine) {
  std::string errors = ErrorsOf(WithMinimal("shutdown_grace: \"1s\\n2s\"\n"));
  EXPECT_EQ(errors,
            "shutdown_grace: expected a duration like 250ms, 2s, 5m, 72h or 1h30m, got '1s\\x0a2s' "
            "(line 10)");
}

// ---------------------------------------------------------------------------------------------
// The secret file (LoadConfig).

std::string ConfigWithSecret(const std::string& secret_file,
                             const std::string& mode = "jwt-hs256") {
  std::string yaml = kMinimal;
  yaml.replace(yaml.find("secret.key"), 10, secret_file);
  yaml.insert(yaml.find("spool:"), "  mode: " + mode + "\n");
  return yaml;
}

TEST(LoadConfig, ReadsTheSecretAndTrimsTheTrailingNewline) {
  TempDir dir;
  dir.Write("secret.key", "s3cr3t-value\n", kOwnerOnly);
  std::string path = dir.Write("payoutd.yaml", ConfigWithSecret("secret.key"), kOwnerOnly);
  Result<Config> r = LoadConfig(path);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.secret, "s3cr3t-value");
  EXPECT_EQ(r->secret_file, (dir.path() / "secret.key").string());
  EXPECT_EQ(r->spool.dir, (dir.path() / "spool").string());
  EXPECT_EQ(r->path, path);
}

TEST(LoadConfig, StaticModeTakesTheFileAsBearerToken) {
  TempDir dir;
  dir.Write("token", "bearer-token-xyz\r\n", kOwnerOnly);
  Result<Config> r =
      LoadConfig(dir.Write("p.yaml", ConfigWithSecret("token", "static"), kOwnerOnly));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.auth_mode, GatewayOptions::AuthMode::kStatic);
  EXPECT_EQ(r->gateway.secret, "bearer-token-xyz");
}

TEST(LoadConfig, StaticTokenSpanningLinesIsRefused) {
  TempDir dir;
  dir.Write("token", "line-one\nline-two\n", kOwnerOnly);
  Result<Config> r =
      LoadConfig(dir.Write("p.yaml", ConfigWithSecret("token", "static"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("a static bearer token must be one line"));
  EXPECT_THAT(r.error(), Not(HasSubstr("line-one")));
}

TEST(LoadConfig, SecretReadableByOthersIsRefusedWithoutShowingIt) {
  TempDir dir;
  std::string secret = dir.Write("secret.key", "do-not-print-me\n", kWorldReadable);
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret("secret.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(),
            "auth.secret_file: " + secret +
                " is accessible by group or others (mode 0644); run 'chmod 600' on it, or pass it "
                "with systemd LoadCredential= (line 5)");
  EXPECT_THAT(r.error(), Not(HasSubstr("do-not-print-me")));
}

TEST(LoadConfig, SecretWithGroupWriteOnlyIsRefused) {
  TempDir dir;
  dir.Write("secret.key", "x\n", kOwnerOnly | fs::perms::group_write);
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret("secret.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("(mode 0620)"));
}

TEST(LoadConfig, ReadableSecretUnderCredentialsDirectoryIsAccepted) {
  TempDir dir;
  std::string secret = dir.Write("creds/payoutd-secret", "from-systemd\n", kWorldReadable);
  ScopedEnv env("CREDENTIALS_DIRECTORY", (dir.path() / "creds").string());
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret(secret), kOwnerOnly));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.secret, "from-systemd");
}

TEST(LoadConfig, ReadableSecretOutsideCredentialsDirectoryIsStillRefused) {
  TempDir dir;
  dir.Write("creds/other", "x\n", kOwnerOnly);
  dir.Write("secret.key", "x\n", kWorldReadable);
  ScopedEnv env("CREDENTIALS_DIRECTORY", (dir.path() / "creds").string());
  Result<Config> r =
      LoadConfig(dir.Write("p.yaml", ConfigWithSecret("creds/../secret.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("is accessible by group or others"));
}

TEST(LoadConfig, SecretFileMayNameTheCredentialsDirectory) {
  TempDir dir;
  dir.Write("creds/payoutd-secret", "via-variable\n", kWorldReadable);
  ScopedEnv env("CREDENTIALS_DIRECTORY", (dir.path() / "creds").string());
  Result<Config> r = LoadConfig(
      dir.Write("p.yaml", ConfigWithSecret("$CREDENTIALS_DIRECTORY/payoutd-secret"), kOwnerOnly));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.secret, "via-variable");
  EXPECT_EQ(r->secret_file, (dir.path() / "creds/payoutd-secret").string());
}

TEST(LoadConfig, CredentialsDirectoryReferenceWithoutTheVariableIsAnError) {
  TempDir dir;
  ScopedEnv env("CREDENTIALS_DIRECTORY", "");
  Result<Config> r = LoadConfig(
      dir.Write("p.yaml", ConfigWithSecret("${CREDENTIALS_DIRECTORY}/payoutd-secret"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(),
              HasSubstr("auth.secret_file: refers to $CREDENTIALS_DIRECTORY, which is not set"));
}

TEST(LoadConfig, MissingSecretFileNamesIt) {
  TempDir dir;
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret("nope.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "auth.secret_file: cannot open " + (dir.path() / "nope.key").string() +
                           ": No such file or directory (line 5)");
}

TEST(LoadConfig, EmptySecretFileIsRefused) {
  TempDir dir;
  std::string secret = dir.Write("secret.key", "\n", kOwnerOnly);
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret("secret.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "auth.secret_file: " + secret + " is empty (line 5)");
}

TEST(LoadConfig, SecretThatIsAFolderIsRefused) {
  TempDir dir;
  fs::create_directory(dir.path() / "secret.key");
  fs::permissions(dir.path() / "secret.key", fs::perms::owner_all);
  Result<Config> r = LoadConfig(dir.Write("p.yaml", ConfigWithSecret("secret.key"), kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("is not a regular file"));
}

TEST(LoadConfig, UnreadableCaFileIsAnError) {
  TempDir dir;
  dir.Write("secret.key", "x\n", kOwnerOnly);
  std::string yaml = ConfigWithSecret("secret.key");
  yaml.insert(yaml.find("auth:"), "  ca_file: certs/missing.pem\n");
  Result<Config> r = LoadConfig(dir.Write("p.yaml", yaml, kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "gateway.ca_file: cannot read " +
                           (dir.path() / "certs/missing.pem").string() +
                           ": No such file or directory (line 3)");
}

TEST(LoadConfig, MissingConfigFileIsAnError) {
  TempDir dir;
  Result<Config> r = LoadConfig((dir.path() / "absent.yaml").string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("absent.yaml: cannot open"));
}

TEST(LoadConfig, ErrorsInTheFileAreReportedWithTheSecretProblem) {
  TempDir dir;
  std::string yaml = ConfigWithSecret("missing.key") + "limits:\n  burst: 0\n";
  Result<Config> r = LoadConfig(dir.Write("p.yaml", yaml, kOwnerOnly));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error(), HasSubstr("auth.secret_file: cannot open"));
  EXPECT_THAT(r.error(), HasSubstr("limits.burst: expected an integer"));
}

// ---------------------------------------------------------------------------------------------
// The shipped example and the summary.

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ShippedExample, IsAcceptedWithoutItsSecret) {
  std::string yaml = ReadFile(fs::path(PAYOUTD_SOURCE_DIR) / "config/payoutd.yaml");
  ASSERT_FALSE(yaml.empty());
  Result<Config> r = ParseConfig(yaml, "/etc/payoutd/payoutd.yaml", false);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->secret_file, "/etc/payoutd/secret.key");
  EXPECT_EQ(r->spool.dir, "/var/spool/payoutd");
  EXPECT_EQ(r->state.path, "/var/lib/payoutd/state.db");
}

TEST(ShippedExample, LoadsOnceItsSecretFileExists) {
  TempDir dir;
  std::string path = dir.Write(
      "payoutd.yaml", ReadFile(fs::path(PAYOUTD_SOURCE_DIR) / "config/payoutd.yaml"), kOwnerOnly);
  dir.Write("secret.key", "merchant-secret\n", kOwnerOnly);
  Result<Config> r = LoadConfig(path);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.secret, "merchant-secret");
  // Every value in the example is the default, so the example documents the defaults.
  Result<Config> minimal = ParseConfig(kMinimal, path, false);
  ASSERT_TRUE(minimal.ok()) << minimal.error();
  EXPECT_EQ(r->gateway.limits.requests_per_second, minimal->gateway.limits.requests_per_second);
  EXPECT_EQ(r->gateway.retry.max_backoff, minimal->gateway.retry.max_backoff);
  EXPECT_EQ(r->polling.final_statuses, minimal->polling.final_statuses);
  EXPECT_EQ(r->batches.max_rows, minimal->batches.max_rows);
  EXPECT_EQ(r->metrics.listen, minimal->metrics.listen);
  EXPECT_EQ(r->shutdown_grace, minimal->shutdown_grace);
}

TEST(ShippedExample, InTheServiceReadsTheCredentialSystemdPassesIt) {
  TempDir dir;
  std::string path = dir.Write(
      "payoutd.yaml", ReadFile(fs::path(PAYOUTD_SOURCE_DIR) / "config/payoutd.yaml"), kOwnerOnly);
  dir.Write("secret.key", "on-disk\n", kOwnerOnly);
  dir.Write("creds/secret.key", "from-systemd\n", kWorldReadable);  // systemd's copy
  ScopedEnv env("CREDENTIALS_DIRECTORY", (dir.path() / "creds").string());
  Result<Config> r = LoadConfig(path);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->gateway.secret, "from-systemd");
}

TEST(Summarize, ShowsTheSettingsButNeverTheSecret) {
  TempDir dir;
  dir.Write("secret.key", "top-secret-hmac-key\n", kOwnerOnly);
  std::string yaml = ConfigWithSecret("secret.key") +
                     "callbacks:\n  url: https://cb.example.com/hook?token=abc123\n"
                     "batches:\n  currencies: {XYZ: {minor_units: 3}}\n  max_amount: {USD: 5000}\n";
  Result<Config> r = LoadConfig(dir.Write("p.yaml", yaml, kOwnerOnly));
  ASSERT_TRUE(r.ok()) << r.error();
  std::string s = Summarize(*r);
  EXPECT_THAT(s, HasSubstr("https://gw.example.com"));
  EXPECT_THAT(s, HasSubstr("merchant 'M1'"));
  EXPECT_THAT(s, HasSubstr("jwt-hs256"));
  EXPECT_THAT(s, HasSubstr("50 requests/s, burst 10, at most 64 in flight"));
  EXPECT_THAT(s, HasSubstr("8 attempts, backoff 500ms up to 1m"));
  EXPECT_THAT(s, HasSubstr("give up after 72h"));
  EXPECT_THAT(s, HasSubstr((dir.path() / "spool").string()));
  EXPECT_THAT(s, HasSubstr((dir.path() / "state.db").string()));
  EXPECT_THAT(s, HasSubstr("127.0.0.1:9464"));
  EXPECT_THAT(s, HasSubstr("XYZ 3 minor digits (added)"));
  EXPECT_THAT(s, HasSubstr("5000.00 USD"));
  EXPECT_THAT(s, HasSubstr("https://cb.example.com/hook?..."));
  EXPECT_THAT(s, Not(HasSubstr("top-secret-hmac-key")));
  EXPECT_THAT(s, Not(HasSubstr("abc123")));
}

}  // namespace
}  // namespace payoutd
