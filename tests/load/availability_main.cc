// crm-availability: how long one shard of a data service takes to serve again when its process goes
// away with about 1 GiB in its RocksDB directory, and whether an acknowledged write is ever lost.
// Per round, on the same data directory and the same binary:
//   - SIGKILL (a node failure, a force-deleted or OOM-killed pod): RocksDB recovers from its WAL;
//   - SIGTERM (a pod deleted or drained): NOT_SERVING, in-flight calls drained, store closed;
//   - SIGKILL, then the data directory's pages dropped from the page cache before the restart (what
//     a pod that comes back on another node reads: nothing of its volume is cached there).
// Each stop lands while writers are placing orders; after the restart every order whose CreateOrder
// was answered OK before the stop is read back (the RPO check). Times: stop to exit, exit to health
// SERVING on the health port (what the kubelet's probes ask), and to the first successful GetOrder
// of a known order (a real read). Run by tests/load/availability.sh; prints figures, never fails.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/api/validate.h"
#include "libs/log/log.h"
#include "tests/load/loadgen.h"
#include "tests/load/proc_stats.h"
#include "tests/load/shop_fill.h"
#include "tests/load/tool_main.h"
#include "tests/support/caller.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(int, target_mib, 1024, "data to put in the shard's RocksDB directory before measuring");
ABSL_FLAG(int, rounds, 3, "rounds of (SIGKILL, SIGTERM, SIGKILL with a cold page cache)");
ABSL_FLAG(int, fill_in_flight, 32, "ImportOrders calls in flight while filling");
ABSL_FLAG(int, orders_per_import, 100, "orders per ImportOrders call while filling");
ABSL_FLAG(int, customers, 20000, "customers the orders belong to");
ABSL_FLAG(int, writers, 32, "concurrent CreateOrder writers running when the process is stopped");
ABSL_FLAG(double, write_s, 2, "seconds of writes before each stop");
ABSL_FLAG(int, block_cache_mb, 1024, "the shard's --block_cache_mb (prod overlay: 1024)");
ABSL_FLAG(int, memtable_mb, 256, "the shard's --memtable_mb (prod overlay: 256)");
ABSL_FLAG(int, drain_seconds, 10, "the shard's --drain_seconds (CRM_DRAIN_SECONDS: 10)");
ABSL_FLAG(std::string, work_dir, "",
          "where the data goes (default: a fresh temporary folder, removed at the end)");
ABSL_FLAG(std::string, markdown, "", "also write the results as markdown to this file");

namespace crm::load {
namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

std::vector<std::pair<std::string, std::string>> Signed() {
  return {{auth::kCallerMetadata, testing::AssertionOf(testing::InternalCaller("availability"))}};
}

// A channel of its own (no subchannel shared with another channel, so no reconnect backoff carried
// over from an earlier refused connection): one probe attempt each.
std::shared_ptr<grpc::Channel> FreshChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

// Polls every 5 ms until `ok()` holds; the time it first did.
template <typename F>
std::optional<absl::Time> PollUntil(F ok, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (ok()) return absl::Now();
    absl::SleepFor(absl::Milliseconds(5));
  }
  return std::nullopt;
}

bool Serving(int health_port) {
  auto s = testing::HealthCheck(FreshChannel(health_port), "");
  return s.ok() && *s == testing::kServing;
}

// Drops the directory's pages from this machine's page cache (written back first), so the next
// open reads the data from the disk as a pod on another node would.
void DropFromPageCache(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    const int fd = open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    (void)fdatasync(fd);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

// Bytes of the write-ahead logs (NNNNNN.log) in the directory: what a restart replays at most.
uint64_t WalBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".log") total += e.file_size(ec);
  }
  return total;
}

int CountFiles(const std::string& dir, const std::string& extension) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == extension) ++n;
  }
  return n;
}

// The first log line of the process that contains `needle`.
std::optional<std::string> LogLine(const testing::Process& p, const std::string& needle) {
  for (absl::string_view line : absl::StrSplit(p.output(), '\n')) {
    if (absl::StrContains(line, needle)) return std::string(line);
  }
  return std::nullopt;
}

