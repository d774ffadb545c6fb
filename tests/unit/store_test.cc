#include "libs/store/store.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "crm/internal/recommendation_storage.pb.h"
#include "crm/v1/common.pb.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/store/counters.h"
#include "libs/store/families.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "libs/store/status.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm::store {
namespace {

// A store at `path` with a block cache of `cache_mib` and memtables of `memtable_mib` charged to
// it.
StoreOptions BudgetedStore(const std::string& path, size_t cache_mib, size_t memtable_mib) {
  StoreOptions o;
  o.path = path;
  o.block_cache_bytes = cache_mib << 20;
  o.memtable_budget_bytes = memtable_mib << 20;
  return o;
}

// A store at `path` with a small memory budget, as most tests here want.
StoreOptions SmallStore(const std::string& path) { return BudgetedStore(path, 4, 4); }

std::unique_ptr<Store> OpenStore(const std::string& path) {
  auto s = Store::Open(SmallStore(path), {"things", "requests"});
  REQUIRE(s.ok());
  return std::move(*s);
}

TEST_CASE("key encoding round-trips every component", "[store][key]") {
  std::string with_nul("a\0b", 3);
  const std::string k = Key().Str(with_nul).U64(42).I64(-7).Descending(9).Str("").Build();
  KeyReader r(k);
  CHECK(r.Str() == with_nul);
  CHECK(r.U64() == 42u);
  CHECK(r.I64() == -7);
  CHECK(r.Descending() == 9u);
  CHECK(r.Str() == "");
  CHECK(r.done());
}

TEST_CASE("key encoding preserves order, so scans come back sorted", "[store][key]") {
  CHECK(Key().Str("ab").bytes() < Key().Str("abc").bytes());
  CHECK(Key().Str("ab").U64(99).bytes() < Key().Str("abc").U64(0).bytes());
  CHECK(Key().I64(-5).bytes() < Key().I64(3).bytes());
  CHECK(Key().Descending(10).bytes() < Key().Descending(3).bytes());
  const absl::Time t = absl::FromUnixSeconds(1000);
  CHECK(Key().TimeNewestFirst(t + absl::Seconds(1)).bytes() < Key().TimeNewestFirst(t).bytes());
}

TEST_CASE("a prefix's upper bound is above every key with the prefix", "[store][key]") {
  const std::string p = Key().Str("c1").Build();
  CHECK(Key().Str("c1").U64(~0ull).bytes() < PrefixUpperBound(p));
  CHECK(Key().Str("c2").bytes() >= PrefixUpperBound(p));
  CHECK(PrefixUpperBound("\xFF\xFF").empty());
}

TEST_CASE("malformed keys are reported, not misread", "[store][key]") {
  KeyReader r("abc");  // no terminator
  CHECK_FALSE(r.Str().has_value());
  KeyReader r2("\x01\x02");
  CHECK_FALSE(r2.U64().has_value());
}

TEST_CASE("rocksdb statuses map to codes that tell the caller what to do", "[store][status]") {
  CHECK(absl::IsNotFound(FromRocksDb(rocksdb::Status::NotFound())));
  CHECK(absl::IsAborted(FromRocksDb(rocksdb::Status::Busy())));
  CHECK(absl::IsAborted(FromRocksDb(rocksdb::Status::TimedOut())));
  CHECK(absl::IsDataLoss(FromRocksDb(rocksdb::Status::Corruption("x"))));
  CHECK(absl::IsResourceExhausted(FromRocksDb(rocksdb::Status::NoSpace("disk"))));
  CHECK(absl::IsUnavailable(FromRocksDb(rocksdb::Status::IOError("x"))));
  CHECK(FromRocksDb(rocksdb::Status::Corruption("bad block")).message().find("bad block") !=
        absl::string_view::npos);
}

TEST_CASE("data written survives closing and reopening the store", "[store]") {
  testing::TempDir dir;
  {
    auto store = OpenStore(dir.path());
    rocksdb::WriteBatch batch;
    batch.Put(store->cf("things"), "a", "1");
    batch.Put(store->cf("things"), "b", "2");
    REQUIRE(store->Write(&batch, Durability::kSynced).ok());
  }
  auto store = OpenStore(dir.path());
  CHECK(store->Get(store->cf("things"), "a").value() == "1");
  CHECK(store->Get(store->cf("things"), "b").value() == "2");
  CHECK_FALSE(store->Get(store->cf("things"), "c").value().has_value());
}

TEST_CASE(
    "MultiGetProtos reads many keys at once: parsed values in key order, absent keys empty, "
    "a value that does not parse is DATA_LOSS",
    "[store]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  v1::Money one, two;
  one.set_amount_minor(1);
  two.set_amount_minor(2);
  rocksdb::WriteBatch batch;
  batch.Put(store->cf("things"), "one", one.SerializeAsString());
  batch.Put(store->cf("things"), "two", two.SerializeAsString());
  batch.Put(store->cf("things"), "junk", "\xff\xff\xff");
  REQUIRE(store->Write(&batch, Durability::kSynced).ok());
  auto read = store->MultiGetProtos<v1::Money>(store->cf("things"), {"two", "none", "one"});
  REQUIRE(read.ok());
  REQUIRE(read->size() == 3);
  REQUIRE((*read)[0].has_value());
  CHECK((*read)[0]->amount_minor() == 2);
  CHECK_FALSE((*read)[1].has_value());
  REQUIRE((*read)[2].has_value());
  CHECK((*read)[2]->amount_minor() == 1);
  CHECK(store->MultiGetProtos<v1::Money>(store->cf("things"), {}).value().empty());
  auto junk = store->MultiGetProtos<v1::Money>(store->cf("things"), {"one", "junk"});
  CHECK(junk.status().code() == absl::StatusCode::kDataLoss);
  CHECK(absl::StrContains(junk.status().message(), "crm.v1.Money"));
}

// A store's family table as a <name>_store declares it; a table out of enum order does not compile.
enum TestFamily { kThings, kRequests };
constexpr FamilyName<TestFamily> kTestFamilies[] = {{kThings, "things"}, {kRequests, "requests"}};
static_assert(InEnumOrder(kTestFamilies));
constexpr FamilyName<TestFamily> kSwappedFamilies[] = {{kRequests, "requests"},
                                                       {kThings, "things"}};
static_assert(!InEnumOrder(kSwappedFamilies));

TEST_CASE("a family table names the families to open and hands out each one's handle by its enum",
          "[store][families]") {
  CHECK(FamilyNames(kTestFamilies) == std::vector<std::string>{"things", "requests"});
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  Families families(*store, kTestFamilies);
  CHECK(families[kThings] == store->cf("things"));
  CHECK(families[kRequests] == store->cf("requests"));
}

TEST_CASE(
    "typed reads: pages resume after the last key and parse nothing beyond the limit, a limited "
    "read stops there, a missing key is the caller's error, a transaction sees its own writes, "
    "and a value that does not parse is DATA_LOSS naming its type",
    "[store][protos]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  auto* cf = store->cf("things");
  const std::string prefix = Key().Str("c1").Build();
  rocksdb::WriteBatch batch;
  for (int i = 1; i <= 5; ++i) {
    v1::Money m;
    m.set_amount_minor(i);
    batch.Put(cf, Key().Str("c1").U64(i).Build(), m.SerializeAsString());
  }
  batch.Put(cf, Key().Str("c1").U64(9).Build(), "\xff\xff\xff");
  batch.Put(cf, Key().Str("c2").U64(1).Build(), v1::Money().SerializeAsString());
  REQUIRE(store->Write(&batch, Durability::kSynced).ok());
  auto amounts = [](const std::vector<v1::Money>& ms) {
    std::vector<int64_t> out;
    for (const auto& m : ms) out.push_back(m.amount_minor());
    return out;
  };

  std::vector<v1::Money> page;
  std::string last;
  bool more = false;
  REQUIRE(ScanPage(*store, cf, prefix, "", 2, &page, &last, &more).ok());
  CHECK(amounts(page) == std::vector<int64_t>{1, 2});
  CHECK(more);
  CHECK(last == Key().Str("c1").U64(2).Build());
  page.clear();
  REQUIRE(ScanPage(*store, cf, prefix, last, 3, &page, &last, &more).ok());
  CHECK(amounts(page) == std::vector<int64_t>{3, 4, 5});
  CHECK(more);  // the damaged value comes next, unread
  page.clear();
  absl::Status damaged = ScanPage(*store, cf, prefix, last, 3, &page, &last, &more);
  CHECK(damaged.code() == absl::StatusCode::kDataLoss);
  CHECK(absl::StrContains(damaged.message(), "crm.v1.Money"));
  CHECK(
      ScanPage(*store, cf, prefix, Key().Str("c2").U64(1).Build(), 3, &page, &last, &more).code() ==
      absl::StatusCode::kInvalidArgument);

  CHECK(amounts(ProtosUnder<v1::Money>(*store, cf, prefix, 3).value()) ==
        std::vector<int64_t>{1, 2, 3});
  CHECK(ProtosUnder<v1::Money>(*store, cf, prefix).status().code() == absl::StatusCode::kDataLoss);
  CHECK(ProtosUnder<v1::Money>(*store, cf, Key().Str("c2").Build()).value().size() == 1);

  auto absent = [] { return absl::NotFoundError("amount_id: no such amount"); };
  CHECK(GetProtoOr<v1::Money>(*store, cf, Key().Str("c1").U64(4).Build(), absent)
            .value()
            .amount_minor() == 4);
  CHECK(GetProtoOr<v1::Money>(*store, cf, Key().Str("c1").U64(7).Build(), absent).status() ==
        absent());

  std::vector<int64_t> seen;
  REQUIRE(store
              ->Transact(Durability::kBuffered,
                         [&](Transaction& txn) -> absl::Status {
                           v1::Money m;
                           m.set_amount_minor(30);
                           CRM_RETURN_IF_ERROR(txn.PutProto(cf, Key().Str("c3").U64(1).Build(), m));
                           m.set_amount_minor(31);
                           CRM_RETURN_IF_ERROR(txn.PutProto(cf, Key().Str("c3").U64(2).Build(), m));
                           // A visitor that returns false stops the scan.
                           return ScanPrefixProtos<v1::Money>(
                               txn, cf, Key().Str("c3").Build(),
                               [&](absl::string_view, v1::Money&& money) {
                                 seen.push_back(money.amount_minor());
                                 return false;
                               });
                         })
              .ok());
  CHECK(seen == std::vector<int64_t>{30});
}

TEST_CASE(
    "a transaction retries RocksDB's conflicts, known by the status's reason, and never the body's "
    "own ABORTED, whatever its message says",
    "[store][transaction]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  CHECK(HasReason(FromRocksDb(rocksdb::Status::Busy()), kReasonStorageEngine));
  CHECK_FALSE(HasReason(absl::AbortedError("rocksdb: looks like one"), kReasonStorageEngine));
  int conflicts = 0;
  absl::Status s = store->Transact(Durability::kBuffered, [&](Transaction&) -> absl::Status {
    if (++conflicts == 1) return FromRocksDb(rocksdb::Status::Busy("forced conflict"));
    return absl::OkStatus();
  });
  CHECK(s.ok());
  CHECK(conflicts == 2);
  int verdicts = 0;
  s = store->Transact(Durability::kBuffered, [&](Transaction&) -> absl::Status {
    ++verdicts;
    return absl::AbortedError("rocksdb: the body's own verdict, worded like RocksDB");
  });
  CHECK(absl::IsAborted(s));
  CHECK(verdicts == 1);
}

TEST_CASE("a failed transaction body writes nothing", "[store][transaction]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  auto* cf = store->cf("things");
  absl::Status s = store->Transact(Durability::kBuffered, [&](Transaction& txn) -> absl::Status {
    REQUIRE(txn.Put(cf, "x", "1").ok());
    return absl::FailedPreconditionError("nope");
  });
  CHECK(absl::IsFailedPrecondition(s));
  CHECK_FALSE(store->Get(cf, "x").value().has_value());
}

TEST_CASE("concurrent read-modify-write transactions never lose an update",
          "[store][transaction]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  auto* cf = store->cf("things");
  constexpr int kThreads = 8, kIncrements = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        absl::Status s =
            store->Transact(Durability::kBuffered, [&](Transaction& txn) -> absl::Status {
              auto v = txn.GetForUpdate(cf, "counter");
              if (!v.ok()) return v.status();
              const int n = v->has_value() ? std::stoi(**v) : 0;
              return txn.Put(cf, "counter", std::to_string(n + 1));
            });
        REQUIRE(s.ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(store->Get(cf, "counter").value() == std::to_string(kThreads * kIncrements));
}

TEST_CASE(
    "MultiGetProtosForUpdate locks what it reads: concurrent batched read-modify-writes of "
    "overlapping counters never lose an update, and a transaction reads its own writes",
    "[store][transaction]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  auto* cf = store->cf("things");
  constexpr int kThreads = 6, kIncrements = 100, kCounters = 5;
  std::vector<std::string> keys;
  for (int k = 0; k < kCounters; ++k) keys.push_back(absl::StrCat("counter-", k));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread adds to an overlapping window of the counters, locked in key order.
      const std::vector<std::string> mine(keys.begin() + t % 2, keys.end() - (t + 1) % 2);
      for (int i = 0; i < kIncrements; ++i) {
        absl::Status s =
            store->Transact(Durability::kBuffered, [&](Transaction& txn) -> absl::Status {
              auto read = txn.MultiGetProtosForUpdate<v1::Money>(cf, mine);
              if (!read.ok()) return read.status();
              for (size_t k = 0; k < mine.size(); ++k) {
                v1::Money m = (*read)[k].value_or(v1::Money());
                m.set_amount_minor(m.amount_minor() + 1);
                if (auto st = txn.PutProto(cf, mine[k], m); !st.ok()) return st;
              }
              return absl::OkStatus();
            });
        REQUIRE(s.ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int k = 0; k < kCounters; ++k) {
    int expected = 0;
    for (int t = 0; t < kThreads; ++t) {
      if (k >= t % 2 && k < kCounters - (t + 1) % 2) expected += kIncrements;
    }
    v1::Money m;
    REQUIRE(store->GetProto(cf, keys[k], &m).value());
    CHECK(m.amount_minor() == expected);
  }
  // Own writes are seen; absent keys are empty; a value that does not parse is DATA_LOSS.
  REQUIRE(store
              ->Transact(Durability::kBuffered,
                         [&](Transaction& txn) -> absl::Status {
                           v1::Money fresh;
                           fresh.set_amount_minor(7);
                           REQUIRE(txn.PutProto(cf, "fresh", fresh).ok());
                           auto read = txn.MultiGetProtosForUpdate<v1::Money>(
                               cf, {"counter-0", "fresh", "nothing"});
                           REQUIRE(read.ok());
                           CHECK((*read)[0]->amount_minor() > 0);
                           CHECK((*read)[1]->amount_minor() == 7);
                           CHECK_FALSE((*read)[2].has_value());
                           REQUIRE(txn.Put(cf, "junk", "\xff\xff\xff").ok());
                           auto junk = txn.MultiGetProtosForUpdate<v1::Money>(cf, {"junk"});
                           CHECK(junk.status().code() == absl::StatusCode::kDataLoss);
                           CHECK(absl::StrContains(junk.status().message(), "crm.v1.Money"));
                           return absl::OkStatus();
                         })
              .ok());
}

TEST_CASE("a checkpoint is an openable copy as of its creation", "[store][checkpoint]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  auto* cf = store->cf("things");
  rocksdb::WriteBatch batch;
  batch.Put(cf, "before", "1");
  REQUIRE(store->Write(&batch, Durability::kBuffered).ok());
  REQUIRE(store->CreateCheckpoint(dir.Sub("backup")).ok());
  rocksdb::WriteBatch later;
  later.Put(cf, "after", "2");
  REQUIRE(store->Write(&later, Durability::kBuffered).ok());
  store.reset();
  auto copy = OpenStore(dir.Sub("backup"));
  CHECK(copy->Get(copy->cf("things"), "before").value() == "1");
  CHECK_FALSE(copy->Get(copy->cf("things"), "after").value().has_value());
}

TEST_CASE("a request id answers with the first answer and refuses a different request",
          "[store][idempotency]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  auto* things = store->cf("things");
  auto* requests = store->cf("requests");
  v1::Money request;
  request.set_amount_minor(100);
  int runs = 0;
  auto run = [&](const v1::Money& req, v1::Money* resp) {
    return TransactOnce(*store, Durability::kSynced, requests, "r1", RequestFingerprint(req),
                        absl::Now(), resp, [&](Transaction& txn) -> absl::Status {
                          ++runs;
                          resp->set_amount_minor(req.amount_minor() * 2);
                          return txn.Put(things, "k", "v");
                        });
  };
  v1::Money first, second;
  REQUIRE(run(request, &first).ok());
  REQUIRE(run(request, &second).ok());
  CHECK(runs == 1);
  CHECK(second.amount_minor() == 200);
  v1::Money other = request;
  other.set_amount_minor(5);
  v1::Money third;
  const absl::Status s = run(other, &third);
  CHECK(absl::IsInvalidArgument(s));
  CHECK(s.message().find("request_id") != absl::string_view::npos);
}

// Files of one kind ("sst", "log") in a store's directory, and a helper that damages one in place.
std::vector<std::string> FilesEndingWith(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void FlipBytes(const std::string& path, size_t offset, size_t count) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  for (size_t i = 0; i < count; ++i) {
    f.seekg(static_cast<std::streamoff>(offset + i));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(offset + i));
    f.put(static_cast<char>(c ^ 0x5a));
  }
}

// The open was refused as data loss, naming the damaged file and the way back (a checkpoint).
void CheckRefusedAsDataLoss(const absl::Status& s, const std::string& damaged_file) {
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK(absl::StrContains(s.message(), std::filesystem::path(damaged_file).filename().string()));
  CHECK(absl::StrContains(s.message(), "checkpoint"));
}

absl::StatusOr<std::unique_ptr<Store>> Reopen(const std::string& path) {
  return Store::Open(SmallStore(path), {"things", "requests"});
}

std::string Value(int i) {
  return std::string(200, static_cast<char>('a' + i % 26)) + std::to_string(i);
}

TEST_CASE("a damaged table file keeps the store closed, naming the file and the way back",
          "[store][corruption]") {
  testing::TempDir dir;
  {
    auto store = OpenStore(dir.path());
    for (int i = 0; i < 2000; ++i) {
      rocksdb::WriteBatch batch;
      batch.Put(store->cf("things"), absl::StrCat("k", 100000 + i), Value(i));
      REQUIRE(store->Write(&batch, Durability::kBuffered).ok());
    }
    REQUIRE(store->db()->Flush(rocksdb::FlushOptions(), store->cf("things")).ok());
  }
  const auto tables = FilesEndingWith(dir.path(), ".sst");
  REQUIRE(tables.size() == 1);
  // A few bytes in the middle of the data blocks: the kind of damage a failing disk does, found by
  // no open that only reads the file's footer and index.
  FlipBytes(tables[0], std::filesystem::file_size(tables[0]) / 3, 8);
  auto reopened = Reopen(dir.path());
  REQUIRE_FALSE(reopened.ok());
  CheckRefusedAsDataLoss(reopened.status(), tables[0]);
}

TEST_CASE("a damaged write-ahead log refuses the open, a torn last record from a crash does not",
          "[store][corruption]") {
  // Writes 400 records and closes without a flush, so everything is in the log only; returns that
  // log file.
  auto write_unflushed = [](const std::string& path) {
    {
      auto store = OpenStore(path);
      for (int i = 0; i < 400; ++i) {
        rocksdb::WriteBatch batch;
        batch.Put(store->cf("things"), absl::StrCat("k", 100000 + i), Value(i));
        REQUIRE(store->Write(&batch, Durability::kSynced).ok());
      }
    }
    const auto logs = FilesEndingWith(path, ".log");
    REQUIRE(!logs.empty());
    return logs.back();
  };
  SECTION("damage in the middle") {
    testing::TempDir dir;
    const std::string log = write_unflushed(dir.path());
    FlipBytes(log, std::filesystem::file_size(log) / 2, 8);
    auto reopened = Reopen(dir.path());
    REQUIRE_FALSE(reopened.ok());
    CheckRefusedAsDataLoss(reopened.status(), log);
  }
  SECTION("a torn last record") {
    testing::TempDir dir;
    const std::string log = write_unflushed(dir.path());
    std::filesystem::resize_file(log, std::filesystem::file_size(log) - 20);
    auto reopened = Reopen(dir.path());
    INFO(reopened.status().ToString());
    REQUIRE(reopened.ok());
    Store& store = **reopened;
    // Every record but the torn one is there.
    for (int i = 0; i < 399; ++i) {
      INFO(i);
      REQUIRE(store.Get(store.cf("things"), absl::StrCat("k", 100000 + i)).value() == Value(i));
    }
  }
}

// Runs `scenario` in a child process with its own mount namespace and a fresh tmpfs of `size`
// mounted on the directory it is given: a real small filesystem that fills up, without touching the
// machine's disks. Root may do this directly; anyone else through a user namespace (Debian allows
// unprivileged ones). Returns the scenario's verdict ("" when it held), or std::nullopt when this
// machine allows neither.
//
// The child is this test binary executed afresh with only `tag`'s test selected, not a bare fork: a
// forked copy of a process that already ran RocksDB lacks the background threads its shared thread
// pool counts on, so its flushes never run and the first write stall waits forever.
constexpr char kVerdictFdEnv[] = "CRM_SMALL_FS_VERDICT_FD";
constexpr char kDirEnv[] = "CRM_SMALL_FS_DIR";

std::optional<std::string> OnSmallFilesystem(
    const std::string& tag, const std::string& size,
    const std::function<std::string(const std::string&)>& scenario) {
  if (const char* fd_text = std::getenv(kVerdictFdEnv)) {  // the re-executed child
    const int fd = std::atoi(fd_text);
    const std::string mount_point = std::getenv(kDirEnv);
    auto report = [&](const std::string& verdict, int code) {
      (void)!write(fd, verdict.data(), verdict.size());
      _exit(code);
    };
    const uid_t uid = geteuid();
    const gid_t gid = getegid();
    const int flags = uid == 0 ? CLONE_NEWNS : (CLONE_NEWUSER | CLONE_NEWNS);
    if (unshare(flags) != 0) report("unshare", 77);
    if (uid != 0) {
      std::ofstream("/proc/self/setgroups") << "deny";
      std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
      std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
    }
    if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", mount_point.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      report("mount", 77);
    }
    report(scenario(mount_point), 0);
  }
  testing::TempDir temp;
  const std::string dir = temp.Sub("volume");
  std::filesystem::create_directories(dir);
  int out[2];
  REQUIRE(pipe(out) == 0);
  // Everything the child needs is built before fork: between fork and exec only async-signal-safe
  // calls are allowed in a threaded process.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(absl::StrCat(kVerdictFdEnv, "=", out[1]));
  env_strings.push_back(absl::StrCat(kDirEnv, "=", dir));
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe", filter = tag, quiet = "/dev/null";
  char* argv[] = {self.data(), filter.data(), nullptr};
  const int devnull = open(quiet.c_str(), O_WRONLY);
  REQUIRE(devnull >= 0);
  std::fflush(nullptr);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(out[0]);
    dup2(devnull, STDOUT_FILENO);  // the child's own test report is not ours to print
    execve(self.c_str(), argv, envp.data());
    _exit(127);
  }
  close(devnull);
  close(out[1]);
  std::string verdict;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) verdict.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) return std::nullopt;
  if (!WIFEXITED(status))
    return "the scenario's process died (signal " + std::to_string(WTERMSIG(status)) + ")";
  if (WEXITSTATUS(status) == 127) return "the test binary could not be executed again";
  return verdict;
}

