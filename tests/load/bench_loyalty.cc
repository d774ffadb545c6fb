// Benchmark of loyalty (issue "loyalty-tier"): accrual throughput from delivered-order events, and
// GetMembership / ExplainMembership latency for a customer whose ledger holds 10,000 entries.
#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/loyalty.pb.h"
#include "libs/api/validate.h"
#include "tests/load/bench.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

std::atomic<uint64_t> g_event_seq{0};

void AddDelivered(v1::DeliverEventsRequest& req, const std::string& customer_id,
                  absl::BitGen& gen) {
  const uint64_t n = g_event_seq.fetch_add(1);
  auto* e = req.add_events();
  e->set_event_id(absl::StrCat("bench/0/1.", n));
  e->set_customer_id(customer_id);
  e->set_producer("bench");
  api::SetTimestamp(absl::Now(), e->mutable_occur_time());
  auto* d = e->mutable_order_delivered();
  d->set_order_id(absl::StrCat("o", n));
  auto* item = d->add_items();
  item->set_item_id("1");
  item->set_sku(absl::StrCat("sku-", absl::Uniform(gen, 0, 5000)));
  item->set_category(absl::StrCat("cat-", absl::Uniform(gen, 0, 30)));
  item->set_quantity(1);
  item->mutable_unit_price()->set_amount_minor(absl::Uniform(gen, 500, 50000));
  item->mutable_unit_price()->set_currency("CNY");
}

}  // namespace

void RunLoyaltySuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  auto profile = StartProfile(dir.Sub("profile"));
  auto loyalty =
      StartService("services/loyalty/loyalty",
                   {"--data_dir=" + dir.Sub("loyalty"),
                    absl::StrCat("--customer_profile_address=127.0.0.1:", profile->port())});
  const std::string target = absl::StrCat("127.0.0.1:", loyalty->port());
  absl::Duration took;
  auto customers = std::make_shared<const std::vector<std::string>>(BulkRegisterCustomers(
      absl::StrCat("127.0.0.1:", profile->port()), options.order_customers, 64, &took));

  // Accrual: a producer's batches of 100 OrderDelivered events for random customers.
  constexpr int kBatch = 100;
  Scenario accrual{absl::StrCat("accrual, DeliverEvents x", kBatch),
                   {{"DeliverEvents", "/crm.v1.EventSink/DeliverEvents",
                     [customers](uint64_t, absl::BitGen& gen) {
                       v1::DeliverEventsRequest req;
                       for (int k = 0; k < kBatch; ++k) {
                         AddDelivered(req, RandomOf(*customers, gen), gen);
                       }
                       return req.SerializeAsString();
                     }}}};
  LoadOptions o = options.load;
  o.concurrency = 4;  // a few producers' lanes
  const Measurement a =
      Measure(MakeChannels(target, options.load.channels), accrual, o, loyalty->pid());
  report.Add(a);
  report.Note(absl::StrFormat(
      "loyalty accrual: %.0f delivered-order events/s (growth, points lot, ledger entry, tier "
      "check each; one fsync per batch)",
      a.result.throughput() * kBatch));

  // One customer with 10,000 ledger entries.
  const std::string heavy = customers->front();
  Scenario fill{
      "fill",
      {{"DeliverEvents", "/crm.v1.EventSink/DeliverEvents", [heavy](uint64_t, absl::BitGen& gen) {
          v1::DeliverEventsRequest req;
          for (int k = 0; k < 200; ++k) AddDelivered(req, heavy, gen);
          return req.SerializeAsString();
        }}}};
  RunLoad(MakeChannels(target, 1), fill, FillRun(1, 50));
  Scenario get{
      "GetMembership (10k ledger entries)",
      {{"GetMembership", "/crm.v1.LoyaltyService/GetMembership", [heavy](uint64_t, absl::BitGen&) {
          v1::GetMembershipRequest r;
          r.set_customer_id(heavy);
          return r.SerializeAsString();
        }}}};
  report.Add(MeasureEcho(options.load, "Echo (beside GetMembership)"));
  report.Add(
      Measure(MakeChannels(target, options.load.channels), get, options.load, loyalty->pid()),
      "Echo (beside GetMembership)");
  Scenario explain{"ExplainMembership (10k entries, page 100)",
                   {{"ExplainMembership", "/crm.v1.LoyaltyService/ExplainMembership",
                     [heavy](uint64_t, absl::BitGen&) {
                       v1::ExplainMembershipRequest r;
                       r.set_customer_id(heavy);
                       r.set_page_size(100);
                       return r.SerializeAsString();
                     }}}};
  report.Add(
      Measure(MakeChannels(target, options.load.channels), explain, options.load, loyalty->pid()));
  loyalty->Stop();
  profile->Stop();
}

}  // namespace crm::load