// The value of a field of a JSON log line, as text ("time" -> "2026-...", "seconds" -> "0.4").
std::optional<std::string> FieldOf(const std::string& line, const std::string& field) {
  const std::string key = absl::StrCat("\"", field, "\":");
  const size_t at = line.find(key);
  if (at == std::string::npos) return std::nullopt;
  size_t begin = at + key.size();
  const bool quoted = begin < line.size() && line[begin] == '"';
  if (quoted) ++begin;
  const size_t end = line.find_first_of(quoted ? "\"" : ",}", begin);
  if (end == std::string::npos) return std::nullopt;
  return line.substr(begin, end - begin);
}

std::optional<absl::Time> LogTime(const testing::Process& p, const std::string& needle) {
  auto line = LogLine(p, needle);
  if (!line) return std::nullopt;
  auto text = FieldOf(*line, "time");
  absl::Time t;
  std::string err;
  if (!text || !absl::ParseTime(absl::RFC3339_full, *text, &t, &err)) return std::nullopt;
  return t;
}

const char* kWords[] = {"Wireless", "Organic", "Stainless", "Compact",    "Deluxe",  "Linen",
                        "Ceramic",  "Bamboo",  "Leather",   "Foldable",   "Smart",   "Cotton",
                        "Portable", "Classic", "Ergonomic", "Waterproof", "Vintage", "Mini"};
const char* kThings[] = {"Headphones", "Kettle",   "Backpack", "Desk Lamp", "Blender", "Sneakers",
                         "Teapot",     "Notebook", "Yoga Mat", "Umbrella",  "Jacket",  "Monitor",
                         "Air Fryer",  "Scarf",    "Speaker",  "Wallet",    "Mug",     "Pillow"};
const char* kColours[] = {"Midnight Black", "Pearl White", "Forest Green", "Ocean Blue",
                          "Sand Beige",     "Rose Pink",   "Slate Grey",   "Sunset Orange"};
const char* kCategories[] = {"electronics", "kitchen", "bags",  "home",   "shoes",
                             "apparel",     "office",  "sport", "beauty", "toys"};

// One customer's past orders as a shop exports them: 1-6 lines each, a product title of about
// 90-130 characters (marketplace titles are that long), delivered 2-5 days after placing, all
// within the last two years.
std::string ImportBytes(const std::string& customer_id, uint64_t call, int orders,
                        absl::BitGen& gen) {
  v1::ImportOrdersRequest r;
  r.set_customer_id(customer_id);
  const absl::Time now = absl::Now();
  for (int k = 0; k < orders; ++k) {
    auto* o = r.add_orders();
    o->set_external_order_id(absl::StrCat("INV", call, "-", k));
    const absl::Time placed = now - absl::Hours(absl::Uniform(gen, 24 * 10, 24 * 730)) -
                              absl::Seconds(absl::Uniform(gen, 0, 3600));
    api::SetTimestamp(placed, o->mutable_place_time());
    api::SetTimestamp(placed + absl::Hours(absl::Uniform(gen, 48, 120)),
                      o->mutable_delivered_time());
    const int lines = absl::Uniform(gen, 1, 7);
    for (int l = 0; l < lines; ++l) {
      auto* item = o->add_items();
      const uint32_t model = absl::Uniform<uint32_t>(gen);
      item->set_sku(absl::StrFormat("SKU-%08x", model));
      item->set_name(absl::StrFormat(
          "%s %s %s for %s, model %08X, %s, size %d, pack of %d, free returns within 30 days",
          kWords[model % 18], kWords[(model >> 5) % 18], kThings[(model >> 10) % 18],
          kThings[(model >> 15) % 18], model, kColours[(model >> 20) % 8], 1 + model % 47,
          1 + (model >> 24) % 6));
      item->set_category(kCategories[model % 10]);
      item->set_quantity(absl::Uniform(gen, 1, 4));
      item->mutable_unit_price()->set_amount_minor(absl::Uniform(gen, 500, 200000));
      item->mutable_unit_price()->set_currency("CNY");
    }
    o->mutable_shipping_fee()->set_amount_minor(absl::Uniform(gen, 0, 2000));
    o->mutable_shipping_fee()->set_currency("CNY");
  }
  return r.SerializeAsString();
}

struct OrderRef {
  std::string customer_id, order_id;
};

// The shard under test: order-tracking on fixed loopback ports (a restart comes back on the same
// ones, as a pod keeps its name and ports), keeping its data in one directory.
class Shard {
 public:
  Shard(std::string data_dir, int profile_port)
      : data_dir_(std::move(data_dir)),
        port_(testing::PickFreePort()),
        health_port_(testing::PickFreePort()),
        metrics_port_(testing::PickFreePort()),
        profile_port_(profile_port) {}