TEST_CASE(
    "a full disk: writes refused before the volume is full, reads kept, writes back by themselves, "
    "every acknowledged write kept across a restart on the full volume",
    "[store][disk]") {
  const auto verdict =
      OnSmallFilesystem("[disk]", "64m", [](const std::string& mount_point) -> std::string {
        const std::string data = mount_point + "/db", filler = mount_point + "/filler";
        {
          std::ofstream f(filler, std::ios::binary);
          const std::string mib(1 << 20, 'x');
          for (int i = 0; i < 16; ++i) f << mib;  // what the operator will free
        }
        StoreOptions o = SmallStore(data);
        o.disk_reserve_bytes = 24 << 20;
        auto opened = Store::Open(o, {"things", "requests"});
        if (!opened.ok()) return "open: " + opened.status().ToString();
        auto store = std::move(*opened);
        int acknowledged = 0;
        // Incompressible: a volume does not fill with values compression makes vanish.
        auto big = [](int i) {
          std::mt19937_64 rng(static_cast<uint64_t>(i));
          std::string v(4096, '\0');
          for (auto& c : v) c = static_cast<char>(rng());
          return Value(i) + v;
        };
        auto fill = [&]() -> std::string {
          for (int tries = 0; tries < 20000; ++tries) {
            rocksdb::WriteBatch batch;
            batch.Put(store->cf("things"), absl::StrCat("k", 100000 + acknowledged),
                      big(acknowledged));
            const absl::Status s = store->Write(&batch, Durability::kSynced);
            if (s.ok()) {
              ++acknowledged;
              continue;
            }
            // Refused by the reserve, before RocksDB itself ran out of space.
            if (!absl::IsResourceExhausted(s) || !absl::StrContains(s.message(), "reserve"))
              return "write: " + s.ToString();
            return "";
          }
          return "the volume never filled";
        };
        if (std::string e = fill(); !e.empty()) return e;
        const int first_fill = acknowledged;
        // Reads keep working.
        auto read = store->Get(store->cf("things"), "k100000");
        if (!read.ok() || !read->has_value()) return "read while full: " + read.status().ToString();
        // Space returns: writes go through again by themselves, no restart.
        std::filesystem::remove(filler);
        const bool resumed = testing::WaitUntil(
            [&] {
              rocksdb::WriteBatch batch;
              batch.Put(store->cf("things"), absl::StrCat("k", 100000 + acknowledged),
                        big(acknowledged));
              if (!store->Write(&batch, Durability::kSynced).ok()) return false;
              ++acknowledged;
              return true;
            },
            absl::Seconds(10));
        if (!resumed) return "writes did not resume after space was freed";
        if (std::string e = fill(); !e.empty()) return "second fill: " + e;
        if (acknowledged <= first_fill) return "nothing written after space returned";
        store.reset();                                        // a clean stop on the full volume
        auto again = Store::Open(o, {"things", "requests"});  // and a restart on it
        if (!again.ok()) return "restart on the full volume: " + again.status().ToString();
        for (int i = 0; i < acknowledged; ++i) {
          auto v = (*again)->Get((*again)->cf("things"), absl::StrCat("k", 100000 + i));
          if (!v.ok() || !v->has_value() || **v != big(i))
            return "acknowledged write lost: " + std::to_string(i);
        }
        return "";
      });
  if (!verdict.has_value()) {
    WARN(
        "this machine allows neither root mounts nor user namespaces: the small-filesystem test "
        "did not run");
    return;
  }
  INFO(*verdict);
  CHECK(verdict->empty());
}

