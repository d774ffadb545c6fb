// A service's embedded RocksDB: column families, tuned options, reads, atomic writes, transactions
// for read-modify-write, and checkpoints. Each service owns exactly one Store; only its
// <name>_store knows the keys. Thread-safe; non-copyable. Destroying it syncs the WAL and closes
// the database cleanly.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/utilities/transaction.h"
#include "rocksdb/utilities/transaction_db.h"
#include "rocksdb/write_batch.h"

namespace crm::store {

struct StoreOptions {
  // Directory of the database; created when missing.
  std::string path;
  // One LRU cache shared by every column family for data, index and filter blocks, with the
  // memtables charged to it: the store's memory budget. Resident memory stays within it plus a
  // fixed overhead whatever the data size (bench: tests/load/bench.sh --full, scaling rows).
  size_t block_cache_bytes = 32 << 20;
  // Memtables of all column families together, a part of block_cache_bytes (at most all of it).
  size_t memtable_budget_bytes = 32 << 20;
  // Flush and compaction threads.
  int background_jobs = 2;
  // How long a transaction waits for a row another transaction holds.
  absl::Duration lock_timeout = absl::Seconds(2);
  // Read every block of every table file once at open and refuse a store whose checksums do not
  // match (the service does not start, instead of answering from damaged data later). Costs one
  // sequential read of the data; off only where start-up time matters more than finding damage
  // early.
  bool verify_on_open = true;
  // Free space kept on the data volume for what must still work when it is nearly full: flushing
  // memtables, compaction, replaying the WAL at a restart. Writes are refused (RESOURCE_EXHAUSTED)
  // while less is free, and go through again by themselves once space returns. 0: no reserve.
  uint64_t disk_reserve_bytes = 0;
  // How long a write waits while RocksDB has stopped writes (too many memtables or L0 files, or
  // compaction too far behind) before it gives up with UNAVAILABLE: below the callers' deadlines,
  // so they get an answer they can retry instead of their own timeout.
  absl::Duration write_stop_wait = absl::Seconds(1);
  // Column families whose rows are combined by a merge operator, by name (counters.h: rows that
  // many writers add to without reading them).
  std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> merge_operators;
  // In those families, the memtable keeps at most this many additions to one row before the write
  // folds them into a value (RocksDB's max_successive_merges: one point read on that write). A
  // read of a hot counter (a shop-wide total, a best seller's stats) otherwise combines every
  // addition since the last flush, thousands under steady learning. 0: unbounded.
  size_t max_successive_merges = 32;
};

// DATA_LOSS "a stored <type name> does not parse": what every reader of a stored message answers
// when its bytes are not that message.
absl::Status NotParsed(absl::string_view type_name);

// Parses the values a batched read found: `read(found)` calls found(index, bytes) for each key
// present (false from it: DATA_LOSS); absent keys stay nullopt. Shared by the store's and the
// transaction's MultiGets.
template <typename M, typename Read>
absl::StatusOr<std::vector<std::optional<M>>> ParseFound(size_t count, Read read) {
  std::vector<std::optional<M>> out(count);
  absl::Status s = read([&](size_t i, absl::string_view value) {
    M m;
    if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) return false;
    out[i] = std::move(m);
    return true;
  });
  if (absl::IsDataLoss(s)) return NotParsed(M().GetTypeName());
  if (!s.ok()) return s;
  return out;
}

// How far a write must reach before it is acknowledged.
enum class Durability {
  // Written to the OS page cache: survives a process crash, not a power loss.
  kBuffered,
  // The WAL is fsynced before returning: survives a machine crash. Concurrent writers share one
  // fsync (RocksDB's group commit), so throughput grows with concurrency.
  kSynced,
};

// A read-modify-write unit of work. Reads see committed data; GetForUpdate also locks the row until
// commit so concurrent transactions on the same row serialise.
class Transaction {
 public:
  explicit Transaction(rocksdb::Transaction* txn) : txn_(txn) {}