  // Starts the binary; the time it was started.
  absl::Time Start() {
    process_ = std::make_unique<testing::Process>(
        testing::Process::BuildPath("services/order_tracking/order-tracking"),
        std::vector<std::string>{
            absl::StrCat("--listen=127.0.0.1:", port_),
            absl::StrCat("--health_listen=127.0.0.1:", health_port_),
            absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_), "--data_dir=" + data_dir_,
            absl::StrCat("--customer_profile_address=127.0.0.1:", profile_port_),
            "--event_sinks=none", "--log_level=info",
            absl::StrCat("--block_cache_mb=", absl::GetFlag(FLAGS_block_cache_mb)),
            absl::StrCat("--memtable_mb=", absl::GetFlag(FLAGS_memtable_mb)),
            absl::StrCat("--drain_seconds=", absl::GetFlag(FLAGS_drain_seconds))});
    const absl::Time started = absl::Now();
    if (auto s = process_->Start(); !s.ok()) throw std::runtime_error(s.ToString());
    return started;
  }
  testing::Process& process() { return *process_; }
  int port() const { return port_; }
  int health_port() const { return health_port_; }
  // RocksDB's estimate of the bytes compaction still has to rewrite (its /metrics gauge).
  std::optional<double> PendingCompactionBytes() const {
    auto page = testing::HttpGet(metrics_port_, "/metrics");
    if (!page.ok()) return std::nullopt;
    auto v = testing::SampleIn(page->body, "crm_rocksdb_pending_compaction_bytes");
    return v.ok() ? std::optional<double>(*v) : std::nullopt;
  }
  const std::string& data_dir() const { return data_dir_; }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  std::string data_dir_;
  int port_, health_port_, metrics_port_, profile_port_;
  std::unique_ptr<testing::Process> process_;
};

// Writers placing orders until told to stop; every order whose CreateOrder answered OK is kept.
class Writers {
 public:
  Writers(const std::string& target, const std::vector<std::string>& customers, int count,
          const std::string& tag)
      : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())) {
    for (int w = 0; w < count; ++w) {
      threads_.emplace_back([this, &customers, w, tag] {
        absl::BitGen gen;
        const auto metadata = Signed();
        for (uint64_t n = 0; !stop_.load(); ++n) {
          const std::string& customer =
              customers[absl::Uniform<size_t>(gen, 0, std::min<size_t>(customers.size(), 2000))];
          const auto reply = testing::RawUnaryCall(
              channel_, "/crm.v1.OrderTrackingService/CreateOrder",
              CreateOrderBytes(customer, absl::StrCat(tag, "-", w, "-", n), gen), metadata,
              absl::Seconds(5));
          v1::Order order;
          if (reply.status.ok() && order.ParseFromString(reply.body)) {
            absl::MutexLock lock(&mu_);
            acknowledged_.push_back({order.customer_id(), order.order_id()});
            continue;
          }
          {
            absl::MutexLock lock(&mu_);
            if (failed_++ == 0) first_error_ = reply.status.error_message();
          }
          // A dead or draining server refuses at once: do not spin.
          if (!stop_.load()) absl::SleepFor(absl::Milliseconds(2));
        }
      });
    }
  }
  // Stops and joins the writers; the orders acknowledged.
  std::vector<OrderRef> Finish() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
    absl::MutexLock lock(&mu_);
    return acknowledged_;
  }
  uint64_t failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }
  std::string first_error() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }
  ~Writers() {
    if (!threads_.empty()) Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  std::vector<OrderRef> acknowledged_ ABSL_GUARDED_BY(mu_);
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

bool ReadOrder(const std::shared_ptr<grpc::Channel>& channel, const OrderRef& ref,
               const std::vector<std::pair<std::string, std::string>>& metadata) {
  v1::GetOrderRequest r;
  r.set_customer_id(ref.customer_id);
  r.set_order_id(ref.order_id);
  const auto reply = testing::RawUnaryCall(channel, "/crm.v1.OrderTrackingService/GetOrder",
                                           r.SerializeAsString(), metadata, absl::Seconds(5));
  v1::Order o;
  return reply.status.ok() && o.ParseFromString(reply.body) && o.order_id() == ref.order_id;
}

// How many of `refs` GetOrder does not find (read with 8 threads; a failed read is tried twice
// more, so that only an order that is not there counts, not a slow answer).
uint64_t CountMissing(const std::string& target, const std::vector<OrderRef>& refs) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  std::atomic<uint64_t> missing{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      const auto metadata = Signed();
      for (size_t i = t; i < refs.size(); i += 8) {
        bool found = false;
        for (int attempt = 0; attempt < 3 && !found; ++attempt) {
          found = ReadOrder(channel, refs[i], metadata);
          if (!found) absl::SleepFor(absl::Milliseconds(100));
        }
        if (!found) ++missing;
      }
    });
  }
  for (auto& r : readers) r.join();
  return missing.load();
}

