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

}  // namespace

std::vector<prometheus::MetricFamily> RocksDbCollector::Collect() const {
  auto keys = Gauge("crm_rocksdb_estimated_keys", "Estimated number of keys per column family.");
  auto live = Gauge("crm_rocksdb_live_data_bytes", "Estimated live data size per column family.");
  auto sst = Gauge("crm_rocksdb_sst_files_bytes", "Total size of SST files per column family.");
  auto pending =
      Gauge("crm_rocksdb_pending_compaction_bytes",
            "Bytes compaction must rewrite to reach the target shape; high values precede stalls.");
  auto memtables =
      Gauge("crm_rocksdb_memtable_bytes", "Memory used by memtables per column family.");
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
  uint64_t pending_total = 0, memtables_total = 0, readers_total = 0;
  for (const auto& name : store_->column_family_names()) {
    auto* cf = store_->cf(name);
    std::vector<prometheus::ClientMetric::Label> labels = {{"column_family", name}};
    if (auto v = store_->IntProperty(cf, rocksdb::DB::Properties::kEstimateNumKeys))
      Add(keys, *v, labels);
    if (auto v = store_->IntProperty(cf, rocksdb::DB::Properties::kEstimateLiveDataSize))
      Add(live, *v, labels);
    if (auto v = store_->IntProperty(cf, rocksdb::DB::Properties::kTotalSstFilesSize))
      Add(sst, *v, labels);
    if (auto v = store_->IntProperty(cf, rocksdb::DB::Properties::kCurSizeAllMemTables))
      Add(memtables, *v, labels);
    memtables_total +=
        store_->IntProperty(cf, rocksdb::DB::Properties::kSizeAllMemTables).value_or(0);
    readers_total +=
        store_->IntProperty(cf, rocksdb::DB::Properties::kEstimateTableReadersMem).value_or(0);
    if (auto v = store_->IntProperty(cf, rocksdb::DB::Properties::kEstimatePendingCompactionBytes))
      pending_total += *v;
  }
  Add(pending, static_cast<double>(pending_total));
  auto* def = store_->cf("default");
  Add(stalled, store_->IntProperty(def, rocksdb::DB::Properties::kIsWriteStopped).value_or(0));
  Add(delayed,
      store_->IntProperty(def, rocksdb::DB::Properties::kActualDelayedWriteRate).value_or(0));
  const double cache_usage =
      store_->IntProperty(def, rocksdb::DB::Properties::kBlockCacheUsage).value_or(0);
  Add(cache, cache_usage);
  Add(memory, cache_usage, {{"kind", "block_cache"}});
  Add(memory, store_->IntProperty(def, rocksdb::DB::Properties::kBlockCachePinnedUsage).value_or(0),
      {{"kind", "block_cache_pinned"}});
  Add(memory, static_cast<double>(memtables_total), {{"kind", "memtables"}});
  Add(memory, static_cast<double>(readers_total), {{"kind", "table_readers"}});
  auto free = Gauge("crm_store_disk_free_bytes", "Bytes free on the data volume for this process.");
  auto reserve = Gauge("crm_store_disk_reserve_bytes",
                       "Free space kept for flushes, compaction and restarts (--disk_reserve_mb); "
                       "writes are refused below it.");
  Add(free, static_cast<double>(store_->disk_free_bytes()));
  Add(reserve, static_cast<double>(store_->disk_reserve_bytes()));
  return {keys, live, sst, pending, memtables, stalled, delayed, cache, memory, free, reserve};
}

}  // namespace crm::metrics
