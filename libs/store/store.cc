#include "libs/store/store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/store/key.h"
#include "libs/store/status.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/sst_file_manager.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/utilities/write_batch_with_index.h"
#include "rocksdb/write_buffer_manager.h"

namespace crm::store {
namespace {

// Hands each value a batched read found to `found(index, value)`; absent keys are skipped, a failed
// read is its status, and false from `found` (a value that does not parse) is DATA_LOSS.
absl::Status VisitFound(const std::vector<rocksdb::Status>& statuses,
                        const std::vector<rocksdb::PinnableSlice>& values,
                        absl::FunctionRef<bool(size_t index, absl::string_view value)> found) {
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) return FromRocksDb(statuses[i]);
    if (!found(i, absl::string_view(values[i].data(), values[i].size()))) {
      return absl::DataLossError("a stored value read by MultiGet does not parse");
    }
  }
  return absl::OkStatus();
}

// A point read's answer: the value, nullopt when the key is absent, or why the read failed.
absl::StatusOr<std::optional<std::string>> ValueOrAbsent(const rocksdb::Status& s,
                                                         std::string value) {
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocksDb(s);
  return value;
}

// Visits [begin, end) (an empty `end`: no upper bound) of the iterator `open(read_options)` makes,
// until `visit` returns false: the scan of a Store and of a Transaction.
template <typename Open>
absl::Status ScanRange(absl::string_view begin, absl::string_view end, Open open,
                       absl::FunctionRef<bool(absl::string_view, absl::string_view)> visit) {
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end.data(), end.size());
  if (!end.empty()) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(open(ro));
  for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next()) {
    if (!visit(absl::string_view(it->key().data(), it->key().size()),
               absl::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocksDb(it->status());
}

rocksdb::ColumnFamilyOptions ColumnFamilyOptionsFor(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Bloom filters make point lookups of absent keys (idempotency checks, unknown ids) skip disk
  // reads.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.optimize_filters_for_memory = true;
  // Index and filter blocks live in the block cache, so memory is bounded by configuration, not
  // data size.
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Partitioned index and filters: a lookup loads one 4 KiB partition, not a whole file's filter.
  // With whole-file filters, a large file's multi-MB filter evicted from a busy cache was read and
  // checksummed again on every lookup (loading all of Online Retail into recommendation spent 60%
  // of its time there).
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.pin_top_level_index_and_filter = true;
  table.format_version = 5;

  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.write_buffer_size = 16 << 20;
  cf.max_write_buffer_number = 3;
  // A whole-key bloom filter on the memtable: a point read of a key that is not in the memtable
  // (most of them, once data has been flushed) skips the skip-list search. A memtable allocates it
  // whole with its first row (ratio x write_buffer_size), and its arena grows in blocks: together
  // they are what a nearly empty family costs. At 0.05 and RocksDB's default arena block
  // (write_buffer_size / 8) that was ~1 MiB, so recommendation's ~20 families took most of a 32 MiB
  // budget, and the write buffer manager, which flushes the oldest memtable first, flushed 6,864
  // memtables of a few dozen entries while the shipped shop was imported. Now ~170 KiB (0.01 still
  // gives ~10 bits per key). Test: store_test.cc, "... does not make the others flush ...".
  cf.memtable_prefix_bloom_size_ratio = 0.01;
  cf.memtable_whole_key_filtering = true;
  cf.arena_block_size = 128 << 10;
  cf.level_compaction_dynamic_level_bytes = true;
  // LZ4 on every level, including the bottom: ZSTD there saved disk but cost ~15% of GetCustomer's
  // CPU decompressing blocks that missed the cache (measured with tests/load/crm-bench).
  cf.compression = rocksdb::kLZ4Compression;
  cf.bottommost_compression = rocksdb::kLZ4Compression;
  return cf;
}

}  // namespace

absl::StatusOr<std::optional<std::string>> Transaction::Get(rocksdb::ColumnFamilyHandle* cf,
                                                            absl::string_view key) {
  std::string value;
  rocksdb::Status s =
      txn_->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  return ValueOrAbsent(s, std::move(value));
}

absl::StatusOr<std::optional<std::string>> Transaction::GetForUpdate(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
  std::string value;
  rocksdb::Status s = txn_->GetForUpdate(rocksdb::ReadOptions(), cf,
                                         rocksdb::Slice(key.data(), key.size()), &value);
  return ValueOrAbsent(s, std::move(value));
}

absl::Status Transaction::MultiGetForUpdate(
    rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys,
    absl::FunctionRef<bool(size_t index, absl::string_view value)> found) {
  if (keys.empty()) return absl::OkStatus();
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  for (const auto& key : slices) {
    // No value asked for: RocksDB only takes the lock.
    rocksdb::Status s =
        txn_->GetForUpdate(rocksdb::ReadOptions(), cf, key, static_cast<std::string*>(nullptr));
    if (!s.ok()) return FromRocksDb(s);
  }
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  txn_->MultiGet(rocksdb::ReadOptions(), cf, keys.size(), slices.data(), values.data(),
                 statuses.data());
  return VisitFound(statuses, values, found);
}

absl::StatusOr<bool> Transaction::GetProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                           google::protobuf::MessageLite* out, bool for_update) {
  auto value = for_update ? GetForUpdate(cf, key) : Get(cf, key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return false;
  if (!out->ParseFromString(**value)) {
    return absl::DataLossError(absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
  }
  return true;
}

absl::Status Transaction::Put(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                              absl::string_view value) {
  return FromRocksDb(txn_->Put(cf, rocksdb::Slice(key.data(), key.size()),
                               rocksdb::Slice(value.data(), value.size())));
}

absl::Status Transaction::PutProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                   const google::protobuf::MessageLite& value) {
  return Put(cf, key, value.SerializeAsString());
}

absl::Status Transaction::Delete(rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
  return FromRocksDb(txn_->Delete(cf, rocksdb::Slice(key.data(), key.size())));
}

absl::Status Transaction::AddCounters(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                      const google::protobuf::MessageLite& delta) {
  const std::string operand = delta.SerializeAsString();
  // Into the transaction's batch directly: Merge and MergeUntracked would lock the row, which is
  // what counters must not do. The batch is committed (or dropped) with the transaction.
  return FromRocksDb(
      txn_->GetWriteBatch()->Merge(cf, rocksdb::Slice(key.data(), key.size()), operand));
}

std::unique_ptr<rocksdb::Iterator> Transaction::NewIterator(rocksdb::ColumnFamilyHandle* cf,
                                                            const rocksdb::ReadOptions& options) {
  return std::unique_ptr<rocksdb::Iterator>(txn_->GetIterator(options, cf));
}

absl::Status Transaction::Scan(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view begin, absl::string_view end,
    absl::FunctionRef<bool(absl::string_view, absl::string_view)> visit) {
  return ScanRange(
      begin, end, [&](const rocksdb::ReadOptions& ro) { return txn_->GetIterator(ro, cf); }, visit);
}

absl::Status Transaction::DeletePrefix(rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix) {
  std::vector<std::string> keys;
  absl::Status s =
      Scan(cf, prefix, PrefixUpperBound(prefix), [&](absl::string_view key, absl::string_view) {
        keys.emplace_back(key);
        return true;
      });
  if (!s.ok()) return s;
  for (const auto& k : keys) {
    if (absl::Status d = Delete(cf, k); !d.ok()) return d;
  }
  return absl::OkStatus();
}

namespace {
// What an operator reads when a store is damaged: the service stays down rather than serve from it.
constexpr char kDamaged[] =
    " -- the store is damaged and is not served; restore the newest checkpoint into the data "
    "directory (deploy/README, "
    "runbook \"Store corruption\"), or move the directory aside to start empty and rebuild from "
    "the other services";

// RocksDB names a damaged table file or MANIFEST in its message, not a damaged write-ahead log:
// name the logs the open was replaying, so the operator knows which file it is.
std::string DamagedWhere(const std::string& path, const rocksdb::Status& s) {
  const std::string message = s.ToString();
  if (absl::StrContains(message, ".sst") || absl::StrContains(message, "MANIFEST")) return "";
  std::vector<std::string> logs;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
    if (e.path().extension() == ".log") logs.push_back(e.path().filename().string());
  }
  if (logs.empty()) return "";
  std::sort(logs.begin(), logs.end());
  return absl::StrCat(" (in the write-ahead log: ", absl::StrJoin(logs, ", "), ")");
}

}  // namespace