enum class Stop { kKill, kTerm, kKillCold };

struct Outcome {
  Stop how = Stop::kKill;
  std::string kind;
  int round = 0;
  double stop_to_exit_ms = 0;            // signal sent -> process gone (SIGTERM: the drain)
  double stop_to_not_serving_ms = -1;    // SIGTERM: signal -> health no longer SERVING
  double stop_to_calls_drained_ms = -1;  // SIGTERM: signal -> gRPC server stopped (its log)
  double stop_to_store_closed_ms = -1;   // SIGTERM: signal -> RocksDB closed (its log)
  double stop_to_stopped_ms = -1;        // SIGTERM: signal -> "stopped cleanly", its last log line
  double open_ms = -1;    // start -> "store opened" (WAL replay, recovery, checksums)
  double verify_ms = -1;  // the "store verified" line's seconds: every table file's checksums
  double start_to_serving_ms = 0;  // process started -> health SERVING
  double start_to_read_ms = 0;     // process started -> first GetOrder OK
  double stop_to_read_ms = 0;      // signal sent -> first GetOrder OK
  double wal_mib = 0;              // write-ahead logs on disk at the restart
  double data_mib = 0;             // the whole data directory at the restart
  uint64_t acknowledged = 0, lost = 0, refused = 0;
  std::string first_refusal;
};

// A SIGTERM's steps, in ms after the signal: NOT_SERVING, calls drained, store closed.
std::string DrainSteps(const Outcome& o) {
  if (o.stop_to_not_serving_ms < 0) return "";
  return absl::StrFormat(
      " (NOT_SERVING at %.0f, calls drained at %.0f, store closed at %.0f, last log line at %.0f)",
      o.stop_to_not_serving_ms, o.stop_to_calls_drained_ms, o.stop_to_store_closed_ms,
      o.stop_to_stopped_ms);
}

