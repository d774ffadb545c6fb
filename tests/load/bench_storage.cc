// The storage ceiling (issue "benchmark"): raw RocksDB through libs/store, in-process, with the
// options every service uses: random point reads over a loaded key space, and synced-WAL writes by
// 1 writer and by 64, so the group-commit ratio is measured side by side in one run.
#include <atomic>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/store/store.h"
#include "rocksdb/write_batch.h"
#include "tests/load/bench.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

std::string Key(uint64_t i) { return absl::StrFormat("c%016x", i * 0x9e3779b97f4a7c15ULL); }

// Runs `op` on `threads` threads for `duration` and returns the result as a load measurement.
template <typename Op>
Measurement Run(const std::string& name, int threads, absl::Duration duration, Op op) {
  std::vector<LatencyHistogram> histograms(threads);
  std::vector<uint64_t> errors(threads, 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      absl::BitGen gen;
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const absl::Time before = absl::Now();
        if (!op(gen, t, n++)) ++errors[t];
        histograms[t].Record(absl::Now() - before);
      }
    });
  }
  absl::SleepFor(duration);
  stop = true;
  for (auto& w : workers) w.join();
  Measurement m;
  m.result.scenario = name;
  m.result.measured = absl::Now() - start;
  for (int t = 0; t < threads; ++t) {
    m.result.latency.Merge(histograms[t]);
    m.result.errors += errors[t];
  }
  m.result.ok = m.result.latency.count() - m.result.errors;
  return m;
}

}  // namespace

void RunStorageSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  store::StoreOptions so;
  so.path = dir.Sub("db");
  auto opened = store::Store::Open(so, {"customers"});
  if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
  store::Store& s = **opened;
  rocksdb::ColumnFamilyHandle* cf = s.cf("customers");
  const uint64_t keys = static_cast<uint64_t>(options.customers);
  const std::string value(300, 'v');  // about the size of a stored customer
  for (uint64_t i = 0; i < keys;) {
    rocksdb::WriteBatch batch;
    for (int j = 0; j < 1000 && i < keys; ++j, ++i) batch.Put(cf, Key(i), value);
    if (!s.Write(&batch, store::Durability::kBuffered).ok())
      throw std::runtime_error("storage: load failed");
  }
  const absl::Duration d = options.load.duration;
  report.Add(Run("RocksDB point read (in-process, 2 threads)", 2, d,
                 [&](absl::BitGen& gen, int, uint64_t) {
                   auto v = s.Get(cf, Key(absl::Uniform<uint64_t>(gen, 0, keys)));
                   return v.ok() && v->has_value();
                 }));
  auto synced_put = [&](absl::BitGen&, int t, uint64_t n) {
    rocksdb::WriteBatch batch;
    batch.Put(cf, absl::StrCat("w", t, "-", n), value);
    return s.Write(&batch, store::Durability::kSynced).ok();
  };
  const Measurement one = Run("RocksDB synced write, 1 writer", 1, d, synced_put);
  report.Add(one);
  const Measurement many = Run("RocksDB synced write, 64 writers", 64, d, synced_put);
  report.Add(many, "RocksDB synced write, 1 writer");
  report.Note(absl::StrFormat(
      "storage: %d keys of 300 bytes; group commit: 64 synced writers reach %.1f× one writer", keys,
      many.result.throughput() / std::max(1.0, one.result.throughput())));
}

}  // namespace crm::load