  absl::StatusOr<std::optional<std::string>> Get(rocksdb::ColumnFamilyHandle* cf,
                                                 absl::string_view key);
  absl::StatusOr<std::optional<std::string>> GetForUpdate(rocksdb::ColumnFamilyHandle* cf,
                                                          absl::string_view key);
  // Reads and parses a protobuf value; false when the key is absent. DATA_LOSS when it does not
  // parse.
  absl::StatusOr<bool> GetProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                google::protobuf::MessageLite* out, bool for_update = false);
  // Locks every key as GetForUpdate does, then reads them all in one batched MultiGet (this
  // transaction's own writes, then the database): one pass over the memtables and table files for
  // the lot instead of one per key. Pass the keys sorted, so concurrent callers lock in one order.
  // `found(index, value)` for each key present; false from it means the value does not parse
  // (DATA_LOSS).
  absl::Status MultiGetForUpdate(
      rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys,
      absl::FunctionRef<bool(size_t index, absl::string_view value)> found);
  // MultiGetForUpdate, each value present parsed; nullopt where a key is absent.
  template <typename M>
  absl::StatusOr<std::vector<std::optional<M>>> MultiGetProtosForUpdate(
      rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys) {
    return ParseFound<M>(keys.size(),
                         [&](auto found) { return MultiGetForUpdate(cf, keys, found); });
  }
  absl::Status Put(rocksdb::ColumnFamilyHandle* cf, absl::string_view key, absl::string_view value);
  absl::Status PutProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                        const google::protobuf::MessageLite& value);
  absl::Status Delete(rocksdb::ColumnFamilyHandle* cf, absl::string_view key);
  // Adds `delta` to a counter row of a family opened with CounterSum (counters.h), without reading
  // or locking the row: concurrent transactions adding to it neither wait nor deadlock.
  absl::Status AddCounters(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                           const google::protobuf::MessageLite& delta);
  // Iterates committed data merged with this transaction's own writes.
  std::unique_ptr<rocksdb::Iterator> NewIterator(rocksdb::ColumnFamilyHandle* cf,
                                                 const rocksdb::ReadOptions& options);
  // Calls `visit(key, value)` for the keys in [begin, end) as this transaction sees them, until it
  // returns false. An empty `end` means no upper bound.
  absl::Status Scan(rocksdb::ColumnFamilyHandle* cf, absl::string_view begin, absl::string_view end,
                    absl::FunctionRef<bool(absl::string_view key, absl::string_view value)> visit);
  // Deletes every key that starts with `prefix` (e.g. all rows of one customer, for erasure).
  absl::Status DeletePrefix(rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix);
  rocksdb::Transaction* raw() { return txn_; }

  // Runs `hook(committed)` once this attempt has committed or rolled back (e.g. to release an
  // outbox sequence number the dispatcher must not pass while it is in flight).
  void OnFinish(std::function<void(bool committed)> hook) { hooks_.push_back(std::move(hook)); }
  void RunFinishHooks(bool committed) {
    for (auto& h : hooks_) h(committed);
    hooks_.clear();
  }

 private:
  rocksdb::Transaction* txn_;
  std::vector<std::function<void(bool)>> hooks_;
};