TEST_CASE(
    "stopped writes fail fast with UNAVAILABLE instead of hanging, and go through once the "
    "database "
    "catches up",
    "[store][stall]") {
  testing::TempDir dir;
  StoreOptions o = SmallStore(dir.path());
  o.write_stop_wait = absl::Milliseconds(200);
  auto opened = Store::Open(o, {"things", "requests"});
  REQUIRE(opened.ok());
  Store& store = **opened;
  auto stopped = [&] {
    uint64_t v = 0;
    return store.db()->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &v) && v == 1;
  };
  // Flushes paused: memtables fill up until RocksDB stops writes. The filler writes past the store
  // (its last write blocks inside RocksDB until background work continues).
  REQUIRE(store.db()->PauseBackgroundWork().ok());
  std::atomic<bool> stop_filling{false};
  std::thread filler([&] {
    std::mt19937_64 rng(7);
    std::string value(64 << 10, '\0');
    for (int i = 0; i < 2000 && !stop_filling; ++i) {
      for (auto& c : value) c = static_cast<char>(rng());
      (void)store.db()->Put(rocksdb::WriteOptions(), store.cf("things"), absl::StrCat("fill", i),
                            value);
    }
  });
  REQUIRE(testing::WaitUntil(stopped, absl::Seconds(30)));

  // A write and a transaction now: a clear UNAVAILABLE the caller can retry, nothing written, the
  // body not run.
  rocksdb::WriteBatch batch;
  batch.Put(store.cf("things"), "during-stop", "x");
  const absl::Status write = store.Write(&batch, Durability::kSynced);
  INFO(write.ToString());
  CHECK(absl::IsUnavailable(write));
  CHECK(absl::StrContains(write.message(), "retry"));
  bool ran = false;
  const absl::Status txn = store.Transact(Durability::kSynced, [&](Transaction& t) {
    ran = true;
    return t.Put(store.cf("things"), "during-stop", "y");
  });
  CHECK(absl::IsUnavailable(txn));
  CHECK_FALSE(ran);
  CHECK_FALSE(store.Get(store.cf("things"), "during-stop").value().has_value());

  // The database catches up: the same write goes through.
  stop_filling = true;
  REQUIRE(store.db()->ContinueBackgroundWork().ok());
  filler.join();
  absl::Status after = absl::UnavailableError("not tried");
  (void)testing::WaitUntil(
      [&] {
        rocksdb::WriteBatch again;
        again.Put(store.cf("things"), "after-stop", "z");
        after = store.Write(&again, Durability::kSynced);
        return after.ok();
      },
      absl::Seconds(30));
  INFO(after.ToString());
  CHECK(after.ok());
  CHECK(store.Get(store.cf("things"), "after-stop").value() == "z");
}

