#include "libs/metrics/rocksdb_collector.h"

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"
#include "rocksdb/db.h"

namespace crm::metrics {
namespace {

prometheus::MetricFamily Gauge(const char* name, const char* help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void Add(prometheus::MetricFamily& f, double value,
         std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

// Sums over the column families that the database-wide gauges report.
struct Totals {
  uint64_t pending_compaction = 0;
  uint64_t memtables = 0;
  uint64_t table_readers = 0;
};

using Families = std::vector<prometheus::MetricFamily>;

// Keys, data sizes and memtables of each column family.
Families ColumnFamilyGauges(store::Store& store, Totals* totals) {
  auto keys = Gauge("crm_rocksdb_estimated_keys", "Estimated number of keys per column family.");
  auto live = Gauge("crm_rocksdb_live_data_bytes", "Estimated live data size per column family.");
  auto sst = Gauge("crm_rocksdb_sst_files_bytes", "Total size of SST files per column family.");
  auto memtables =
      Gauge("crm_rocksdb_memtable_bytes", "Memory used by memtables per column family.");
  using P = rocksdb::DB::Properties;
  for (const auto& name : store.column_family_names()) {
    auto* cf = store.cf(name);
    std::vector<prometheus::ClientMetric::Label> labels = {{"column_family", name}};
    if (auto v = store.IntProperty(cf, P::kEstimateNumKeys)) Add(keys, *v, labels);
    if (auto v = store.IntProperty(cf, P::kEstimateLiveDataSize)) Add(live, *v, labels);
    if (auto v = store.IntProperty(cf, P::kTotalSstFilesSize)) Add(sst, *v, labels);
    if (auto v = store.IntProperty(cf, P::kCurSizeAllMemTables)) Add(memtables, *v, labels);
    totals->memtables += store.IntProperty(cf, P::kSizeAllMemTables).value_or(0);
    totals->table_readers += store.IntProperty(cf, P::kEstimateTableReadersMem).value_or(0);
    totals->pending_compaction +=
        store.IntProperty(cf, P::kEstimatePendingCompactionBytes).value_or(0);
  }
  return {keys, live, sst, memtables};
}

// Compaction debt, write stalls and memory of the whole database.
Families DatabaseGauges(store::Store& store, const Totals& totals) {
  auto pending =
      Gauge("crm_rocksdb_pending_compaction_bytes",
            "Bytes compaction must rewrite to reach the target shape; high values precede stalls.");
  auto stalled =
      Gauge("crm_rocksdb_write_stopped", "1 when RocksDB has stopped writes, 0 otherwise.");
  auto delayed =
      Gauge("crm_rocksdb_delayed_write_rate_bytes",
            "Write rate RocksDB is throttling to (bytes/s); 0 when writes are not delayed.");
  auto cache = Gauge("crm_rocksdb_block_cache_bytes",
                     "Memory used by the block cache (includes memtables charged to it).");
  auto memory = Gauge("crm_rocksdb_memory_bytes",
                      "RocksDB memory by kind: block_cache (data, index and filter blocks, and the "
                      "memtables charged to it), block_cache_pinned (of which pinned), memtables, "
                      "table_readers (per-file metadata outside the cache).");
  using P = rocksdb::DB::Properties;
  auto* def = store.cf("default");
  Add(pending, static_cast<double>(totals.pending_compaction));
  Add(stalled, store.IntProperty(def, P::kIsWriteStopped).value_or(0));
  Add(delayed, store.IntProperty(def, P::kActualDelayedWriteRate).value_or(0));
  const double cache_usage = store.IntProperty(def, P::kBlockCacheUsage).value_or(0);
  Add(cache, cache_usage);
  Add(memory, cache_usage, {{"kind", "block_cache"}});
  Add(memory, store.IntProperty(def, P::kBlockCachePinnedUsage).value_or(0),
      {{"kind", "block_cache_pinned"}});
  Add(memory, static_cast<double>(totals.memtables), {{"kind", "memtables"}});
  Add(memory, static_cast<double>(totals.table_readers), {{"kind", "table_readers"}});
  return {pending, stalled, delayed, cache, memory};
}

// Free space on the data volume and the reserve kept for flushes and restarts.
Families DiskGauges(store::Store& store) {
  auto free = Gauge("crm_store_disk_free_bytes", "Bytes free on the data volume for this process.");
  auto reserve = Gauge("crm_store_disk_reserve_bytes",
                       "Free space kept for flushes, compaction and restarts (--disk_reserve_mb); "
                       "writes are refused below it.");
  Add(free, static_cast<double>(store.disk_free_bytes()));
  Add(reserve, static_cast<double>(store.disk_reserve_bytes()));
  return {free, reserve};
}

}  // namespace

std::vector<prometheus::MetricFamily> RocksDbCollector::Collect() const {
  Totals totals;
  Families out = ColumnFamilyGauges(*store_, &totals);
  for (Families part : {DatabaseGauges(*store_, totals), DiskGauges(*store_)}) {
    for (auto& family : part) out.push_back(std::move(family));
  }
  return out;
}

}  // namespace crm::metrics