namespace {

// How the database as a whole runs: background work, WAL and manifest limits, recovery, and the
// memtables' share of the block cache.
rocksdb::DBOptions DbOptionsFor(const StoreOptions& options,
                                const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = options.background_jobs;
  db_options.bytes_per_sync = 1 << 20;
  db_options.wal_bytes_per_sync = 1 << 20;
  // With several column families a WAL file lives until every family has flushed; this bounds it.
  db_options.max_total_wal_size = 64 << 20;
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.memtable_budget_bytes, cache);
  db_options.keep_log_file_num = 5;
  db_options.max_manifest_file_size = 64 << 20;
  db_options.enable_pipelined_write = false;
  // A crash can leave the last WAL record half written (never acknowledged: writes are acknowledged
  // after they are in the log), and that is dropped; damage anywhere before it refuses the open.
  // The default, point-in-time recovery, would open and silently drop every acknowledged write
  // after the damage.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db_options.paranoid_checks = true;
  // With an SstFileManager, RocksDB recovers by itself from a flush or compaction that hit a full
  // disk once space returns (its error handler polls free space); without one such an error needs a
  // restart.
  db_options.sst_file_manager.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default()));
  return db_options;
}

// Compactions run at the lowest CPU priority (RocksDB lowers its LOW pool's threads to nice 19 as
// each takes its next job; the pool is the process's). On two cores a compaction after a burst of
// writes otherwise takes a core from the calls being served (crm-bench's Recommend at half its max
// rate, three alternating runs each: p99 10.5-21.5 ms at normal priority, 7.2-10.8 ms at the
// lowest; later runs spread wider, docs/benchmarks.md). Flushes (the HIGH pool) keep normal
// priority, since writes wait for a stalled flush; a compaction that falls behind slows writes
// through RocksDB's level-0 triggers, which leaves it the CPU it needs.
void LowerCompactionPriority() {
  static const rocksdb::Status lowered = rocksdb::Env::Default()->LowerThreadPoolCPUPriority(
      rocksdb::Env::Priority::LOW, rocksdb::CpuPriority::kLow);
  (void)lowered;  // NotSupported off POSIX: compactions then keep normal priority
}