// Issue 18: at 1M customers the block cache held 3x its capacity, pinned: TransactionDB kept every
// column family's flushed memtables as history, charged to the cache. Memory must follow the
// configured budget whatever the data size.
TEST_CASE("memory stays within the block cache budget after writes larger than it",
          "[store][memory]") {
  testing::TempDir dir;
  const StoreOptions o = BudgetedStore(dir.path(), 8, 4);
  auto opened = Store::Open(o, {"things", "requests"});
  REQUIRE(opened.ok());
  Store& store = **opened;
  // 24 MiB through transactions into two column families, three times the whole budget, in values
  // that do not compress.
  std::mt19937_64 random(18);
  std::string value(4096, '\0');
  for (int i = 0; i < 6144; ++i) {
    for (char& c : value) c = static_cast<char>(random());
    REQUIRE(store
                .Transact(Durability::kBuffered,
                          [&](Transaction& t) {
                            const std::string key = absl::StrCat("k", i);
                            if (auto got = t.GetForUpdate(store.cf("requests"), key); !got.ok())
                              return got.status();
                            return t.Put(store.cf(i % 2 ? "things" : "requests"), key, value);
                          })
                .ok());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  for (const auto& name : store.column_family_names()) families.push_back(store.cf(name));
  REQUIRE(store.db()->Flush(rocksdb::FlushOptions(), families).ok());
  // Read everything back so data blocks compete for the cache too.
  for (int i = 0; i < 6144; ++i)
    REQUIRE(store.Get(store.cf(i % 2 ? "things" : "requests"), absl::StrCat("k", i)).ok());

  // Flush returns when the flush is installed; the flush job frees the flushed memtables in its
  // clean-up after that, so on a busy machine they may still be counted for a moment. Wait for the
  // release; a kept history never goes away. Memtables minus the live ones (active and not yet
  // flushed) is what is kept after flushing: it must be nothing. With any history at all RocksDB
  // keeps each family's last flushed memtable (CI saw 5.4 MiB against the 4 MiB budget), and with
  // TransactionDB's default history it was ~20 MiB here.
  uint64_t memtables = 0;
  uint64_t kept_after_flush = 0;
  (void)testing::WaitUntil(
      [&] {
        memtables = 0;
        kept_after_flush = 0;
        for (auto* cf : families) {
          const uint64_t all = store.IntProperty(cf, "rocksdb.size-all-mem-tables").value_or(0);
          memtables += all;
          kept_after_flush +=
              all -
              std::min(all, store.IntProperty(cf, "rocksdb.cur-size-all-mem-tables").value_or(0));
        }
        return kept_after_flush == 0 && memtables <= o.memtable_budget_bytes;
      },
      absl::Seconds(10));
  const uint64_t cache =
      store.IntProperty(store.cf("default"), "rocksdb.block-cache-usage").value_or(0);
  const uint64_t pinned =
      store.IntProperty(store.cf("default"), "rocksdb.block-cache-pinned-usage").value_or(0);
  INFO("memtables " << memtables << " B (kept after flushing " << kept_after_flush << " B), cache "
                    << cache << " B (pinned " << pinned << " B)");
  CHECK(kept_after_flush == 0);
  CHECK(memtables <= o.memtable_budget_bytes);
  // The cache is not strict: the memtables' reservation in it is pinned and shrinks lazily after a
  // burst of writes (RocksDB's delayed decrease), so it may be over its capacity by about the
  // memtable budget, never by a multiple of itself (with the history: 3x).
  CHECK(cache <= o.block_cache_bytes + o.memtable_budget_bytes);
  CHECK(pinned <= cache);
}

// Issue 19: importing a shop's history, recommendation flushed 6,864 memtables of a few dozen
// entries: each of its ~20 column families allocated a bloom filter of 800 KiB with every memtable,
// and the write buffer manager, which flushes the oldest memtable first, kept flushing the families
// that took a row now and then while one family took the bulk of the writes.
TEST_CASE(
    "a column family taking most writes does not make the others flush their few rows over and "
    "over",
    "[store][memory]") {
  testing::TempDir dir;
  // The binaries' cache with the memtable budget they had (they now take half the cache, 64 MiB):
  // no flush storm even there.
  const StoreOptions o = BudgetedStore(dir.path(), 128, 32);
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) names.push_back(absl::StrCat("family", i));
  auto opened = Store::Open(o, names);
  REQUIRE(opened.ok());
  Store& store = **opened;
  std::vector<rocksdb::ColumnFamilyHandle*> trickled;
  for (int i = 1; i < 20; ++i) trickled.push_back(store.cf(names[i]));

  // What a family holding one row costs: its memtable with the filter allocated at the first row.
  rocksdb::WriteBatch first;
  for (const auto& name : names) first.Put(store.cf(name), "first", "x");
  REQUIRE(store.Write(&first, Durability::kBuffered).ok());
  uint64_t one_row = 0;
  for (const auto& name : names)
    one_row += store.IntProperty(store.cf(name), "rocksdb.size-all-mem-tables").value_or(0);
  INFO("memtables holding one row: " << one_row << " B over " << names.size() << " families");
  CHECK(one_row / names.size() <= 512 << 10);

  // 48 MiB into one family in values that do not compress, and after every 64 of them one row into
  // each of the 19 others (as a consumer's per-customer and consumed-event rows go).
  std::mt19937_64 random(19);
  std::string value(4096, '\0');
  for (int i = 0; i < 12288; ++i) {
    for (char& c : value) c = static_cast<char>(random());
    rocksdb::WriteBatch batch;
    batch.Put(store.cf(names[0]), absl::StrCat("bulk", i), value);
    if (i % 64 == 0) {
      for (auto* cf : trickled) batch.Put(cf, absl::StrCat("row", i), "x");
      // At the pace the bulk family's flushes keep up with, as a writer held by RocksDB's write
      // stalls is: on a busy machine they fall behind, and then the write buffer manager rightly
      // flushes whatever is oldest (the test failed so while ctest ran other tests beside it).
      REQUIRE(testing::WaitUntil(
          [&] {
            return store.IntProperty(store.cf(names[0]), "rocksdb.num-immutable-mem-table")
                       .value_or(0) <= 1;
          },
          absl::Seconds(60)));
    }
    REQUIRE(store.Write(&batch, Durability::kBuffered).ok());
  }
  // Every row of the trickled families is still in their memtables: none was flushed. (With 800 KiB
  // filters and 1 MiB arena blocks per memtable in a 32 MiB budget, they were flushed every ~2 MiB
  // of bulk writes and kept a few rows each.)
  const int trickled_rows = 1 + 12288 / 64;
  for (auto* cf : trickled) {
    const uint64_t in_memtables =
        store.IntProperty(cf, "rocksdb.num-entries-active-mem-table").value_or(0) +
        store.IntProperty(cf, "rocksdb.num-entries-imm-mem-tables").value_or(0);
    INFO(cf->GetName() << " holds " << in_memtables << " of its " << trickled_rows
                       << " rows in memtables");
    CHECK(in_memtables == static_cast<uint64_t>(trickled_rows));
  }
}

