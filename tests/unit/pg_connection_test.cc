// PgConnection and the PostgreSQL schema against a real server (tests/support/postgres_server.h):
// parameters, error kinds (unavailable vs. conflict), reconnection after a restart, deadlines,
// the password file rule, multi-host URIs, and the schema version check.
#include "core/store/pg_connection.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/store/pg_schema.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

PgConnectOptions Options(const std::string& url) {
  PgConnectOptions o;
  o.url = url;
  return o;
}

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& text,
                      mode_t mode) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

TEST(PgConnection, RunsParameterisedStatementsWithValuesKeptApartFromTheSql) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(conn.ExecScript("CREATE TABLE t (id text PRIMARY KEY, n bigint NOT NULL)").ok());
  const std::string evil = "x'); DROP TABLE t; --";
  for (int i = 0; i < 3; ++i) {  // the prepared statement is reused
    PgResult r = conn.Run("INSERT INTO t VALUES ($1, $2)",
                          PgParams().Add(evil + std::to_string(i)).Add(int64_t{INT64_MAX - i}));
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r.affected(), 1);
  }
  PgResult r = conn.Run("SELECT id, n FROM t ORDER BY id");
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r.rows(), 3);
  EXPECT_EQ(r.Text(0, 0), evil + "0");
  EXPECT_EQ(r.Int(0, 1), INT64_MAX);
  EXPECT_EQ(r.Int(2, 1), INT64_MAX - 2);
}

TEST(PgConnection, ArrayParametersCarryAnyTextExactly) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  const std::vector<std::string> values = {"",         "a,b",  "quote\"d",       "back\\slash",
                                           "{braces}", "NULL", "tab\tnew\nline", "ünïcødé"};
  PgArray texts;
  PgArray ints;
  for (size_t i = 0; i < values.size(); ++i) {
    texts.Add(values[i]);
    ints.Add(static_cast<int64_t>(i) - 3);
  }
  PgResult r = conn.Exec(
      "SELECT t, n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY "
      "AS u (t, n, o) ORDER BY o",
      PgParams().Add(texts.Take()).Add(ints.Take()));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r.rows(), static_cast<int>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(r.Text(static_cast<int>(i), 0), values[i]);
    EXPECT_FALSE(r.IsNull(static_cast<int>(i), 0));
    EXPECT_EQ(r.Int(static_cast<int>(i), 1), static_cast<int64_t>(i) - 3);
  }
  PgArray empty;
  r = conn.Exec("SELECT cardinality($1::text[])", PgParams().Add(empty.Take()));
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r.Int(0, 0), 0);
}

TEST(PgConnection, UniqueViolationIsAConflictNotUnavailable) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(conn.ExecScript("CREATE TABLE t (id text PRIMARY KEY)").ok());
  ASSERT_TRUE(conn.Run("INSERT INTO t VALUES ($1)", PgParams().Add("a")).ok());
  PgResult r = conn.Run("INSERT INTO t VALUES ($1)", PgParams().Add("a"));
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUniqueViolation) << r.message();
  EXPECT_EQ(r.sqlstate(), "23505");
  EXPECT_TRUE(conn.connected());  // a conflict keeps the connection
  PgResult bad = conn.Exec("SELECT * FROM no_such_table");
  EXPECT_EQ(bad.error_kind(), PgErrorKind::kOther) << bad.message();
}

TEST(PgConnection, ServerRestartMakesACallUnavailableAndTheNextCallReconnects) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(conn.Run("SELECT 1").ok());
  ASSERT_TRUE(server->Restart());
  PgResult r = conn.Run("SELECT 1");  // the old session is gone
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable) << r.message();
  EXPECT_FALSE(conn.connected());
  PgResult again = conn.Run("SELECT 2");  // reconnects, prepares again
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(again.Int(0, 0), 2);
}

TEST(PgConnection, StoppedServerIsUnavailableUntilItIsBack) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(conn.Run("SELECT 1").ok());
  ASSERT_TRUE(server->Stop());
  EXPECT_EQ(conn.Run("SELECT 1").error_kind(), PgErrorKind::kUnavailable);
  PgResult r = conn.Run("SELECT 1");  // the connect itself fails
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable);
  EXPECT_NE(r.message().find("cannot connect"), std::string::npos) << r.message();
  ASSERT_TRUE(server->Start());
  EXPECT_TRUE(conn.Run("SELECT 1").ok());
}