// The error for a store that does not open, with where the damage is when it is corruption.
absl::Status OpenError(const std::string& path, const rocksdb::Status& s) {
  const absl::Status status = FromRocksDb(s);
  return absl::Status(status.code(), absl::StrCat("opening store at ", path, ": ", status.message(),
                                                  s.IsCorruption() ? DamagedWhere(path, s) : "",
                                                  s.IsCorruption() ? kDamaged : ""));
}

// TransactionDB::Open, less the memtable history its PrepareWrap adds: it turns a history of 0 into
// max_write_buffer_number x write_buffer_size per family, and any history, even 1 byte, keeps each
// family's last flushed memtable until its next write. That history exists to validate
// transactions that take snapshots; ours lock with GetForUpdate and take none (at 1M customers it
// was 108 MiB of pinned cache; CI saw 1.4 MiB over a 4 MiB budget from the last memtable alone).
// On failure `handles` is empty.
rocksdb::Status OpenWithoutHistory(rocksdb::DBOptions db_options,
                                   const rocksdb::TransactionDBOptions& txn_options,
                                   const std::string& path,
                                   std::vector<rocksdb::ColumnFamilyDescriptor> descriptors,
                                   std::vector<rocksdb::ColumnFamilyHandle*>* handles,
                                   rocksdb::TransactionDB** db) {
  std::vector<size_t> compaction_enabled;
  rocksdb::TransactionDB::PrepareWrap(&db_options, &descriptors, &compaction_enabled);
  for (auto& d : descriptors) d.options.max_write_buffer_size_to_maintain = 0;
  rocksdb::DB* base = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, handles, &base);
  if (!s.ok()) return s;
  // WrapDB enables the compactions PrepareWrap held back during recovery. On failure `base` and its
  // handles are its to delete (it may or may not have), so neither is touched again.
  s = rocksdb::TransactionDB::WrapDB(base, txn_options, compaction_enabled, *handles, db);
  if (!s.ok()) handles->clear();
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(
    const StoreOptions& options, const std::vector<std::string>& column_families) {
  auto store = std::unique_ptr<Store>(new Store());
  store->path_ = options.path;
  LowerCompactionPriority();
  rocksdb::LRUCacheOptions cache_options;
  cache_options.capacity = options.block_cache_bytes;
  cache_options.high_pri_pool_ratio = 0.5;
  store->cache_ = rocksdb::NewLRUCache(cache_options);

  rocksdb::TransactionDBOptions txn_options;
  txn_options.transaction_lock_timeout = absl::ToInt64Milliseconds(options.lock_timeout);
  txn_options.default_lock_timeout = absl::ToInt64Milliseconds(options.lock_timeout);

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  for (const auto& n : column_families) {
    if (n != rocksdb::kDefaultColumnFamilyName) names.push_back(n);
  }
  const rocksdb::ColumnFamilyOptions cf_options = ColumnFamilyOptionsFor(store->cache_);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) {
    descriptors.emplace_back(n, cf_options);
    if (auto merge = options.merge_operators.find(n); merge != options.merge_operators.end()) {
      descriptors.back().options.merge_operator = merge->second;
      descriptors.back().options.max_successive_merges = options.max_successive_merges;
    }
  }

  rocksdb::TransactionDB* db = nullptr;
  rocksdb::Status s = OpenWithoutHistory(DbOptionsFor(options, store->cache_), txn_options,
                                         options.path, descriptors, &store->handles_, &db);
  if (!s.ok()) return OpenError(options.path, s);
  store->db_.reset(db);
  store->reserve_ = options.disk_reserve_bytes;
  store->write_stop_wait_ = options.write_stop_wait;
  if (options.verify_on_open) CRM_RETURN_IF_ERROR(store->VerifyAfterOpen());
  store->names_ = names;
  for (size_t i = 0; i < names.size(); ++i) store->by_name_[names[i]] = store->handles_[i];
  log::Info("store opened",
            {{"path", options.path},
             {"column_families", static_cast<int64_t>(names.size())},
             {"block_cache_bytes", static_cast<int64_t>(options.block_cache_bytes)}});
  return store;
}

