#include "core/store/open_store.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <utility>

#include "core/store/pg_store.h"

namespace payoutd {

std::string InstanceName(const StateOptions& state) {
  if (!state.instance.empty()) return state.instance;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "payoutd";
  return host;
}

PgConnectOptions PgConnectOptionsFor(const StateOptions& state) {
  PgConnectOptions o;
  o.url = state.url;
  o.password_file = state.password_file;
  return o;
}

Status CheckPgUrl(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err ? err : "out of memory";
    PQfreemem(err);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return Status::InvalidArgument("state.url " + RedactUrl(url) +
                                   " is not a libpq connection string: " + why);
  }
  PQconninfoFree(opts);
  return Status::Ok();
}

Result<std::unique_ptr<PayoutStore>> OpenStore(const StateOptions& state,
                                               const StoreAccess& access) {
  switch (state.backend) {
    case StateOptions::Backend::kSqlite: return PayoutStore::Open(state.path, access.read_only);
    case StateOptions::Backend::kPostgresql:
      if (Status s = CheckPgUrl(state.url); !s.ok()) return s;
      return OpenPgPayoutStore(PgConnectOptionsFor(state), access.fencing_token, access.read_only);
  }
  return Status::InvalidArgument("unknown state backend");
}

std::unique_ptr<LeaderLease> MakeLeaderLease(const StateOptions& state) {
  if (state.backend != StateOptions::Backend::kPostgresql) return nullptr;
  return std::make_unique<LeaderLease>(PgConnectOptionsFor(state), InstanceName(state),
                                       state.lease);
}

}  // namespace payoutd