TEST_CASE(
    "counter rows: transactions add to one row without waiting for each other, and the sum "
    "is exact through negative deltas, a flush, a compaction and a reopen",
    "[store][counters]") {
  testing::TempDir dir;
  StoreOptions o = SmallStore(dir.path());
  // Short, so a transaction that had to wait for the row would fail the test at once.
  o.lock_timeout = absl::Milliseconds(50);
  o.merge_operators["counts"] = CounterSum(internal::CoCounts::default_instance());
  auto opened = Store::Open(o, {"counts"});
  REQUIRE(opened.ok());
  std::unique_ptr<Store> store = std::move(*opened);
  const auto add = [](Store& s, int64_t purchases, int64_t buyers) {
    internal::CoCounts d;
    d.set_purchases(purchases);
    d.set_buyers(buyers);
    return s.Transact(Durability::kSynced,
                      [&](Transaction& t) { return t.AddCounters(s.cf("counts"), "a|b", d); });
  };
  const auto read = [](Store& s) {
    internal::CoCounts co;
    REQUIRE(s.GetProto(s.cf("counts"), "a|b", &co).ok());
    return co;
  };

  // A second transaction adds to the row while the first, which added to it too, is still open.
  absl::Status inner;
  REQUIRE(store
              ->Transact(Durability::kSynced,
                         [&](Transaction& t) {
                           internal::CoCounts d;
                           d.set_purchases(3);
                           CRM_RETURN_IF_ERROR(t.AddCounters(store->cf("counts"), "a|b", d));
                           std::thread other([&] { inner = add(*store, 4, 1); });
                           other.join();
                           return absl::OkStatus();
                         })
              .ok());
  INFO(inner.ToString());
  REQUIRE(inner.ok());
  CHECK(read(*store).purchases() == 7);
  CHECK(read(*store).buyers() == 1);

  // A refund takes back what it added; the store keeps the exact sum, flooring is the reader's.
  REQUIRE(add(*store, -5, -1).ok());
  CHECK(read(*store).purchases() == 2);
  REQUIRE(add(*store, -3, 0).ok());
  internal::CoCounts below = read(*store);
  CHECK(below.purchases() == -1);
  FloorCounters(below);
  CHECK(below.purchases() == 0);
  REQUIRE(add(*store, 1, 0).ok());

  REQUIRE(store->db()->Flush(rocksdb::FlushOptions(), store->cf("counts")).ok());
  REQUIRE(add(*store, 10, 2).ok());
  REQUIRE(store->db()
              ->CompactRange(rocksdb::CompactRangeOptions(), store->cf("counts"), nullptr, nullptr)
              .ok());
  REQUIRE(add(*store, 1, 0).ok());
  store.reset();
  opened = Store::Open(o, {"counts"});
  REQUIRE(opened.ok());
  CHECK(read(**opened).purchases() == 11);
  CHECK(read(**opened).buyers() == 2);
}

