// PayoutStore throughput on a real file with synchronous=FULL (every commit fsynced):
//   CreateBatch of 1,000,000 payouts (one transaction), Apply of 1,000,000 updates in groups of
//   1,000 (1,000 durable commits), and the read paths the daemon runs on a batch of that size.
// The files go to $PAYOUTD_BENCH_DIR (default: the system temp dir); fsync cost depends on it.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/store/payout_store.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;
constexpr int kRows = 1'000'000;
constexpr int kGroup = 1'000;

fs::path BenchDir() {
  static const fs::path dir = [] {
    const char* env = std::getenv("PAYOUTD_BENCH_DIR");
    std::string tmpl =
        ((env ? fs::path(env) : fs::temp_directory_path()) / "bench_store.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    return fs::path(tmpl);
  }();
  return dir;
}

// The validator's compact list, which is what PayoutStore takes.
PayoutList MakePayouts(int n) {
  PayoutList out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Payout p;
    p.line = static_cast<uint32_t>(i + 2);
    p.id = "payroll-2026-11-" + std::to_string(i + 1);
    p.amount_minor = 10'000 + i % 99'991;
    p.currency = i % 10 ? "USD" : "EUR";
    p.account_number = "DE89370400440532" + std::to_string(1'000'000 + i);
    p.account_name = "Employee Number " + std::to_string(i);
    p.operator_code = "DEUTDEFF";
    p.method = "BANK_TRANSFER";
    p.email = i % 3 ? "" : "employee" + std::to_string(i) + "@example.com";
    out.push_back(p);
  }
  return out;
}

BatchRecord MakeBatch(const std::string& id) {
  BatchRecord b;
  b.id = id;
  b.sha256 = "sha-" + id;
  b.file_name = id + ".csv";
  b.rows = kRows;
  b.started_at_ms = 1'790'000'000'000;
  return b;
}

int64_t FileBytes(const fs::path& db) {
  int64_t total = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    auto size = fs::file_size(db.string() + suffix, ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  return total;
}

std::unique_ptr<PayoutStore> OpenOrDie(const std::string& path, bool read_only = false) {
  auto r = PayoutStore::Open(path, read_only);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.error().c_str());
    std::abort();
  }
  return std::move(r).value();
}

void Check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    std::abort();
  }
}

// A file holding one committed 1M batch, built once and shared by the read benchmarks.
const std::string& SharedOneMillionBatch() {
  static const std::string path = [] {
    std::string p = (BenchDir() / "shared.db").string();
    auto store = OpenOrDie(p);
    Check(store->CreateBatch(MakeBatch("payroll-2026-11"), MakePayouts(kRows)));
    return p;
  }();
  return path;
}

void BM_CreateBatch1M(benchmark::State& state) {
  const PayoutList payouts = MakePayouts(kRows);
  int run = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fs::path db = BenchDir() / ("create-" + std::to_string(run++) + ".db");
    auto store = OpenOrDie(db.string());
    state.ResumeTiming();
    Check(store->CreateBatch(MakeBatch("payroll-2026-11"), payouts));
    state.PauseTiming();
    store.reset();  // checkpoints the WAL into the file
    bytes = FileBytes(db);
    fs::remove(db);
    state.ResumeTiming();
  }
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kRows) * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.counters["file_bytes"] = static_cast<double>(bytes);
  state.counters["bytes/row"] = static_cast<double>(bytes) / kRows;
}
BENCHMARK(BM_CreateBatch1M)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Apply1MInGroupsOf1000(benchmark::State& state) {
  int run = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fs::path db = BenchDir() / ("apply-" + std::to_string(run++) + ".db");
    auto store = OpenOrDie(db.string());
    const PayoutList payouts = MakePayouts(kRows);
    Check(store->CreateBatch(MakeBatch("payroll-2026-11"), payouts));
    std::vector<PayoutUpdate> group(kGroup);
    state.ResumeTiming();
    for (int start = 0; start < kRows; start += kGroup) {
      for (int i = 0; i < kGroup; ++i) {
        PayoutUpdate& u = group[i];
        u.id = payouts.id(start + i);
        u.progress.stage = Stage::kSubmitting;
        u.progress.attempts = 1;
        u.progress.next_at_ms = 1'790'000'002'000 + start + i;
        u.progress.since_ms = 1'790'000'000'000;
      }
      Check(store->Apply(group));
    }
    state.PauseTiming();
    store.reset();
    bytes = FileBytes(db);
    fs::remove(db);
    state.ResumeTiming();
  }
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kRows) * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.counters["commits/s"] = benchmark::Counter(
      static_cast<double>(kRows / kGroup) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["file_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Apply1MInGroupsOf1000)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_FindUsedPayoutIds1M(benchmark::State& state) {
  auto store = OpenOrDie(SharedOneMillionBatch(), /*read_only=*/true);
  const PayoutList payouts = MakePayouts(kRows);
  for (auto _ : state) {
    auto used = store->FindUsedPayoutIds(payouts);
    if (!used.ok() || used->size() != static_cast<size_t>(kRows)) std::abort();
  }
  state.counters["ids/s"] = benchmark::Counter(static_cast<double>(kRows) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FindUsedPayoutIds1M)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Progress1M(benchmark::State& state) {
  auto store = OpenOrDie(SharedOneMillionBatch(), /*read_only=*/true);
  for (auto _ : state) {
    auto p = store->Progress("payroll-2026-11");
    if (!p.ok() || p->stages.at(Stage::kNew) != kRows) std::abort();
  }
}
BENCHMARK(BM_Progress1M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ForEachPayout1M(benchmark::State& state) {
  auto store = OpenOrDie(SharedOneMillionBatch(), /*read_only=*/true);
  for (auto _ : state) {
    int64_t n = 0;
    Check(store->ForEachPayout("payroll-2026-11", [&](const PayoutRow&) { ++n; }));
    if (n != kRows) std::abort();
  }
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kRows) * state.iterations(),
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ForEachPayout1M)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LoadByStagePage1000(benchmark::State& state) {
  auto store = OpenOrDie(SharedOneMillionBatch(), /*read_only=*/true);
  uint32_t after = 500'000;
  for (auto _ : state) {
    auto page = store->LoadByStage("payroll-2026-11", Stage::kNew, after, 1000);
    if (!page.ok() || page->size() != 1000) std::abort();
  }
}
BENCHMARK(BM_LoadByStagePage1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace payoutd

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  std::filesystem::remove_all(payoutd::BenchDir(), ec);
  return 0;
}
