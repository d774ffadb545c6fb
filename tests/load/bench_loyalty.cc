// Benchmark of loyalty (issue "loyalty-tier"): accrual throughput from delivered-order events,
// GetMembership / ExplainMembership latency for a customer whose ledger holds 10,000 entries, and
// coupon reservations at checkout (ReserveCoupon, what CreateOrder with a coupon waits for).
#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/loyalty.pb.h"
#include "grpcpp/client_context.h"
#include "libs/api/validate.h"
#include "libs/auth/caller.h"
#include "tests/load/bench.h"
#include "tests/support/caller.h"
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

// One once-per-order coupon (20.00 CNY off items of 100.00 CNY or more) for each of `customers`;
// their ids, in the same order.
std::vector<std::string> IssueBenchCoupons(const std::string& target,
                                           const std::vector<std::string>& customers) {
  auto stub = v1::LoyaltyService::NewStub(MakeChannels(target, 1).front());
  std::vector<std::string> ids;
  for (const std::string& cid : customers) {
    v1::IssueCouponRequest req;
    req.set_customer_id(cid);
    req.set_source_id("bench:coupon");
    req.mutable_value()->set_amount_minor(2000);
    req.mutable_value()->set_currency("CNY");
    req.mutable_min_spend()->set_amount_minor(10000);
    req.mutable_min_spend()->set_currency("CNY");
    req.set_usage(v1::COUPON_USAGE_ONCE_PER_ORDER);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    ctx.AddMetadata(auth::kCallerMetadata,
                    testing::AssertionOf(testing::InternalCaller("crm-bench")));
    v1::Coupon coupon;
    const grpc::Status s = stub->IssueCoupon(&ctx, req, &coupon);
    if (!s.ok()) {
      throw std::runtime_error(absl::StrCat("IssueCoupon: ", s.error_message()));
    }
    ids.push_back(coupon.coupon_id());
  }
  return ids;
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

  // Checkout: each call reserves a customer's coupon for a new order of two lines.
  constexpr size_t kCouponHolders = 1000;
  auto holders = std::make_shared<const std::vector<std::string>>(
      customers->begin(), customers->begin() + std::min(customers->size(), kCouponHolders));
  auto coupon_ids =
      std::make_shared<const std::vector<std::string>>(IssueBenchCoupons(target, *holders));
  Scenario reserve{
      "ReserveCoupon (checkout with a coupon)",
      {{"ReserveCoupon", "/crm.v1.LoyaltyService/ReserveCoupon",
        [holders, coupon_ids](uint64_t n, absl::BitGen& gen) {
          const size_t i = absl::Uniform<size_t>(gen, 0, holders->size());
          v1::ReserveCouponRequest r;
          r.set_customer_id((*holders)[i]);
          r.set_coupon_id((*coupon_ids)[i]);
          r.set_order_id(absl::StrCat("bench-o", n, "-", absl::Uniform<uint32_t>(gen)));
          for (int line = 0; line < 2; ++line) {
            auto* item = r.add_items();
            item->set_sku(absl::StrCat("sku-", absl::Uniform(gen, 0, 5000)));
            item->set_quantity(1);
            item->mutable_unit_price()->set_amount_minor(absl::Uniform(gen, 5000, 50000));
            item->mutable_unit_price()->set_currency("CNY");
          }
          return r.SerializeAsString();
        }}}};
  report.Add(
      Measure(MakeChannels(target, options.load.channels), reserve, options.load, loyalty->pid()));
  loyalty->Stop();
  profile->Stop();
}

}  // namespace crm::load