TEST_CASE(
    "a hot counter row reads the exact sum of a thousand additions while combining at most "
    "max_successive_merges of them, and every one without the bound",
    "[store][counters]") {
  // What a read of the row has to combine: its stored value, if any, and the additions after it.
  const auto operands = [](Store& s) {
    rocksdb::GetMergeOperandsOptions options;
    options.expected_max_number_of_operands = 2000;
    std::vector<rocksdb::PinnableSlice> values(2000);
    int count = 0;
    const rocksdb::Status status = s.db()->GetMergeOperands(rocksdb::ReadOptions(), s.cf("counts"),
                                                            "a|b", values.data(), &options, &count);
    REQUIRE(status.ok());
    return count;
  };
  // One thousand additions to one row, a tenth of them taking back (a refund): 900 - 100.
  const auto run = [&](size_t max_successive_merges) {
    testing::TempDir dir;
    StoreOptions o = SmallStore(dir.path());
    o.merge_operators["counts"] = CounterSum(internal::CoCounts::default_instance());
    o.max_successive_merges = max_successive_merges;
    auto opened = Store::Open(o, {"counts"});
    REQUIRE(opened.ok());
    Store& store = **opened;
    for (int i = 0; i < 1000; ++i) {
      internal::CoCounts d;
      d.set_purchases(i % 10 == 9 ? -1 : 1);
      d.set_buyers(1);
      REQUIRE(
          store
              .Transact(Durability::kBuffered,
                        [&](Transaction& t) { return t.AddCounters(store.cf("counts"), "a|b", d); })
              .ok());
    }
    internal::CoCounts co;
    REQUIRE(store.GetProto(store.cf("counts"), "a|b", &co).ok());
    CHECK(co.purchases() == 800);
    CHECK(co.buyers() == 1000);
    return operands(store);
  };
  CHECK(run(32) <= 33);
  CHECK(run(0) == 1000);
}