TEST(PgConnection, ReadOnlyServerIsUnavailableAndTheConnectionIsDropped) {
  // What a write meets on the old primary after a failover: the next call reconnects, and with
  // target_session_attrs=read-write finds the new primary.
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  PgConnection conn(Options(uri));
  ASSERT_TRUE(conn.ExecScript("CREATE TABLE t (id text)").ok());
  ASSERT_TRUE(conn.ExecScript("SET default_transaction_read_only = on").ok());
  PgResult r = conn.Run("INSERT INTO t VALUES ($1)", PgParams().Add("a"));
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable) << r.message();
  EXPECT_EQ(r.sqlstate(), "25006");
  EXPECT_FALSE(conn.connected());
  EXPECT_TRUE(conn.Run("INSERT INTO t VALUES ($1)", PgParams().Add("a")).ok());
}

TEST(PgConnection, CallPastItsDeadlineReturnsUnavailableInTime) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(conn.Run("SELECT 1").ok());
  auto start = steady_clock::now();
  PgResult r = conn.Exec("SELECT pg_sleep(10)", {}, start + milliseconds(200));
  auto took = steady_clock::now() - start;
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable) << r.message();
  EXPECT_LT(took, milliseconds(2000));
  EXPECT_FALSE(conn.connected());
  EXPECT_TRUE(conn.Run("SELECT 1").ok());
}

TEST(PgConnection, MultiHostUriWithReadWriteTargetSkipsAHostThatIsDown) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string db = server->DatabaseOf(server->CreateDatabase());
  std::string uri = "postgresql:///" + db + "?host=" + server->dir() + "/nowhere," + server->dir() +
                    "&port=1," + std::to_string(server->port()) +
                    "&user=postgres&target_session_attrs=read-write";
  PgConnection conn(Options(uri));
  PgResult r = conn.Run("SELECT current_database()");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r.Text(0, 0), db);
}

TEST(PgConnection, TlsIsTheUrisSslmode) {
  // The test server has no certificate: sslmode=require must be refused, not quietly downgraded.
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string db = server->DatabaseOf(server->CreateDatabase());
  std::string base = "postgresql://postgres@127.0.0.1:" + std::to_string(server->port()) + "/" + db;
  PgConnectOptions o = Options(base + "?sslmode=require");
  o.password_file = WriteFile(server->dir(), "pw-tls", testing::kPostgresTestPassword, 0600);
  PgConnection tls(o);
  PgResult r = tls.Run("SELECT 1");
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable);
  EXPECT_NE(r.message().find("SSL"), std::string::npos) << r.message();
  o.url = base + "?sslmode=disable";
  PgConnection plain(o);
  EXPECT_TRUE(plain.Run("SELECT 1").ok());
}

TEST(PgConnection, PasswordFileMustBePrivateAndItsContentNeverAppearsInMessages) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string db = server->DatabaseOf(server->CreateDatabase());
  PgConnectOptions o = Options(server->TcpUri(db));
  o.password_file =
      WriteFile(server->dir(), "pw", std::string(testing::kPostgresTestPassword) + "\n", 0600);
  {
    PgConnection conn(o);
    PgResult r = conn.Run("SELECT 1");
    EXPECT_TRUE(r.ok()) << r.message();
  }
  ::chmod(o.password_file.c_str(), 0644);
  {
    PgConnection conn(o);
    PgResult r = conn.Run("SELECT 1");
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.message().find("accessible by group or others"), std::string::npos) << r.message();
    EXPECT_EQ(r.message().find(testing::kPostgresTestPassword), std::string::npos);
  }
  {
    // Under $CREDENTIALS_DIRECTORY (systemd LoadCredential=) the mode does not matter.
    ::setenv("CREDENTIALS_DIRECTORY", server->dir().c_str(), 1);
    PgConnection conn(o);
    PgResult r = conn.Run("SELECT 1");
    ::unsetenv("CREDENTIALS_DIRECTORY");
    EXPECT_TRUE(r.ok()) << r.message();
  }
  o.password_file = WriteFile(server->dir(), "wrong", "not-the-password-4711", 0600);
  PgConnection conn(o);
  PgResult r = conn.Run("SELECT 1");
  EXPECT_EQ(r.error_kind(), PgErrorKind::kUnavailable);
  EXPECT_NE(r.message().find("password authentication failed"), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find("not-the-password-4711"), std::string::npos) << r.message();
}