class Store {
 public:
  // Opens (or creates) the database with the given column families; "default" always exists. A
  // damaged table file, MANIFEST or write-ahead log (anything but a torn last record, which a crash
  // leaves) is DATA_LOSS naming the file and the way back (restore a checkpoint), never a store
  // that opens with data missing.
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const StoreOptions& options, const std::vector<std::string>& column_families);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The handle of a column family named at Open; aborts on a name that was not (a programming
  // error).
  rocksdb::ColumnFamilyHandle* cf(absl::string_view name) const;

  absl::StatusOr<std::optional<std::string>> Get(rocksdb::ColumnFamilyHandle* cf,
                                                 absl::string_view key) const;
  absl::StatusOr<bool> GetProto(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                                google::protobuf::MessageLite* out) const;
  // Reads many keys of one column family in one RocksDB MultiGet (one pass over the memtables and
  // files instead of one per key) and parses each value present; nullopt where a key is absent.
  // DATA_LOSS when a value does not parse.
  template <typename M>
  absl::StatusOr<std::vector<std::optional<M>>> MultiGetProtos(
      rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys) const {
    return ParseFound<M>(keys.size(), [&](auto found) { return MultiGet(cf, keys, found); });
  }
  // The untyped core of MultiGetProtos: `found(index, value)` for each key present; false from it
  // means the value does not parse (DATA_LOSS).
  absl::Status MultiGet(rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& keys,
                        absl::FunctionRef<bool(size_t index, absl::string_view value)> found) const;

  // Applies every change in the batch atomically.
  absl::Status Write(rocksdb::WriteBatch* batch, Durability durability);

  // Runs `body` in a pessimistic transaction and commits it. When `body` fails nothing is written
  // and its status is returned. Lock timeouts and deadlocks roll back and run `body` again (a few
  // times), so `body` must not have effects outside the transaction other than filling its outputs.
  absl::Status Transact(Durability durability, absl::FunctionRef<absl::Status(Transaction&)> body);

  // Calls `visit(key, value)` for each key in [begin, end) in order, until it returns false.
  // An empty `end` means no upper bound.
  absl::Status Scan(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view begin, absl::string_view end,
      absl::FunctionRef<bool(absl::string_view key, absl::string_view value)> visit) const;
  absl::Status ScanPrefix(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix,
      absl::FunctionRef<bool(absl::string_view key, absl::string_view value)> visit) const;

  // A consistent, openable copy of the database in `dir` (which must not exist), made of hard links
  // where possible, so it is cheap. Restoring is opening that directory as the data directory.
  absl::Status CreateCheckpoint(const std::string& dir);

  // Fsyncs the WAL, so everything written so far survives a machine crash.
  absl::Status SyncWal();

  // A RocksDB integer property ("rocksdb.estimate-num-keys", ...) of one column family.
  std::optional<uint64_t> IntProperty(rocksdb::ColumnFamilyHandle* cf,
                                      const std::string& name) const;
  const std::vector<std::string>& column_family_names() const { return names_; }
  rocksdb::TransactionDB* db() { return db_.get(); }
  const std::string& path() const { return path_; }
  // Bytes free on the data volume for this process (statvfs, re-read at most every 100 ms), and the
  // reserve.
  int64_t disk_free_bytes();
  uint64_t disk_reserve_bytes() const { return reserve_; }

 private:
  Store() = default;
  // Reads every block's checksum (--verify_on_open); the error says the store is damaged.
  absl::Status VerifyAfterOpen();
  // RESOURCE_EXHAUSTED while the volume has less than the reserve free.
  absl::Status CheckDiskReserve();
  // Waits up to write_stop_wait while RocksDB has stopped writes; UNAVAILABLE if it still has.
  absl::Status WaitOutWriteStop();
  // Both checks, before a write.
  absl::Status ReadyToWrite();
  // After a write failed on RocksDB's background error (a flush or compaction that hit a full
  // disk): once the reserve is free again, resumes the database (at most once a second) and says
  // whether to try again.
  bool ResumeAfterBackgroundError(const absl::Status& failed);

  std::string path_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::unique_ptr<rocksdb::TransactionDB> db_;
  std::vector<std::string> names_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
  uint64_t reserve_ = 0;
  absl::Duration write_stop_wait_ = absl::Seconds(1);
  std::atomic<bool> write_stopped_{false};
  std::atomic<int64_t> stop_checked_us_{0};
  std::atomic<int64_t> free_bytes_{0};
  std::atomic<int64_t> free_checked_us_{0};
  std::atomic<int64_t> last_resume_us_{0};
};

}  // namespace crm::store
