#include "core/store/migrate.h"

#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "core/store/pg_schema.h"

namespace payoutd {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string QuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using SqlitePtr = std::unique_ptr<sqlite3, SqliteCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// A table of the source: its name and columns, in SQLite's order.
struct Table {
  std::string name;
  std::vector<std::string> columns;
};

class Migration {
 public:
  Migration(std::string path, PgConnectOptions target)
      : path_(std::move(path)), pg_(std::move(target)) {}

  Result<MigrationReport> Run() {
    // The source must be a state of the version this payoutd writes (the store checks it).
    if (auto check = PayoutStore::Open(path_, /*read_only=*/true); !check.ok()) {
      return check.status().WithPrefix("--from: ");
    }
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) return SourceError("open");
    sqlite3_busy_timeout(db_.get(), 5000);
    if (sqlite3_exec(db_.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SourceError("begin");
    }
    auto tables = SourceTables();  // the first read: the snapshot starts here
    if (!tables.ok()) return tables.status();

    if (PgResult r = EnsurePgSchema(pg_, /*create=*/true); !r.ok()) return Target(r, "schema");
    if (PgResult r = pg_.ExecScript("BEGIN"); !r.ok()) return Target(r, "begin");
    MigrationReport report;
    Status s = CheckTarget(*tables);
    for (size_t i = 0; s.ok() && i < tables->size(); ++i) {
      s = CopyTable((*tables)[i], &report.rows[(*tables)[i].name]);
    }
    if (s.ok()) s = FinishSequences(*tables);
    if (s.ok()) s = CheckTotals();
    if (!s.ok()) {
      if (pg_.connected()) (void)pg_.ExecScript("ROLLBACK");
      return s;
    }
    if (PgResult r = pg_.ExecScript("COMMIT"); !r.ok()) return Target(r, "commit");
    return report;
  }