TEST(PgConnection, RedactUrlHidesEveryFormOfPassword) {
  EXPECT_EQ(RedactUrl("postgresql://pay:s3cret@db1,db2:5433/payoutd?sslmode=verify-full"),
            "postgresql://pay:***@db1,db2:5433/payoutd?sslmode=verify-full");
  EXPECT_EQ(RedactUrl("postgresql://pay@db/p?password=s3cret&sslmode=require"),
            "postgresql://pay@db/p?password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("host=db user=pay password='s3 cret' dbname=p"),
            "host=db user=pay password=*** dbname=p");
  EXPECT_EQ(RedactUrl("postgresql://pay@db/p"), "postgresql://pay@db/p");
}

TEST(PgSchema, IsCreatedOnceEvenWhenInstancesStartTogether) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  std::vector<PgResult> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      PgConnection conn(Options(uri));
      results[i] = EnsurePgSchema(conn, true);
    });
  }
  for (auto& t : threads) t.join();
  for (auto& r : results) EXPECT_TRUE(r.ok()) << r.message();
  PgConnection conn(Options(uri));
  PgResult v = conn.Exec("SELECT version FROM schema_version");
  ASSERT_TRUE(v.ok()) << v.message();
  ASSERT_EQ(v.rows(), 1);
  EXPECT_EQ(v.Int(0, 0), kPgSchemaVersion);
  EXPECT_TRUE(EnsurePgSchema(conn, false).ok());
}

TEST(PgSchema, ReadOnlyCheckOfAnEmptyDatabaseSaysThereIsNoState) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  PgResult r = EnsurePgSchema(conn, false);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.message().find("holds no payoutd state"), std::string::npos) << r.message();
  EXPECT_FALSE(conn.Exec("SELECT 1 FROM batches").ok());  // nothing was created
}

TEST(PgSchema, NewerSchemaIsRefusedWithAClearMessageAndLeftAlone) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(EnsurePgSchema(conn, true).ok());
  ASSERT_TRUE(conn.ExecScript("UPDATE schema_version SET version = 99").ok());
  for (bool create : {true, false}) {
    PgResult r = EnsurePgSchema(conn, create);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.message().find("schema version 99, newer than this payoutd understands"),
              std::string::npos)
        << r.message();
  }
  PgResult v = conn.Exec("SELECT version FROM schema_version");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.Int(0, 0), 99);
}

// A state made by a payoutd of schema version 1 (no control_requests) is upgraded in place when
// `payoutd run` starts; read-only users meanwhile are told so.
TEST(PgSchema, VersionOneIsUpgradedKeepingItsRows) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  PgConnection conn(Options(server->CreateDatabase()));
  ASSERT_TRUE(EnsurePgSchema(conn, true).ok());
  ASSERT_TRUE(conn.ExecScript("DROP TABLE control_requests; UPDATE schema_version SET version = 1;"
                              "UPDATE fencing SET term = 12")
                  .ok());
  PgResult r = EnsurePgSchema(conn, false);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.message().find("schema version 1; it is upgraded when payoutd run next starts"),
            std::string::npos)
      << r.message();
  r = EnsurePgSchema(conn, true);
  ASSERT_TRUE(r.ok()) << r.message();
  PgResult v = conn.Exec("SELECT version FROM schema_version");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.Int(0, 0), 2);
  EXPECT_TRUE(conn.Exec("SELECT count(*) FROM control_requests").ok());
  PgResult term = conn.Exec("SELECT term FROM fencing");
  ASSERT_TRUE(term.ok());
  EXPECT_EQ(term.Int(0, 0), 12);
  EXPECT_TRUE(EnsurePgSchema(conn, false).ok());
}

}  // namespace
}  // namespace payoutd
