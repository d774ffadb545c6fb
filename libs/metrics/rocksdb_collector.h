// RocksDB gauges read from the store at scrape time: keys and live data per column family, pending
// compaction bytes, write stalls, memtable and block cache memory. Stall and pending compaction are
// what an operator alerts on before writes slow down.
#pragma once

#include <vector>

#include "libs/store/store.h"
#include "prometheus/collectable.h"

namespace crm::metrics {

class RocksDbCollector : public prometheus::Collectable {
 public:
  // `store` must outlive the collector's registration.
  explicit RocksDbCollector(store::Store* store) : store_(store) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  store::Store* store_;
};

}  // namespace crm::metrics