Outcome StopAndRestart(Shard& shard, Stop how, int round, const std::vector<std::string>& customers,
                       const OrderRef& known) {
  Outcome out;
  out.how = how;
  out.round = round;
  out.kind = how == Stop::kTerm   ? "SIGTERM (pod deleted, drained)"
             : how == Stop::kKill ? "SIGKILL (crash, warm page cache)"
                                  : "SIGKILL, cold page cache (pod on another node)";
  Writers writers(
      shard.target(), customers, absl::GetFlag(FLAGS_writers),
      absl::StrCat("r", round, "-", static_cast<int>(how), "-", absl::ToUnixMicros(absl::Now())));
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_write_s)));
  const pid_t pid = shard.process().pid();
  const absl::Time stopped = absl::Now();
  if (how == Stop::kTerm) {
    std::atomic<bool> exited{false};
    std::optional<absl::Time> not_serving;
    std::thread watch([&] {
      not_serving = PollUntil([&] { return exited.load() || !Serving(shard.health_port()); },
                              absl::Minutes(2));
    });
    kill(pid, SIGTERM);
    const int code = shard.process().Wait(absl::Minutes(2));
    const absl::Time gone = absl::Now();
    exited = true;
    watch.join();
    if (code != 0) std::printf("  SIGTERM: exit code %d\n", code);
    out.stop_to_exit_ms = Ms(gone - stopped);
    if (not_serving) out.stop_to_not_serving_ms = Ms(std::min(*not_serving, gone) - stopped);
    // Where the drain went, from the stopping process's own log.
    const auto calls_done = LogTime(shard.process(), "\"grpc server stopped\"");
    const auto closed = LogTime(shard.process(), "\"store closed\"");
    if (calls_done) out.stop_to_calls_drained_ms = Ms(*calls_done - stopped);
    if (closed) out.stop_to_store_closed_ms = Ms(*closed - stopped);
    if (const auto done = LogTime(shard.process(), "\"stopped cleanly\"")) {
      out.stop_to_stopped_ms = Ms(*done - stopped);
    }
  } else {
    shard.process().Kill();
    out.stop_to_exit_ms = Ms(absl::Now() - stopped);
  }
  std::vector<OrderRef> acknowledged = writers.Finish();
  out.refused = writers.failed();
  out.first_refusal = writers.first_error();
  out.wal_mib = WalBytes(shard.data_dir()) / 1048576.0;
  out.data_mib = DirectoryBytes(shard.data_dir()) / 1048576.0;
  if (how == Stop::kKillCold) DropFromPageCache(shard.data_dir());

  const absl::Time started = shard.Start();
  const auto serving = PollUntil([&] { return Serving(shard.health_port()); }, absl::Minutes(10));
  if (!serving) throw std::runtime_error("the shard did not turn SERVING within 10 minutes");
  const auto metadata = Signed();
  const auto read = PollUntil(
      [&] { return ReadOrder(FreshChannel(shard.port()), known, metadata); }, absl::Minutes(2));
  if (!read) throw std::runtime_error("no GetOrder succeeded within 2 minutes of SERVING");
  out.start_to_serving_ms = Ms(*serving - started);
  out.start_to_read_ms = Ms(*read - started);
  out.stop_to_read_ms = Ms(*read - stopped);
  const auto opened = LogTime(shard.process(), "\"store opened\"");
  if (opened) out.open_ms = Ms(*opened - started);
  if (auto line = LogLine(shard.process(), "\"store verified\"")) {
    double seconds = 0;
    if (auto text = FieldOf(*line, "seconds"); text && absl::SimpleAtod(*text, &seconds)) {
      out.verify_ms = seconds * 1000;
    }
  }
  out.acknowledged = acknowledged.size();
  out.lost = CountMissing(shard.target(), acknowledged);
  const std::string not_serving = DrainSteps(out);
  std::printf(
      "round %d, %s: stop->exit %.0f ms%s; WAL %.1f MiB; start->store opened %.0f ms (checksums "
      "%.0f ms), start->SERVING %.0f ms, start->first read %.0f ms (stop->first read %.0f ms); "
      "%llu orders acknowledged before the stop, %llu of them lost; %llu writes refused (first: "
      "%s)\n",
      round, out.kind.c_str(), out.stop_to_exit_ms, not_serving.c_str(), out.wal_mib, out.open_ms,
      out.verify_ms, out.start_to_serving_ms, out.start_to_read_ms, out.stop_to_read_ms,
      static_cast<unsigned long long>(out.acknowledged), static_cast<unsigned long long>(out.lost),
      static_cast<unsigned long long>(out.refused), out.first_refusal.c_str());
  std::fflush(stdout);
  return out;
}

std::string Spread(std::vector<double> v) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  const double median =
      v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  if (v.front() < 0) return "-";
  return absl::StrFormat("%.0f (%.0f-%.0f)", median, v.front(), v.back());
}