absl::Status Store::VerifyAfterOpen() {
  const absl::Time started = absl::Now();
  if (rocksdb::Status v = db_->VerifyChecksum(); !v.ok()) {
    const absl::Status status = FromRocksDb(v);
    return absl::Status(status.code(),
                        absl::StrCat("verifying store at ", path_, ": ", status.message(),
                                     v.IsCorruption() ? kDamaged : ""));
  }
  log::Info("store verified",
            {{"path", path_}, {"seconds", absl::ToDoubleSeconds(absl::Now() - started)}});
  return absl::OkStatus();
}

Store::~Store() {
  if (!db_) return;
  rocksdb::Status s = db_->SyncWAL();
  if (!s.ok()) log::Error("store: final WAL sync failed", {{"error", s.ToString()}});
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  s = db_->Close();
  if (!s.ok()) log::Error("store: close failed", {{"error", s.ToString()}});
  db_.reset();
  log::Info("store closed", {{"path", path_}});
}

rocksdb::ColumnFamilyHandle* Store::cf(absl::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    log::Error("unknown column family", {{"name", name}});
    std::abort();
  }
  return it->second;
}

absl::StatusOr<std::optional<std::string>> Store::Get(rocksdb::ColumnFamilyHandle* cf,
                                                      absl::string_view key) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  return ValueOrAbsent(s, std::move(value));
}

absl::StatusOr<bool> Store::GetProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                     google::protobuf::MessageLite* out) const {
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocksDb(s);
  if (!out->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
  }
  return true;
}

absl::Status NotParsed(absl::string_view type_name) {
  return absl::DataLossError(absl::StrCat("a stored ", type_name, " does not parse"));
}

absl::Status Store::MultiGet(
    rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys,
    absl::FunctionRef<bool(size_t index, absl::string_view value)> found) const {
  if (keys.empty()) return absl::OkStatus();
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), cf, keys.size(), slices.data(), values.data(),
                statuses.data());
  return VisitFound(statuses, values, found);
}

int64_t Store::disk_free_bytes() {
  const int64_t now = absl::ToUnixMicros(absl::Now());
  if (now - free_checked_us_.load(std::memory_order_relaxed) > 100000) {
    struct statvfs fs {};
    if (statvfs(path_.c_str(), &fs) == 0) {
      free_bytes_.store(static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize),
                        std::memory_order_relaxed);
    }
    free_checked_us_.store(now, std::memory_order_relaxed);
  }
  return free_bytes_.load(std::memory_order_relaxed);
}

absl::Status Store::CheckDiskReserve() {
  if (reserve_ == 0) return absl::OkStatus();
  const int64_t free = disk_free_bytes();
  if (free >= static_cast<int64_t>(reserve_)) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("disk: ", free >> 20, " MiB free on the data volume, under the ", reserve_ >> 20,
                   " MiB reserve kept for flushes, compaction and restarts; nothing was written. "
                   "Reads still work; writes go through "
                   "again by themselves once space is freed or the volume grown (runbook "
                   "\"CrmDiskReserveReached\")"));
}