 private:
  Result<std::vector<Table>> SourceTables() {
    std::vector<Table> tables;
    StmtPtr list = Prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY name");
    if (!list) return SourceError("list tables");
    while (sqlite3_step(list.get()) == SQLITE_ROW) {
      const auto* name = reinterpret_cast<const char*>(sqlite3_column_text(list.get(), 0));
      tables.push_back(Table{name, {}});
    }
    // batches first: the tables that name a batch (approvals, audit) refer to it.
    std::stable_partition(tables.begin(), tables.end(),
                          [](const Table& t) { return t.name == "batches"; });
    for (Table& t : tables) {
      StmtPtr cols = Prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid");
      if (!cols) return SourceError("read the columns of " + t.name);
      sqlite3_bind_text(cols.get(), 1, t.name.c_str(), -1, SQLITE_TRANSIENT);
      while (sqlite3_step(cols.get()) == SQLITE_ROW) {
        t.columns.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(cols.get(), 0)));
      }
    }
    return tables;
  }

  // Every source table and column has a place in the target, and the target holds no data.
  Status CheckTarget(const std::vector<Table>& tables) {
    for (const Table& t : tables) {
      PgResult r = pg_.Exec(
          "SELECT column_name FROM information_schema.columns "
          "WHERE table_schema = current_schema() AND table_name = $1",
          PgParams().Add(t.name));
      if (!r.ok()) return Target(r, "read the columns of " + t.name);
      std::set<std::string, std::less<>> target;
      for (int i = 0; i < r.rows(); ++i) target.emplace(r.Text(i, 0));
      if (target.empty()) {
        return Status::FailedPrecondition("table " + t.name +
                                          " of the SQLite state has no place in the PostgreSQL "
                                          "schema of this payoutd; nothing was moved");
      }
      for (const std::string& c : t.columns) {
        if (target.count(c) == 0) {
          return Status::FailedPrecondition("column " + t.name + "." + c +
                                            " of the SQLite state has no place in the PostgreSQL "
                                            "schema of this payoutd; nothing was moved");
        }
      }
      // No instance may write meanwhile; then the table must be empty.
      if (PgResult l = pg_.Exec("LOCK TABLE " + QuoteIdent(t.name) + " IN EXCLUSIVE MODE");
          !l.ok()) {
        return Target(l, "lock " + t.name);
      }
      PgResult rows = pg_.Exec("SELECT EXISTS (SELECT 1 FROM " + QuoteIdent(t.name) + ")");
      if (!rows.ok()) return Target(rows, "read " + t.name);
      if (rows.Bool(0, 0)) {
        return Status::FailedPrecondition(
            "the target is not empty (table " + t.name +
            " has rows): migrate-state moves a state only into an empty database; nothing was "
            "moved");
      }
    }
    return Status::Ok();
  }

  // Streams every row of `t` into the target with COPY. payouts keep their stored order (SQLite's
  // rowid becomes seq: LoadDueAfter's tie-break).
  Status CopyTable(const Table& t, int64_t* count) {
    bool payouts = t.name == "payouts";
    std::string select = "SELECT ";
    std::string copy = "COPY " + QuoteIdent(t.name) + " (";
    for (size_t i = 0; i < t.columns.size(); ++i) {
      if (i > 0) {
        select += ", ";
        copy += ", ";
      }
      select += QuoteIdent(t.columns[i]);
      copy += QuoteIdent(t.columns[i]);
    }
    if (payouts) {
      select += ", rowid";
      copy += ", seq";
    }
    select += " FROM " + QuoteIdent(t.name) + (payouts ? " ORDER BY rowid" : "");
    copy += ") FROM STDIN";
    StmtPtr s = Prepare(select);
    if (!s) return SourceError("read " + t.name);
    int columns = sqlite3_column_count(s.get());
    Status failed;
    PgResult r = pg_.CopyIn(copy, [&](std::string* buf) {
      int rc = sqlite3_step(s.get());
      if (rc == SQLITE_DONE) return false;
      if (rc != SQLITE_ROW) {
        failed = SourceError("read " + t.name);
        return false;
      }
      for (int c = 0; c < columns; ++c) {
        if (c > 0) *buf += '\t';
        if (Status v = AppendValue(buf, s.get(), c, t); !v.ok()) {
          failed = v;
          return false;
        }
      }
      *buf += '\n';
      ++*count;
      return true;
    });
    if (!failed.ok()) return failed;
    if (!r.ok()) return Target(r, "write " + t.name);
    return Status::Ok();
  }

  static Status AppendValue(std::string* buf, sqlite3_stmt* s, int c, const Table& t) {
    switch (sqlite3_column_type(s, c)) {
      case SQLITE_NULL: *buf += "\\N"; return Status::Ok();
      case SQLITE_INTEGER: *buf += std::to_string(sqlite3_column_int64(s, c)); return Status::Ok();
      case SQLITE_TEXT: {
        const char* p = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
        AppendCopyField(buf, std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, c))));
        return Status::Ok();
      }
      default:  // REAL or BLOB: no payoutd table holds one
        return Status::FailedPrecondition("table " + t.name + " holds a value of a type payoutd " +
                                          "does not write (column " + sqlite3_column_name(s, c) +
                                          "); nothing was moved");
    }
  }

  // Rows added later (payouts, audit lines) are numbered after the moved ones: every identity
  // column of a table that was written starts after its largest value.
  Status FinishSequences(const std::vector<Table>& tables) {
    for (const Table& t : tables) {
      PgResult ids = pg_.Exec(
          "SELECT column_name FROM information_schema.columns WHERE table_schema = "
          "current_schema() AND table_name = $1 AND is_identity = 'YES'",
          PgParams().Add(t.name));
      if (!ids.ok()) return Target(ids, "read the identity columns of " + t.name);
      for (int i = 0; i < ids.rows(); ++i) {
        std::string column(ids.Text(i, 0));
        PgResult r =
            pg_.Exec("SELECT setval(pg_get_serial_sequence($1, $2), max(" + QuoteIdent(column) +
                         ")) FROM " + QuoteIdent(t.name) + " HAVING count(*) > 0",
                     PgParams().Add(QuoteIdent(t.name)).Add(column));
        if (!r.ok()) return Target(r, "number " + t.name);
      }
    }
    return Status::Ok();
  }

  // batch_totals must equal the GROUP BY of payouts (its invariant), as the source promised.
  Status CheckTotals() {
    PgResult r = pg_.Exec(R"sql(
SELECT count(*) FROM (
  SELECT batch_id, stage, state, currency, has_fee, fee_currency,
         count(*) AS n, sum(amount_minor) AS a, sum(fee_minor) AS f
  FROM payouts GROUP BY 1, 2, 3, 4, 5, 6) counted
FULL JOIN (
  SELECT * FROM batch_totals WHERE payouts <> 0 OR amount_minor <> 0 OR fee_minor <> 0) kept
USING (batch_id, stage, state, currency, has_fee, fee_currency)
WHERE counted.n IS DISTINCT FROM kept.payouts OR counted.a IS DISTINCT FROM kept.amount_minor
   OR counted.f IS DISTINCT FROM kept.fee_minor)sql");
    if (!r.ok()) return Target(r, "check the totals");
    if (r.Int(0, 0) != 0) {
      return Status::Internal("the batch totals of " + path_ +
                              " do not match its payouts; nothing was moved");
    }
    return Status::Ok();
  }

  StmtPtr Prepare(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      sqlite3_finalize(s);
      return nullptr;
    }
    return StmtPtr(s);
  }

  Status SourceError(const std::string& what) const {
    return Status::Unavailable("--from " + path_ + ": " + what + ": " +
                               (db_ ? sqlite3_errmsg(db_.get()) : "not open"));
  }
  Status Target(const PgResult& r, const std::string& what) const {
    return r.ToStatus("--to " + pg_.where() + ": " + what);
  }

  std::string path_;
  SqlitePtr db_;
  PgConnection pg_;
};

}  // namespace

Result<MigrationReport> MigrateState(std::string_view from, std::string_view to,
                                     const std::string& password_file) {
  if (!StartsWith(from, "sqlite:") || from.size() == 7) {
    return Status::InvalidArgument("--from must be sqlite:PATH (the state file of one host)");
  }
  std::string url;
  if (StartsWith(to, "postgresql://") || StartsWith(to, "postgres://")) {
    url = std::string(to);
  } else if (StartsWith(to, "postgresql:") && to.size() > 11) {
    url = std::string(to.substr(11));  // postgresql:host=... dbname=...
  } else {
    return Status::InvalidArgument("--to must be postgresql://... (a libpq URI)");
  }
  if (Status s = CheckPgUrl(url); !s.ok()) return s.WithPrefix("--to: ");
  PgConnectOptions target;
  target.url = url;
  target.password_file = password_file;
  return Migration(std::string(from.substr(7)), std::move(target)).Run();
}

}  // namespace payoutd