// The nice value of every thread of this process named `name` (RocksDB names its pools' threads
// "rocksdb:low" and "rocksdb:high").
std::vector<int> NiceOfThreadsNamed(const std::string& name) {
  std::vector<int> nices;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm != name) continue;
    std::string stat;
    std::getline(std::ifstream(task.path() / "stat"), stat);
    // Fields after the command, which is in parentheses: state is field 3, nice field 19.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i < 19; ++i) fields >> field;
    int nice = 0;
    fields >> nice;
    nices.push_back(nice);
  }
  return nices;
}

TEST_CASE(
    "compactions run at the lowest CPU priority, flushes at the process's own, so a compaction "
    "after a burst of writes does not take a core from the calls being served",
    "[store][priority]") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  rocksdb::DB* db = store->db();
  // Two table files (two flushes), then one compaction of both.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(db->Put(rocksdb::WriteOptions(), store->cf("things"), absl::StrCat("k", i), "v").ok());
    REQUIRE(db->Flush(rocksdb::FlushOptions(), store->cf("things")).ok());
  }
  REQUIRE(
      db->CompactRange(rocksdb::CompactRangeOptions(), store->cf("things"), nullptr, nullptr).ok());
  const int own = getpriority(PRIO_PROCESS, 0);
  const std::vector<int> compaction = NiceOfThreadsNamed("rocksdb:low");
  const std::vector<int> flush = NiceOfThreadsNamed("rocksdb:high");
  // A pool's thread lowers itself as it takes a job: the one that compacted is at 19.
  CHECK(std::count(compaction.begin(), compaction.end(), 19) >= 1);
  REQUIRE(!flush.empty());
  CHECK(std::all_of(flush.begin(), flush.end(), [&](int nice) { return nice == own; }));
}

}  // namespace
}  // namespace crm::store