absl::Status Store::WaitOutWriteStop() {
  auto stopped = [this] {
    uint64_t v = 0;
    const bool now_stopped =
        db_->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &v) && v == 1;
    write_stopped_.store(now_stopped, std::memory_order_relaxed);
    return now_stopped;
  };
  // The property takes the database mutex: read it at most every 5 ms on the write path (a stop
  // begins after a run of delayed writes, so a few milliseconds' staleness costs nothing).
  const int64_t now = absl::ToUnixMicros(absl::Now());
  if (now - stop_checked_us_.load(std::memory_order_relaxed) > 5000) {
    stop_checked_us_.store(now, std::memory_order_relaxed);
    if (!stopped()) return absl::OkStatus();
  } else if (!write_stopped_.load(std::memory_order_relaxed)) {
    return absl::OkStatus();
  }
  const absl::Time until = absl::Now() + write_stop_wait_;
  while (absl::Now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!stopped()) return absl::OkStatus();
  }
  return absl::UnavailableError(
      "store: writes are stopped while the database catches up on flushes and compaction; nothing "
      "was written, "
      "retry in a second or two (runbook \"CrmRocksDbWritesStopped\")");
}

absl::Status Store::ReadyToWrite() {
  if (absl::Status s = CheckDiskReserve(); !s.ok()) return s;
  return WaitOutWriteStop();
}

bool Store::ResumeAfterBackgroundError(const absl::Status& failed) {
  // RocksDB answers every write with its background error until it has recovered.
  if (!absl::IsResourceExhausted(failed) && !absl::IsUnavailable(failed)) return false;
  free_checked_us_.store(0, std::memory_order_relaxed);  // look again now
  if (!CheckDiskReserve().ok()) return false;
  const int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t last = last_resume_us_.load();
  if (now - last < 1000000 || !last_resume_us_.compare_exchange_strong(last, now)) return false;
  const rocksdb::Status s = db_->Resume();
  log::Warning(
      "store: resumed after a background error",
      {{"path", path_}, {"error", std::string(failed.message())}, {"resume", s.ToString()}});
  return s.ok();
}

absl::Status Store::Write(rocksdb::WriteBatch* batch, Durability durability) {
  if (absl::Status ready = ReadyToWrite(); !ready.ok()) return ready;
  rocksdb::WriteOptions wo;
  wo.sync = durability == Durability::kSynced;
  absl::Status s = FromRocksDb(db_->Write(wo, batch));
  if (!s.ok() && ResumeAfterBackgroundError(s)) s = FromRocksDb(db_->Write(wo, batch));
  return s;
}

absl::Status Store::Transact(Durability durability,
                             absl::FunctionRef<absl::Status(Transaction&)> body) {
  if (absl::Status ready = ReadyToWrite(); !ready.ok()) return ready;
  rocksdb::WriteOptions wo;
  wo.sync = durability == Durability::kSynced;
  rocksdb::TransactionOptions to;
  to.deadlock_detect = true;
  constexpr int kAttempts = 8;
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::unique_ptr<rocksdb::Transaction> txn(db_->BeginTransaction(wo, to));
    Transaction t(txn.get());
    absl::Status s = body(t);
    if (s.ok()) s = FromRocksDb(txn->Commit());
    if (s.ok()) {
      t.RunFinishHooks(true);
      return s;
    }
    txn->Rollback().PermitUncheckedError();
    t.RunFinishHooks(false);
    // A commit refused on RocksDB's background error (a full disk met by a flush) is tried once
    // more after the database resumed.
    const bool from_rocksdb = HasReason(s, kReasonStorageEngine);
    if (from_rocksdb && ResumeAfterBackgroundError(s)) continue;
    // Only lock conflicts are retried; the body's own verdicts are final.
    if (s.code() != absl::StatusCode::kAborted || !from_rocksdb) return s;
    last = s;
    std::this_thread::sleep_for(std::chrono::microseconds(100 << attempt));
  }
  return absl::AbortedError(
      absl::StrCat("transaction kept conflicting, retry the call: ", last.message()));
}

absl::Status Store::Scan(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view begin, absl::string_view end,
    absl::FunctionRef<bool(absl::string_view, absl::string_view)> visit) const {
  return ScanRange(
      begin, end, [&](const rocksdb::ReadOptions& ro) { return db_->NewIterator(ro, cf); }, visit);
}

absl::Status Store::ScanPrefix(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix,
    absl::FunctionRef<bool(absl::string_view, absl::string_view)> visit) const {
  return Scan(cf, prefix, PrefixUpperBound(prefix), visit);
}

absl::Status Store::CreateCheckpoint(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &raw);
  if (!s.ok()) return FromRocksDb(s);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush = 0: flush memtables first so the checkpoint holds no WAL to replay.
  return FromRocksDb(checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0));
}

absl::Status Store::SyncWal() { return FromRocksDb(db_->SyncWAL()); }

std::optional<uint64_t> Store::IntProperty(rocksdb::ColumnFamilyHandle* cf,
                                           const std::string& name) const {
  uint64_t v = 0;
  if (!db_->GetIntProperty(cf, name, &v)) return std::nullopt;
  return v;
}

}  // namespace crm::store
