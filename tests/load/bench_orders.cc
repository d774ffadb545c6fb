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

// Percentile of a Prometheus histogram (all series of `name` summed), interpolated within its
// bucket.
double HistogramPercentile(const std::string& metrics_text, const std::string& name, double p) {
  std::map<double, double> cumulative;  // le -> count
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
  LoadOptions one = options.load;
  one.concurrency = 1;
  one.channels = 1;
  const Measurement single =
      Measure(MakeChannels(orders_target, 1), create("CreateOrder, 1 writer"), one, orders.pid());
  report.Add(single);
  LoadOptions many = options.load;
  many.concurrency = 64;
  report.Add(Measure(MakeChannels(orders_target, many.channels), create("CreateOrder, 64 writers"),
                     many, orders.pid()),
             "CreateOrder, 1 writer");

  // The event lag under that load, from order-tracking's own histogram (events to a consumer on
  // loopback).
  consumer.WaitForApplied(order_ids->size(), absl::Seconds(120));
  if (auto page = testing::HttpGet(orders.metrics_port(), "/metrics"); page.ok()) {
    report.Note(absl::StrFormat(
        "event end-to-end lag (OrderPlaced, write to consumer acknowledgement) under that load: "
        "p50 %.1f ms, p99 %.1f ms, %d events",
        1000 * HistogramPercentile(page->body, "crm_event_end_to_end_lag_seconds", 50),
        1000 * HistogramPercentile(page->body, "crm_event_end_to_end_lag_seconds", 99),
        consumer.applied().size()));
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
  report.Add(
      Measure(MakeChannels(orders_target, options.load.channels), get, options.load, orders.pid()));

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