int Run() {
  std::unique_ptr<testing::TempDir> temp;
  std::string work = absl::GetFlag(FLAGS_work_dir);
  if (work.empty()) {
    temp = std::make_unique<testing::TempDir>();
    work = temp->path();
  }
  std::filesystem::create_directories(work);
  testing::Process profile(
      testing::Process::BuildPath("services/customer_profile/customer-profile"),
      {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + work + "/customer-profile",
       "--event_sinks=none"});
  if (!profile.Start().ok() || !profile.WaitServing().ok()) {
    std::fprintf(stderr, "customer-profile did not start:\n%s\n", profile.output().c_str());
    return 1;
  }
  const std::string profile_target = absl::StrCat("127.0.0.1:", profile.port());

  // The customers the orders belong to; the first 2000 get an address to ship to (CreateOrder).
  const int customer_count = absl::GetFlag(FLAGS_customers);
  std::vector<std::string> customers;
  {
    absl::Duration took;
    customers = BulkRegisterCustomers(profile_target, customer_count, 64, &took);
    LoadOptions o = FillRun(64, 0);
    auto list = std::make_shared<const std::vector<std::string>>(customers);
    Scenario addresses{"AddAddress",
                       {{"AddAddress", "/crm.v1.CustomerProfileService/AddAddress",
                         [list](uint64_t i, absl::BitGen&) {
                           v1::AddAddressRequest r;
                           r.set_customer_id((*list)[i % list->size()]);
                           r.set_request_id("home");
                           r.mutable_address()->set_recipient_name("Shopper");
                           r.mutable_address()->set_country_code("CN");
                           r.mutable_address()->set_city("Shanghai");
                           r.mutable_address()->set_street("1 Century Avenue");
                           return r.SerializeAsString();
                         }}}};
    o.max_calls = std::min<uint64_t>(2000, customers.size());
    RunLoad(MakeChannels(profile_target, 4), addresses, o);
  }
  if (customers.empty()) {
    std::fprintf(stderr, "no customer could be registered\n");
    return 1;
  }
  std::printf("%zu customers registered in customer-profile (the shard's dependency)\n",
              customers.size());

  Shard shard(work + "/order-tracking", profile.port());
  shard.Start();
  if (!shard.process().WaitServing().ok()) {
    std::fprintf(stderr, "order-tracking did not start:\n%s\n", shard.process().output().c_str());
    return 1;
  }

  // Fill: one customer's order history per call, until the directory holds the target.
  const uint64_t target = static_cast<uint64_t>(absl::GetFlag(FLAGS_target_mib)) << 20;
  const int per_call = absl::GetFlag(FLAGS_orders_per_import);
  auto ids = std::make_shared<const std::vector<std::string>>(customers);
  std::optional<OrderRef> known;
  std::atomic<uint64_t> call_base{0};
  Scenario fill{"ImportOrders",
                {{"ImportOrders", "/crm.v1.OrderTrackingService/ImportOrders",
                  [ids, per_call, &call_base](uint64_t i, absl::BitGen& gen) {
                    const uint64_t call = call_base.load() + i;
                    return ImportBytes((*ids)[call % ids->size()], call, per_call, gen);
                  }}}};
  // The order the read probe asks for after every restart: one imported before the others.
  {
    absl::BitGen gen;
    const auto reply = testing::RawUnaryCall(
        FreshChannel(shard.port()), "/crm.v1.OrderTrackingService/ImportOrders",
        ImportBytes(customers[0], 0, per_call, gen), Signed(), absl::Seconds(30));
    v1::ImportOrdersResponse r;
    if (!reply.status.ok() || !r.ParseFromString(reply.body) || r.orders_size() == 0) {
      std::fprintf(stderr, "ImportOrders failed: %s\n", reply.status.error_message().c_str());
      return 1;
    }
    known = OrderRef{customers[0], r.orders(0).order_id()};
    call_base = 1;
  }
  const absl::Time fill_start = absl::Now();
  uint64_t imported_calls = 1, errors = 0;
  const uint64_t batch = 2000;
  // Filled means the target is there once compaction has caught up: a directory measured right
  // after a burst of writes also holds garbage compaction is about to drop.
  auto settled_bytes = [&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(90);
    while (absl::Now() < deadline && shard.PendingCompactionBytes().value_or(0) > 0) {
      absl::SleepFor(absl::Seconds(1));
    }
    return DirectoryBytes(shard.data_dir());
  };
  while (DirectoryBytes(shard.data_dir()) < target || settled_bytes() < target) {
    LoadOptions o;
    o.concurrency = absl::GetFlag(FLAGS_fill_in_flight);
    o.warmup = absl::ZeroDuration();
    o.duration = absl::Hours(1);
    o.max_calls = batch;
    o.call_deadline = absl::Seconds(60);
    const LoadResult r = RunLoad(MakeChannels(shard.target(), 4), fill, o);
    imported_calls += r.ok;
    errors += r.errors;
    call_base += batch + static_cast<uint64_t>(o.concurrency);
    if (r.ok == 0) {
      std::fprintf(stderr, "filling failed: %s\n", r.first_error.c_str());
      return 1;
    }
    std::printf("  filled %.0f MiB (%llu ImportOrders calls, %.0f s)\n",
                DirectoryBytes(shard.data_dir()) / 1048576.0,
                static_cast<unsigned long long>(imported_calls),
                absl::ToDoubleSeconds(absl::Now() - fill_start));
    std::fflush(stdout);
  }
  const double fill_s = absl::ToDoubleSeconds(absl::Now() - fill_start);
  const std::string data_line = absl::StrFormat(
      "order-tracking data: %.0f MiB in %d table files (%s), %llu orders in %llu ImportOrders "
      "calls (%llu errors) for %zu customers, filled in %.0f s",
      DirectoryBytes(shard.data_dir()) / 1048576.0, CountFiles(shard.data_dir(), ".sst"), "LZ4",
      static_cast<unsigned long long>(imported_calls * per_call),
      static_cast<unsigned long long>(imported_calls), static_cast<unsigned long long>(errors),
      customers.size(), fill_s);
  std::printf("%s\n", data_line.c_str());
  std::fflush(stdout);

  std::vector<Outcome> outcomes;
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    for (Stop how : {Stop::kKill, Stop::kTerm, Stop::kKillCold}) {
      outcomes.push_back(StopAndRestart(shard, how, round, customers, *known));
    }
  }
  const uint64_t final_bytes = DirectoryBytes(shard.data_dir());
  shard.process().Stop();
  profile.Stop();

  std::string md = absl::StrCat(
      "- ", data_line, "; ", absl::StrFormat("%.0f MiB", final_bytes / 1048576.0), " at the end\n",
      absl::StrFormat("- shard flags: --block_cache_mb=%d --memtable_mb=%d --drain_seconds=%d, "
                      "--verify_store_on_start (default on); %d writers placing orders "
                      "(CreateOrder, synced WAL) for %.1f s before each stop\n\n",
                      absl::GetFlag(FLAGS_block_cache_mb), absl::GetFlag(FLAGS_memtable_mb),
                      absl::GetFlag(FLAGS_drain_seconds), absl::GetFlag(FLAGS_writers),
                      absl::GetFlag(FLAGS_write_s)),
      "| round | stop | stop → exit ms | data MiB | WAL at restart MiB | start → store open ms | "
      "checksums "
      "ms | start → SERVING ms | start → first read ms | stop → first read ms | acknowledged "
      "writes | lost |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& o : outcomes) {
    absl::StrAppendFormat(
        &md,
        "| %d | %s | %.0f%s | %.0f | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %llu | %llu |\n",
        o.round, o.kind, o.stop_to_exit_ms, DrainSteps(o), o.data_mib, o.wal_mib, o.open_ms,
        o.verify_ms, o.start_to_serving_ms, o.start_to_read_ms, o.stop_to_read_ms,
        static_cast<unsigned long long>(o.acknowledged), static_cast<unsigned long long>(o.lost));
  }
  absl::StrAppend(
      &md,
      "\nMedian (min-max) over the rounds; the checksum read rate is the data "
      "directory's size without its write-ahead logs over the time the checksums took:\n\n| stop | "
      "stop → exit ms | "
      "start → store open ms | checksums ms | checksum read MiB/s | start → SERVING ms | start → "
      "first read ms | stop → first read ms | lost / acknowledged |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (Stop how : {Stop::kKill, Stop::kTerm, Stop::kKillCold}) {
    std::vector<double> exit, open, verify, rate, serving, read, total;
    uint64_t acked = 0, lost = 0;
    std::string kind;
    for (const Outcome& o : outcomes) {
      if (o.how != how) continue;
      kind = o.kind;
      exit.push_back(o.stop_to_exit_ms);
      open.push_back(o.open_ms);
      verify.push_back(o.verify_ms);
      if (o.verify_ms > 0) rate.push_back((o.data_mib - o.wal_mib) / (o.verify_ms / 1000));
      serving.push_back(o.start_to_serving_ms);
      read.push_back(o.start_to_read_ms);
      total.push_back(o.stop_to_read_ms);
      acked += o.acknowledged;
      lost += o.lost;
    }
    absl::StrAppendFormat(&md, "| %s | %s | %s | %s | %s | %s | %s | %s | %llu / %llu |\n", kind,
                          Spread(exit), Spread(open), Spread(verify), Spread(rate), Spread(serving),
                          Spread(read), Spread(total), static_cast<unsigned long long>(lost),
                          static_cast<unsigned long long>(acked));
  }
  std::printf("\n%s", md.c_str());
  if (!absl::GetFlag(FLAGS_markdown).empty()) std::ofstream(absl::GetFlag(FLAGS_markdown)) << md;
  return 0;
}

}  // namespace
}  // namespace crm::load

int main(int argc, char** argv) {
  crm::load::StartTool(argc, argv);
  // The processes this starts verify the assertions it signs with this key.
  (void)crm::testing::TestInternalKeyFile();
  try {
    return crm::load::Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "availability: %s\n", e.what());
    return 1;
  }
}
