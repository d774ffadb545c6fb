// Benchmark of order-tracking (issue "order-tracking and events"): CreateOrder and
// AddTrackingEvents throughput with a synced WAL (one writer versus many, to show group commit),
// GetOrder latency, and the end-to-end lag of the events they emit, read from the service's own lag
// histogram.
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "libs/api/validate.h"
#include "tests/load/bench.h"
#include "tests/support/event_recorder.h"
#include "tests/support/http.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

// Cumulative bucket counts (upper bound -> count) of a Prometheus histogram, all series of `name`
// summed.
using Buckets = std::map<double, double>;
Buckets HistogramBuckets(const std::string& metrics_text, const std::string& name) {
  Buckets cumulative;
  for (absl::string_view line : absl::StrSplit(metrics_text, '\n')) {
    if (!absl::StartsWith(line, name + "_bucket{")) continue;
    const size_t le = line.find("le=\"");
    const size_t end = line.find('"', le + 4);
    const size_t space = line.rfind(' ');
    double bound, count;
    std::string le_text(line.substr(le + 4, end - le - 4));
    if (le_text == "+Inf")
      bound = 1e18;
    else if (!absl::SimpleAtod(le_text, &bound))
      continue;
    if (!absl::SimpleAtod(line.substr(space + 1), &count)) continue;
    cumulative[bound] += count;
  }
  return cumulative;
}

// What was observed between two readings of the same histogram.
Buckets Since(const Buckets& before, Buckets after) {
  for (auto& [bound, count] : after) {
    if (auto it = before.find(bound); it != before.end()) count -= it->second;
  }
  return after;
}

// Percentile `p` of the observations, interpolated within its bucket.
double Percentile(const Buckets& cumulative, double p) {
  if (cumulative.empty()) return 0;
  const double total = cumulative.rbegin()->second;
  if (total == 0) return 0;
  const double rank = p / 100 * total;
  double prev_bound = 0, prev_count = 0;
  for (const auto& [bound, count] : cumulative) {
    if (count >= rank) {
      if (bound >= 1e18) return prev_bound;
      const double in_bucket = count - prev_count;
      return prev_bound +
             (bound - prev_bound) * (in_bucket > 0 ? (rank - prev_count) / in_bucket : 0);
    }
    prev_bound = bound;
    prev_count = count;
  }
  return prev_bound;
}

// The producer's delivery lag histogram now.
Buckets LagNow(const testing::Process& producer) {
  auto page = testing::HttpGet(producer.metrics_port(), "/metrics");
  return page.ok() ? HistogramBuckets(page->body, "crm_event_end_to_end_lag_seconds") : Buckets();
}

}  // namespace

void RunOrdersSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  testing::EventRecorder consumer;
  consumer.Start();
  auto profile = StartProfile(dir.Sub("profile"));
  testing::Process orders(
      testing::Process::BuildPath("services/order_tracking/order-tracking"),
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--data_dir=" + dir.Sub("orders"),
       absl::StrCat("--customer_profile_address=127.0.0.1:", profile->port()),
       "--event_sinks=bench=" + consumer.address()});
  StartServing(orders);
  const std::string profile_target = absl::StrCat("127.0.0.1:", profile->port());
  const std::string orders_target = absl::StrCat("127.0.0.1:", orders.port());

  // Customers with an address to ship to.
  absl::Duration took;
  auto customers = std::make_shared<const std::vector<std::string>>(
      BulkRegisterCustomers(profile_target, options.order_customers, 64, &took));
  Scenario addresses{"AddAddress (setup)",
                     {{"AddAddress", "/crm.v1.CustomerProfileService/AddAddress",
                       [customers](uint64_t i, absl::BitGen&) {
                         v1::AddAddressRequest r;
                         r.set_customer_id((*customers)[i % customers->size()]);
                         r.set_request_id("addr");
                         r.mutable_address()->set_recipient_name("Bench");
                         r.mutable_address()->set_city("Shanghai");
                         r.mutable_address()->set_street("1 Century Avenue");
                         return r.SerializeAsString();
                       }}}};
  const LoadOptions setup = FillRun(64, customers->size());
  RunLoad(MakeChannels(profile_target, 4), addresses, setup);

  auto order_ids = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  auto mu = std::make_shared<absl::Mutex>();
  auto create = [&](const std::string& name) {
    return Scenario{name,
                    {{"CreateOrder", "/crm.v1.OrderTrackingService/CreateOrder",
                      [customers](uint64_t i, absl::BitGen& gen) {
                        return CreateOrderBytes(
                            (*customers)[absl::Uniform<size_t>(gen, 0, customers->size())],
                            absl::StrCat("bench-", i, "-", absl::Uniform<uint64_t>(gen)), gen);
                      },
                      1.0,
                      [order_ids, mu](const std::string& bytes) {
                        v1::Order o;
                        if (!o.ParseFromString(bytes)) return;
                        absl::MutexLock lock(mu.get());
                        order_ids->emplace_back(o.customer_id(), o.order_id());
                      }}}};
  };
  // CreateOrder at 1, 8 and 64 writers, each followed by the delivery lag of the events it wrote
  // (commit to the consumer's acknowledgement, from order-tracking's own histogram; the consumer
  // on loopback syncs its WAL once per batch, as every service's consumer does).
  for (int writers : {1, 8, 64}) {
    LoadOptions load = options.load;
    load.concurrency = writers;
    load.channels = std::min(writers, options.load.channels);
    const Buckets before = LagNow(orders);
    const std::string name =
        absl::StrCat("CreateOrder, ", writers, writers == 1 ? " writer" : " writers");
    Measurement m =
        Measure(MakeChannels(orders_target, load.channels), create(name), load, orders.pid());
    consumer.WaitForApplied(order_ids->size(), absl::Seconds(120));
    const Buckets lag = Since(before, LagNow(orders));
    report.Add(m, writers == 1 ? "" : "CreateOrder, 1 writer");
    report.Note(absl::StrFormat(
        "event delivery lag at %d writer(s) (OrderPlaced, commit to consumer acknowledgement): "
        "p50 %.1f ms, p99 %.1f ms over %.0f events",
        writers, 1000 * Percentile(lag, 50), 1000 * Percentile(lag, 99),
        lag.empty() ? 0.0 : lag.rbegin()->second));
  }

  auto snapshot = std::make_shared<const std::vector<std::pair<std::string, std::string>>>([&] {
    absl::MutexLock lock(mu.get());
    return *order_ids;
  }());
  Scenario get{"GetOrder",
               {{"GetOrder", "/crm.v1.OrderTrackingService/GetOrder",
                 [snapshot](uint64_t, absl::BitGen& gen) {
                   const auto& [c, o] =
                       (*snapshot)[absl::Uniform<size_t>(gen, 0, snapshot->size())];
                   v1::GetOrderRequest r;
                   r.set_customer_id(c);
                   r.set_order_id(o);
                   return r.SerializeAsString();
                 }}}};
  report.Add(MeasureEcho(options.load, "Echo (beside GetOrder)"));
  report.Add(
      Measure(MakeChannels(orders_target, options.load.channels), get, options.load, orders.pid()),
      "Echo (beside GetOrder)");

  // Hand a set of orders to the carrier, then stream location updates for them in batches of 50.
  const size_t shipped = std::min<size_t>(snapshot->size(), 2000);
  auto step = [&](const char* method,
                  std::function<std::string(const std::pair<std::string, std::string>&)> make) {
    Scenario s{
        "setup",
        {{"setup", method, [&, make](uint64_t i, absl::BitGen&) { return make((*snapshot)[i]); }}}};
    LoadOptions o = setup;
    o.max_calls = shipped;
    RunLoad(MakeChannels(orders_target, 4), s, o);
  };
  step("/crm.v1.OrderTrackingService/PayOrder", [](const auto& id) {
    v1::PayOrderRequest r;
    r.set_customer_id(id.first);
    r.set_order_id(id.second);
    r.set_payment_reference("bench");
    return r.SerializeAsString();
  });
  step("/crm.v1.OrderTrackingService/ProcessOrder", [](const auto& id) {
    v1::ProcessOrderRequest r;
    r.set_customer_id(id.first);
    r.set_order_id(id.second);
    return r.SerializeAsString();
  });
  for (auto status : {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
                      v1::PACKAGE_STATUS_HANDED_TO_CARRIER}) {
    step("/crm.v1.OrderTrackingService/AdvancePackage", [status](const auto& id) {
      v1::AdvancePackageRequest r;
      r.set_customer_id(id.first);
      r.set_order_id(id.second);
      r.set_package_id(id.second + "-p1");
      r.set_status(status);
      r.set_carrier("SF Express");
      r.set_tracking_number("SF" + id.second);
      return r.SerializeAsString();
    });
  }
  constexpr int kBatch = 50;
  Scenario tracking{
      absl::StrCat("AddTrackingEvents x", kBatch),
      {{"AddTrackingEvents", "/crm.v1.OrderTrackingService/AddTrackingEvents",
        [snapshot, shipped](uint64_t i, absl::BitGen& gen) {
          v1::AddTrackingEventsRequest r;
          const absl::Time now = absl::Now();
          for (int k = 0; k < kBatch; ++k) {
            auto* e = r.add_events();
            e->set_carrier_event_id(
                absl::StrCat("loc-", i, "-", k, "-", absl::Uniform<uint32_t>(gen)));
            e->set_tracking_number("SF" +
                                   (*snapshot)[absl::Uniform<size_t>(gen, 0, shipped)].second);
            e->mutable_location()->set_latitude(31.2 + absl::Uniform(gen, 0.0, 0.1));
            e->mutable_location()->set_longitude(121.4 + absl::Uniform(gen, 0.0, 0.1));
            api::SetTimestamp(now, e->mutable_event_time());
          }
          return r.SerializeAsString();
        }}}};
  LoadOptions track = options.load;
  track.concurrency = 16;
  const Measurement t =
      Measure(MakeChannels(orders_target, options.load.channels), tracking, track, orders.pid());
  report.Add(t);
  report.Note(absl::StrFormat(
      "AddTrackingEvents: %.0f carrier events/s (%d per call, synced once per call)",
      t.result.throughput() * kBatch, kBatch));
  orders.Stop();
  profile->Stop();
}

}  // namespace crm::load
