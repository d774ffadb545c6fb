// crm.v1.RecommendationService end to end: the real service on a loopback port over real RocksDB,
// learning through its EventSink exactly as order-tracking and customer-profile deliver to it, with
// the real customer-profile deciding marketing consent and contact caps.
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/store/key.h"
#include "libs/store/store.h"
#include "services/recommendation/models.h"
#include "services/recommendation/recommendation_component.h"
#include "services/recommendation/recommendation_store.h"
#include "tests/support/caller.h"
#include "tests/support/http.h"
#include "tests/support/metric_value.h"
#include "tests/support/metrics_page.h"
#include "tests/support/outbox_events.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

namespace crm::recommendation {
namespace {

using RecoHarness = testing::ServiceHarness<RecommendationComponent>;
using Stub = v1::RecommendationService::Stub;
using testing::CallOk;
using testing::RequireError;
using testing::StatusOf;

using testing::kDay;

// A question about one item (RelatedItemsRequest, BoughtTogetherRequest): up to `count` answers.
template <typename Request>
Request AboutSku(const std::string& sku, int count) {
  Request r;
  r.set_sku(sku);
  r.set_count(count);
  return r;
}

v1::BestSellersRequest BestSellers(int count, const std::string& category = "") {
  v1::BestSellersRequest r;
  r.set_count(count);
  r.set_category(category);
  return r;
}

// Feedback from `customer_id`'s home page, under `request_id`; the caller adds what was shown and
// clicked.
v1::RecordFeedbackRequest HomeFeedback(const std::string& customer_id,
                                       const std::string& request_id) {
  auto fb = testing::ForCustomer<v1::RecordFeedbackRequest>(customer_id);
  fb.set_placement(v1::PLACEMENT_HOME);
  fb.set_request_id(request_id);
  return fb;
}

// recommendation, calling customer-profile for consent and contact caps.
struct World : testing::WithCustomerProfile {
  // `event_sinks`: where recommendation's own events go (kKeepEvents keeps them in its outbox);
  // `reminder_sweep_s`: --reminder_sweep_interval_s (0: tests run sweeps themselves);
  // `bestseller_cache_s`: --bestseller_cache_s (0, best sellers summed on every call, so a test
  // sees a sale at once).
  // `disk_reserve_bytes`: the store's disk reserve (0: none).
  explicit World(bool serve_metrics = false, const std::string& event_sinks = "none",
                 int reminder_sweep_s = 0, int bestseller_cache_s = 0,
                 uint64_t disk_reserve_bytes = 0)
      : reco(CallingProfile(RecoOptions(serve_metrics, event_sinks, reminder_sweep_s,
                                        bestseller_cache_s, disk_reserve_bytes))) {}
  static RecoHarness::Options RecoOptions(bool serve_metrics, const std::string& event_sinks,
                                          int reminder_sweep_s, int bestseller_cache_s,
                                          uint64_t disk_reserve_bytes) {
    absl::SetFlag(&FLAGS_bestseller_cache_s, bestseller_cache_s);
    absl::SetFlag(&FLAGS_reminder_sweep_interval_s, reminder_sweep_s);
    RecoHarness::Options o;
    o.serve_metrics = serve_metrics;
    o.event_sinks = event_sinks;
    o.disk_reserve_bytes = disk_reserve_bytes;
    return o;
  }

  absl::Time Now() { return reco.clock().Now(); }

  void Catalog(const std::vector<std::tuple<std::string, std::string>>& items) {
    v1::UpsertCatalogItemsRequest req;
    for (const auto& [sku, category] : items) {
      auto* i = req.add_items();
      i->set_sku(sku);
      i->set_name("Item " + sku);
      i->set_category(category);
    }
    CallOk(stub.get(), &Stub::UpsertCatalogItems, req);
  }

  v1::Event NewEvent(const std::string& customer_id, absl::Time when) {
    return testing::EventFrom("order-tracking", ++seq, customer_id, when);
  }

  v1::Event Delivered(const std::string& customer_id, const std::vector<std::string>& skus,
                      absl::Time when, const std::string& order_id = "") {
    v1::Event e = NewEvent(customer_id, when);
    auto* d = e.mutable_order_delivered();
    d->set_order_id(order_id.empty() ? "o" + std::to_string(seq) : order_id);
    for (const auto& sku : skus) {
      auto* i = d->add_items();
      i->set_item_id(sku);
      i->set_sku(sku);
      i->set_quantity(1);
    }
    api::SetTimestamp(when, d->mutable_delivered_time());
    return e;
  }

  void Deliver(const std::vector<v1::Event>& events) { testing::DeliverEvents(sink.get(), events); }

  void Buy(const std::string& customer_id, const std::vector<std::string>& skus, absl::Time when) {
    Deliver({Delivered(customer_id, skus, when)});
  }

  v1::RecommendResponse Recommend(const std::string& customer_id,
                                  v1::Placement placement = v1::PLACEMENT_HOME, int count = 10,
                                  v1::Model model = v1::MODEL_BLEND,
                                  std::vector<std::string> context = {}) {
    auto req = testing::ForCustomer<v1::RecommendRequest>(customer_id);
    req.set_placement(placement);
    req.set_count(count);
    req.set_model(model);
    for (const auto& c : context) req.add_context_skus(c);
    return CallOk(stub.get(), &Stub::Recommend, req);
  }

  v1::RelatedItemsResponse Related(const std::string& sku, int count) {
    return CallOk(stub.get(), &Stub::RelatedItems, AboutSku<v1::RelatedItemsRequest>(sku, count));
  }

  RecoHarness reco;
  std::unique_ptr<Stub> stub = v1::RecommendationService::NewStub(reco.channel());
  std::unique_ptr<v1::EventSink::Stub> sink = v1::EventSink::NewStub(reco.channel());
  int seq = 0;
};

std::vector<std::string> Skus(const v1::RecommendResponse& r) {
  std::vector<std::string> out;
  for (const auto& rec : r.recommendations()) out.push_back(rec.item().sku());
  return out;
}

bool Has(const v1::RecommendResponse& r, const std::string& sku) {
  for (const auto& rec : r.recommendations()) {
    if (rec.item().sku() == sku) return true;
  }
  return false;
}

// A small shop: phones with their cases (a complementary pair), a best-selling charger everybody
// buys, and filler items in a few categories.
void SmallShop(World& w) {
  w.Catalog({{"phone", "phones"},
             {"case", "accessories"},
             {"charger", "accessories"},
             {"pen", "office"},
             {"paper", "office"},
             {"mug", "kitchen"},
             {"kettle", "kitchen"},
             {"teapot", "kitchen"}});
  const absl::Time t = w.Now() - 10 * kDay;
  for (int i = 0; i < 8; ++i) w.Buy("buyer" + std::to_string(i), {"phone", "case"}, t);
  for (int i = 0; i < 30; ++i)
    w.Buy("crowd" + std::to_string(i), {"charger", i % 2 ? "pen" : "mug"}, t);
  for (int i = 0; i < 3; ++i) w.Buy("office" + std::to_string(i), {"pen", "paper"}, t);
}

// The second TV, launched yesterday.
void LaunchTv2(World& w) {
  v1::UpsertCatalogItemsRequest launch;
  auto* tv2 = launch.add_items();
  tv2->set_sku("tv-2");
  tv2->set_name("TV mark II");
  tv2->set_category("tv");
  tv2->set_successor_of("tv-1");
  api::SetTimestamp(w.Now() - kDay, tv2->mutable_launch_time());
  CallOk(w.stub.get(), &Stub::UpsertCatalogItems, launch);
}

TEST_CASE(
    "catalog: upsert, get, stock changes, and each bad item is reported while the rest are "
    "upserted") {
  World w;
  v1::UpsertCatalogItemsRequest req;
  auto* a = req.add_items();
  a->set_sku("tv-2025");
  a->set_name("Television 2025");
  a->set_category("tv");
  a->mutable_price()->set_amount_minor(399900);
  a->mutable_price()->set_currency("CNY");
  auto* b = req.add_items();
  b->set_sku("tv-2026");
  b->set_name("Television 2026");
  b->set_category("tv");
  b->set_successor_of("tv-2025");  // in the same batch: fine
  b->set_seasonal(true);
  CHECK(CallOk(w.stub.get(), &Stub::UpsertCatalogItems, req).upserted_count() == 2);

  v1::GetCatalogItemRequest get;
  get.set_sku("tv-2026");
  v1::CatalogItem item = CallOk(w.stub.get(), &Stub::GetCatalogItem, get);
  CHECK(item.successor_of() == "tv-2025");
  CHECK(item.in_stock());  // new items are in stock unless told otherwise
  CHECK(item.has_update_time());

  v1::SetStockRequest stock;
  auto* change = stock.add_changes();
  change->set_sku("tv-2026");
  change->set_in_stock(false);
  stock.add_changes()->set_sku("no-such-tv");
  const v1::SetStockResponse stocked = CallOk(w.stub.get(), &Stub::SetStock, stock);
  CHECK(stocked.changed_count() == 1);
  REQUIRE(stocked.unknown_skus_size() == 1);
  CHECK(stocked.unknown_skus(0) == "no-such-tv");
  // Re-upserting without a stock state keeps it.
  v1::UpsertCatalogItemsRequest again;
  *again.add_items() = req.items(1);
  CallOk(w.stub.get(), &Stub::UpsertCatalogItems, again);
  CHECK_FALSE(CallOk(w.stub.get(), &Stub::GetCatalogItem, get).in_stock());

  // Each bad item is listed with its position and the field at fault; the good item next to it is
  // upserted.
  int batch = 0;
  auto bad = [&](auto edit, const std::string& field) {
    const std::string good_sku = "fine-" + std::to_string(++batch);
    v1::UpsertCatalogItemsRequest r;
    auto* ok = r.add_items();
    ok->set_sku(good_sku);
    ok->set_name("Fine");
    ok->set_category("misc");
    auto* i = r.add_items();
    i->set_sku("x1");
    i->set_name("X");
    i->set_category("misc");
    edit(*i);
    if (i->sku() == "fine") i->set_sku(good_sku);
    const v1::UpsertCatalogItemsResponse out = CallOk(w.stub.get(), &Stub::UpsertCatalogItems, r);
    CHECK(out.upserted_count() == 1);
    REQUIRE(out.errors_size() == 1);
    CHECK(out.errors(0).index() == 1);
    CHECK(out.errors(0).sku() == i->sku());
    INFO(out.errors(0).message());
    CHECK(out.errors(0).message().rfind(field + ":", 0) == 0);
    v1::GetCatalogItemRequest good;
    good.set_sku(good_sku);
    CHECK(StatusOf(w.stub.get(), &Stub::GetCatalogItem, good).ok());
  };
  bad([](v1::CatalogItem& i) { i.set_sku(""); }, "items[1].sku");
  bad([](v1::CatalogItem& i) { i.set_sku("tab\tinside"); }, "items[1].sku");
  bad([](v1::CatalogItem& i) { i.set_sku("fine"); }, "items[1].sku");  // the same SKU twice
  bad([](v1::CatalogItem& i) { i.set_name(""); }, "items[1].name");
  bad([](v1::CatalogItem& i) { i.mutable_price()->set_currency("yuan"); },
      "items[1].price.currency");
  bad([](v1::CatalogItem& i) { i.set_successor_of("x1"); }, "items[1].successor_of");
  bad([](v1::CatalogItem& i) { i.set_successor_of("unknown-model"); }, "items[1].successor_of");
  get.set_sku("x1");
  RequireError(StatusOf(w.stub.get(), &Stub::GetCatalogItem, get), grpc::StatusCode::NOT_FOUND,
               "sku");
  RequireError(StatusOf(w.stub.get(), &Stub::UpsertCatalogItems, v1::UpsertCatalogItemsRequest()),
               grpc::StatusCode::INVALID_ARGUMENT, "items");
}

TEST_CASE(
    "one bad SKU in a 1000-item catalog batch fails only itself, and a SKU with a space is a SKU "
    "everywhere") {
  World w;
  v1::UpsertCatalogItemsRequest req;
  for (int i = 0; i < 999; ++i) {
    auto* item = req.add_items();
    item->set_sku("item-" + std::to_string(i));
    item->set_name("Item " + std::to_string(i));
    if (i % 2 == 0) item->set_category("misc");  // category is optional
  }
  auto* spaced = req.add_items();
  spaced->set_sku("BANK CHARGES");
  spaced->set_name("Bank charges");
  req.mutable_items(500)->set_sku("bad\nsku");
  const v1::UpsertCatalogItemsResponse resp = CallOk(w.stub.get(), &Stub::UpsertCatalogItems, req);
  CHECK(resp.upserted_count() == 999);
  REQUIRE(resp.errors_size() == 1);
  CHECK(resp.errors(0).index() == 500);
  CHECK(resp.errors(0).message().rfind("items[500].sku: ", 0) == 0);
  v1::GetCatalogItemRequest get;
  get.set_sku("BANK CHARGES");
  CHECK(CallOk(w.stub.get(), &Stub::GetCatalogItem, get).category().empty());

  // Purchase events follow the same rule: the spaced SKU is learned and recommended, the bad one
  // ignored.
  const absl::Time t = w.Now() - 2 * kDay;
  for (int i = 0; i < 3; ++i)
    w.Buy("b" + std::to_string(i), {"item-1", "BANK CHARGES", "bad\nsku"}, t);
  w.Buy("newcomer", {"item-1"}, t);
  auto recs = w.Recommend("newcomer");
  CHECK(Has(recs, "BANK CHARGES"));
  CHECK_FALSE(Has(recs, "bad\nsku"));
  const v1::RelatedItemsResponse rel = w.Related("item-1", 5);
  REQUIRE(rel.items_size() == 1);
  CHECK(rel.items(0).item().sku() == "BANK CHARGES");
  auto in_cart = testing::ForCustomer<v1::RecommendRequest>("newcomer");
  in_cart.set_placement(v1::PLACEMENT_CART);
  in_cart.set_count(3);
  in_cart.add_context_skus("bad\nsku");
  RequireError(StatusOf(w.stub.get(), &Stub::Recommend, in_cart),
               grpc::StatusCode::INVALID_ARGUMENT, "context_skus[0]");
}

TEST_CASE("an order delivered event changes the next recommendations") {
  World w;
  SmallShop(w);
  // Nothing known about the newcomer: popular items, as cold start.
  auto before = w.Recommend("newcomer");
  REQUIRE_FALSE(before.recommendations().empty());
  CHECK(before.recommendations(0).item().sku() == "charger");
  CHECK(before.recommendations(0).model() == v1::MODEL_COLD_START);

  w.Buy("newcomer", {"phone"}, w.Now() - kDay);
  auto after = w.Recommend("newcomer");
  REQUIRE_FALSE(after.recommendations().empty());
  CHECK(after.recommendations(0).item().sku() == "case");
  CHECK((after.recommendations(0).model() == v1::MODEL_ITEM_CF ||
         after.recommendations(0).model() == v1::MODEL_BUNDLE));
  CHECK(after.recommendations(0).reason().find("Item phone") != std::string::npos);
  CHECK_FALSE(Has(after, "phone"));  // just bought
  // Every recommendation explains itself.
  for (const auto& r : after.recommendations()) {
    CHECK_FALSE(r.reason().empty());
    CHECK(r.model() != v1::MODEL_UNSPECIFIED);
  }
  // The item-CF model alone ranks the case first too, and never the best-selling charger above it.
  auto cf = w.Recommend("newcomer", v1::PLACEMENT_HOME, 10, v1::MODEL_ITEM_CF);
  REQUIRE_FALSE(cf.recommendations().empty());
  CHECK(cf.recommendations(0).item().sku() == "case");
  for (const auto& r : cf.recommendations()) CHECK(r.model() == v1::MODEL_ITEM_CF);

  // On the case's product page: bought together with it.
  auto page = w.Recommend("someone", v1::PLACEMENT_PRODUCT_PAGE, 5, v1::MODEL_BLEND, {"phone"});
  REQUIRE_FALSE(page.recommendations().empty());
  CHECK(page.recommendations(0).item().sku() == "case");
  CHECK_FALSE(Has(page, "phone"));  // the page's own item
}

TEST_CASE("a new pairing reaches bundles and item-to-item at the next call after its delivery") {
  // The refresh after each delivery rewrites the lists Recommend reads (one per seed and per page
  // item), including lists it read just before: nothing may serve them as they were.
  World w;
  SmallShop(w);
  w.Buy("tea-lover", {"teapot"}, w.Now() - 2 * kDay);
  auto bundles_for_teapot = [&] {
    return w.Recommend("someone", v1::PLACEMENT_PRODUCT_PAGE, 5, v1::MODEL_BUNDLE, {"teapot"});
  };
  auto item_cf_for_tea_lover = [&] {
    return w.Recommend("tea-lover", v1::PLACEMENT_HOME, 5, v1::MODEL_ITEM_CF);
  };
  // Read while the teapot goes with nothing.
  CHECK_FALSE(Has(bundles_for_teapot(), "kettle"));
  CHECK_FALSE(Has(item_cf_for_tea_lover(), "kettle"));
  for (int i = 0; i < 3; ++i) w.Buy("brewer" + std::to_string(i), {"teapot", "kettle"}, w.Now());
  CHECK(Has(bundles_for_teapot(), "kettle"));
  CHECK(Has(item_cf_for_tea_lover(), "kettle"));
}

TEST_CASE(
    "bought together and related items: exact support, confidence and lift, not just best "
    "sellers") {
  World w;
  SmallShop(w);
  const v1::BoughtTogetherResponse resp =
      CallOk(w.stub.get(), &Stub::BoughtTogether, AboutSku<v1::BoughtTogetherRequest>("phone", 5));
  REQUIRE(resp.rules_size() == 1);
  const auto& rule = resp.rules(0);
  CHECK(rule.item().sku() == "case");
  // 41 baskets: 8 with phone and case.
  CHECK(rule.baskets_together() == 8);
  CHECK(rule.support() == Approx(8.0 / 41));
  CHECK(rule.confidence() == Approx(1.0));
  CHECK(rule.lift() == Approx(41.0 / 8));

  // The pen goes with paper (3 of 3 paper baskets) far more than with the charger it shares 15
  // baskets with.
  v1::RelatedItemsResponse rel = w.Related("paper", 5);
  REQUIRE(rel.items_size() >= 1);
  CHECK(rel.items(0).item().sku() == "pen");
  CHECK(rel.items(0).co_purchases() == 3);
  // A best seller bought with everything is not "related" to a niche item just by volume: the
  // case's neighbour is the phone, not the charger it never met.
  rel = w.Related("case", 5);
  REQUIRE(rel.items_size() == 1);
  CHECK(rel.items(0).item().sku() == "phone");
  CHECK(rel.items(0).similarity() == Approx(8.0 / 8 * 8 / 10));  // cosine 1, shrunk by 8 / (8 + 2)

  // Best sellers over the last 30 days, per category and overall.
  const v1::BestSellersRequest best = BestSellers(2, "accessories");
  v1::BestSellersResponse top = CallOk(w.stub.get(), &Stub::BestSellers, best);
  REQUIRE(top.items_size() == 2);
  CHECK(top.items(0).item().sku() == "charger");
  CHECK(top.items(0).units() == 30);
  CHECK(top.items(1).item().sku() == "case");
  // Nothing sold in the last 30 days: best sellers come from a longer window instead of nothing.
  w.reco.clock().Advance(25 * kDay);
  top = CallOk(w.stub.get(), &Stub::BestSellers, best);
  REQUIRE(top.items_size() == 2);
  CHECK(top.items(0).item().sku() == "charger");
}

// SmallShop's one rule for the phone: bought together with the case.
v1::BundleRule PhoneAndCase(World& w) {
  const v1::BoughtTogetherResponse resp =
      CallOk(w.stub.get(), &Stub::BoughtTogether, AboutSku<v1::BoughtTogetherRequest>("phone", 5));
  REQUIRE(resp.rules_size() == 1);
  return resp.rules(0);
}

TEST_CASE("an item's counts read once are not served stale after the next delivery") {
  // Item counts are cached once read (they are costly counter rows); a committed delivery must
  // drop them, or confidence would stay as it was before the basket.
  World w;
  SmallShop(w);
  CHECK(PhoneAndCase(w).confidence() == Approx(1.0));  // 8 phone baskets, all with the case
  w.Deliver({w.Delivered("late-phone-buyer", {"phone"}, w.Now() - kDay, "order-phone-alone")});
  CHECK(PhoneAndCase(w).confidence() == Approx(8.0 / 9));
}

TEST_CASE(
    "best sellers: an expired ranking is still answered while it is summed again off the call, and "
    "a new day's is summed by the call") {
  // Summing a month of a big shop's sales takes a call 10-20 ms: no call may wait for it once a
  // ranking of the day exists (docs/benchmarks.md, "Best sellers summed again off the call").
  constexpr int kTtlSeconds = 1;
  World w(false, "none", 0, kTtlSeconds);
  w.Catalog({{"kettle", "kitchen"}, {"mug", "kitchen"}});
  w.Buy("a", {"kettle"}, w.Now() - kDay);
  w.Buy("b", {"kettle"}, w.Now() - kDay);
  w.Buy("c", {"mug"}, w.Now() - kDay);
  auto first = [&w] {
    const auto top = CallOk(w.stub.get(), &Stub::BestSellers, BestSellers(1));
    REQUIRE(top.items_size() == 1);
    return top.items(0).item().sku();
  };
  CHECK(first() == "kettle");  // the day's first ranking, summed by this call
  for (const char* buyer : {"d", "e", "f"}) w.Buy(buyer, {"mug"}, w.Now() - kDay);
  // No call since the ranking was summed, so none can have started a refresh: the first call
  // after the ttl gets the ranking as summed, and starts one.
  absl::SleepFor(absl::Seconds(kTtlSeconds) + absl::Milliseconds(100));
  CHECK(first() == "kettle");
  CHECK(testing::WaitUntil([&] { return first() == "mug"; }, absl::Seconds(10)));
  // The clock moves to the next day: its first ranking is summed by the call, with every sale.
  for (const char* buyer : {"g", "h", "i", "j"}) w.Buy(buyer, {"kettle"}, w.Now() - kDay);
  w.reco.clock().Advance(kDay);
  CHECK(first() == "kettle");
}

TEST_CASE("the shop's basket total read once is not served stale after the next delivery") {
  // The total behind every rule's support and lift is cached once read (a scan of counter rows);
  // a committed basket anywhere in the shop must drop it.
  World w;
  SmallShop(w);
  CHECK(PhoneAndCase(w).support() == Approx(8.0 / 41));
  CHECK(PhoneAndCase(w).lift() == Approx(41.0 / 8));
  // A basket with neither: the pair is rarer in the shop, and the rule stronger than chance.
  w.Deliver({w.Delivered("pen-buyer", {"pen"}, w.Now() - kDay, "order-pen-alone")});
  CHECK(PhoneAndCase(w).support() == Approx(8.0 / 42));
  CHECK(PhoneAndCase(w).lift() == Approx(42.0 / 8));
}

TEST_CASE(
    "filters: never a returned, out-of-stock or already bought item, nor one shown too often") {
  World w;
  SmallShop(w);
  // The customer bought a kettle and sent it back, and bought a phone.
  w.Deliver({w.Delivered("li", {"kettle", "phone"}, w.Now() - 2 * kDay, "order-li-1")});
  v1::Event refund = w.NewEvent("li", w.Now() - kDay);
  refund.mutable_order_refunded()->set_order_id("order-li-1");
  auto* returned = refund.mutable_order_refunded()->add_items();
  returned->set_sku("kettle");
  returned->set_quantity(1);
  w.Deliver({refund});
  // Shown a lot (from other customers' kitchen baskets) it would otherwise be a candidate.
  w.Buy("k1", {"kettle", "teapot"}, w.Now() - 3 * kDay);
  w.Buy("k2", {"kettle", "teapot"}, w.Now() - 3 * kDay);

  auto recs = w.Recommend("li", v1::PLACEMENT_HOME, 50);
  CHECK_FALSE(Has(recs, "kettle"));  // returned
  CHECK_FALSE(Has(recs, "phone"));   // bought two days ago
  CHECK(Has(recs, "case"));
  // 200 days later discovery still leaves out the phone (an old purchase is for "buy again", not
  // for filling discovery slots), and the returned kettle never comes back.
  w.reco.clock().Advance(200 * kDay);
  w.Buy("late", {"phone", "case"}, w.Now() - kDay);  // keeps the phone selling in the window
  recs = w.Recommend("li", v1::PLACEMENT_HOME, 50);
  CHECK_FALSE(Has(recs, "kettle"));
  CHECK_FALSE(Has(recs, "phone"));

  // Out of stock: never recommended, anywhere.
  v1::SetStockRequest stock;
  auto* change = stock.add_changes();
  change->set_sku("case");
  change->set_in_stock(false);
  CallOk(w.stub.get(), &Stub::SetStock, stock);
  for (v1::Placement p : {v1::PLACEMENT_HOME, v1::PLACEMENT_PRODUCT_PAGE, v1::PLACEMENT_CART}) {
    CHECK_FALSE(Has(w.Recommend("li", p, 50, v1::MODEL_BLEND,
                                p == v1::PLACEMENT_HOME ? std::vector<std::string>{}
                                                        : std::vector<std::string>{"phone"}),
                    "case"));
  }

  // Shown five times this week without a click: rested until next week.
  auto first = w.Recommend("fresh", v1::PLACEMENT_HOME, 3);
  REQUIRE_FALSE(first.recommendations().empty());
  const std::string top = first.recommendations(0).item().sku();
  for (int i = 0; i < kImpressionCap; ++i) {
    v1::RecordFeedbackRequest fb = HomeFeedback("fresh", "impression-" + std::to_string(i));
    auto* shown = fb.add_impressions();
    shown->set_sku(top);
    shown->set_model(first.recommendations(0).model());
    CallOk(w.stub.get(), &Stub::RecordFeedback, fb);
  }
  CHECK_FALSE(Has(w.Recommend("fresh", v1::PLACEMENT_HOME, 10), top));
  w.reco.clock().Advance(8 * kDay);
  w.Buy("again", {top}, w.Now() - kDay);  // keep it a best seller in the window
  CHECK(Has(w.Recommend("fresh", v1::PLACEMENT_HOME, 10), top));
}

TEST_CASE(
    "occasion reminders before the date a customer bought in past years, upgrade notices at "
    "launch") {
  World w;  // the clock starts at 2026-01-01
  w.Catalog({{"doll", "toys"},
             {"kite", "toys"},
             {"robot", "toys"},
             {"tv-1", "tv"},
             {"socks", "clothes"},
             {"hat", "clothes"}});
  const absl::TimeZone utc = absl::UTCTimeZone();
  // A gift buyer: toys every October.
  w.Buy("aunt", {"doll"}, absl::FromCivil(absl::CivilDay(2024, 10, 14), utc));
  w.Buy("aunt", {"kite"}, absl::FromCivil(absl::CivilDay(2025, 10, 12), utc));
  w.Buy("aunt", {"socks"}, absl::FromCivil(absl::CivilDay(2026, 2, 1), utc));
  // An owner of the old TV.
  w.Buy("viewer", {"tv-1"}, absl::FromCivil(absl::CivilDay(2025, 11, 1), utc));

  // Late September: toys are selling, the aunt is reminded.
  w.reco.clock().Set(absl::FromCivil(absl::CivilDay(2026, 9, 28), utc));
  for (int i = 0; i < 5; ++i)
    w.Buy("parent" + std::to_string(i), {"robot", "hat"}, w.Now() - 3 * kDay);
  auto recs = w.Recommend("aunt", v1::PLACEMENT_HOME, 5, v1::MODEL_OCCASION);
  REQUIRE_FALSE(recs.recommendations().empty());
  CHECK(recs.recommendations(0).item().sku() == "robot");
  CHECK(recs.recommendations(0).model() == v1::MODEL_OCCASION);
  CHECK(recs.recommendations(0).reason().find("toys") != std::string::npos);
  CHECK(recs.recommendations(0).reason().find("12 October 2025") != std::string::npos);
  // And in the blend, ahead of plain best sellers.
  auto blend = w.Recommend("aunt", v1::PLACEMENT_HOME, 3);
  REQUIRE_FALSE(blend.recommendations().empty());
  CHECK(blend.recommendations(0).model() == v1::MODEL_OCCASION);
  // Nobody else is reminded: the TV was bought in November, more than 30 days ahead.
  CHECK(Skus(w.Recommend("viewer", v1::PLACEMENT_HOME, 5, v1::MODEL_OCCASION)).empty());

  // The successor launches: its predecessor's buyers hear about it; others do not.
  CHECK(Skus(w.Recommend("viewer", v1::PLACEMENT_HOME, 5, v1::MODEL_UPGRADE)).empty());
  LaunchTv2(w);
  auto upgrade = w.Recommend("viewer", v1::PLACEMENT_HOME, 5);
  REQUIRE_FALSE(upgrade.recommendations().empty());
  CHECK(upgrade.recommendations(0).item().sku() == "tv-2");
  CHECK(upgrade.recommendations(0).model() == v1::MODEL_UPGRADE);
  CHECK(upgrade.recommendations(0).reason() == "a newer model of Item tv-1, which you bought");
  CHECK_FALSE(Has(w.Recommend("aunt", v1::PLACEMENT_HOME, 10, v1::MODEL_UPGRADE), "tv-2"));
  // It survives a restart (which item has a successor is reloaded from the store).
  w.reco.Restart();
  w.stub = v1::RecommendationService::NewStub(w.reco.channel());
  w.reco.clock().Set(absl::FromCivil(absl::CivilDay(2026, 9, 28), utc));
  CHECK(Has(w.Recommend("viewer", v1::PLACEMENT_HOME, 5, v1::MODEL_UPGRADE), "tv-2"));
}

TEST_CASE("category affinity from browsing: what the customer looked at closely") {
  World w;
  SmallShop(w);
  v1::Event browse = w.NewEvent("browser", w.Now() - kDay);
  browse.set_producer("customer-profile");
  for (const char* sku : {"kettle", "teapot"}) {
    auto* s = browse.mutable_behavior_recorded()->add_signals();
    s->set_type("item_view");
    s->set_category("kitchen");
    s->set_sku(sku);
    s->set_dwell_seconds(90);
    api::SetTimestamp(w.Now() - kDay, s->mutable_occur_time());
  }
  auto* click = browse.mutable_behavior_recorded()->add_signals();
  click->set_type("category_click");
  click->set_category("kitchen");
  w.Deliver({browse});
  auto recs = w.Recommend("browser", v1::PLACEMENT_HOME, 5, v1::MODEL_CATEGORY_AFFINITY);
  REQUIRE_FALSE(recs.recommendations().empty());
  CHECK(recs.recommendations(0).item().sku() == "mug");  // the kitchen's best seller
  CHECK(recs.recommendations(0).reason() == "popular in kitchen, which you looked at closely");
  // Only browsing so far, so the blend is still cold start, led by the category looked at.
  auto blend = w.Recommend("browser", v1::PLACEMENT_HOME, 3);
  REQUIRE_FALSE(blend.recommendations().empty());
  CHECK(blend.recommendations(0).item().category() == "kitchen");
}

TEST_CASE(
    "e-mail and push respect consent and the contact cap from customer-profile, once per request "
    "id") {
  World w;
  SmallShop(w);
  const std::string id = w.Customer("wang.fang@example.com");
  w.Buy(id, {"phone"}, w.Now() - kDay);

  // Three items for a marketing message on `placement`, sent under `request_id`.
  auto message = [&](v1::Placement placement, const std::string& request_id) {
    auto req = testing::ForCustomer<v1::RecommendRequest>(id);
    req.set_placement(placement);
    req.set_count(3);
    req.set_request_id(request_id);
    return req;
  };
  auto email = [&](const std::string& request_id) {
    return CallOk(w.stub.get(), &Stub::Recommend, message(v1::PLACEMENT_EMAIL, request_id));
  };
  // No consent yet: nothing to send, and it says why.
  auto none = email("mail-1");
  CHECK(none.recommendations().empty());
  CHECK(none.withheld_reason() == "no consent to e-mail marketing");

  auto consent = testing::ForCustomer<v1::SetMarketingConsentRequest>(id);
  consent.set_channel(v1::CHANNEL_EMAIL);
  consent.set_granted(true);
  consent.set_source("settings page");
  CallOk(w.profiles.get(), &v1::CustomerProfileService::Stub::SetMarketingConsent, consent);
  // A retry of the refused request keeps its first answer.
  CHECK(email("mail-1").withheld_reason() == "no consent to e-mail marketing");

  // The default cap is 3 contacts a week; a retried request counts once.
  auto sent = email("mail-2");
  REQUIRE_FALSE(sent.recommendations().empty());
  CHECK(sent.withheld_reason().empty());
  CHECK(sent.recommendations(0).item().sku() == "case");
  auto retried = email("mail-2");
  CHECK(Skus(retried) == Skus(sent));
  REQUIRE_FALSE(email("mail-3").recommendations().empty());
  REQUIRE_FALSE(email("mail-4").recommendations().empty());
  auto capped = email("mail-5");
  CHECK(capped.recommendations().empty());
  CHECK(capped.withheld_reason().rfind("contact cap reached until ", 0) == 0);

  // Push needs its own consent; the home page needs none.
  CHECK(CallOk(w.stub.get(), &Stub::Recommend, message(v1::PLACEMENT_PUSH, "push-1"))
            .withheld_reason() == "no consent to push marketing");
  CHECK_FALSE(w.Recommend(id).recommendations().empty());
  // E-mail without a request id, or to a customer profile does not know, is refused.
  v1::RecommendRequest refused = message(v1::PLACEMENT_EMAIL, "");
  RequireError(StatusOf(w.stub.get(), &Stub::Recommend, refused),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  refused.set_request_id("x");
  refused.set_customer_id("crowd1");
  RequireError(StatusOf(w.stub.get(), &Stub::Recommend, refused), grpc::StatusCode::NOT_FOUND,
               "customer_id");
}

TEST_CASE("erasure takes the customer's contribution back out exactly") {
  World w;
  SmallShop(w);
  auto snapshot = [&] {
    std::vector<std::string> facts;
    for (const char* sku : {"phone", "case", "charger", "pen", "mug", "kettle"}) {
      const v1::RelatedItemsResponse rel = w.Related(sku, 10);
      for (const auto& i : rel.items()) {
        facts.push_back(absl::StrCat(sku, ">", i.item().sku(), ":", i.co_purchases(), "/",
                                     i.co_views(), "/", i.similarity()));
      }
      auto b = AboutSku<v1::BoughtTogetherRequest>(sku, 10);
      b.set_min_baskets(1);
      const v1::BoughtTogetherResponse bt = CallOk(w.stub.get(), &Stub::BoughtTogether, b);
      for (const auto& rule : bt.rules())
        facts.push_back(absl::StrCat(sku, "+", rule.item().sku(), ":", rule.support()));
    }
    const v1::BestSellersResponse top = CallOk(w.stub.get(), &Stub::BestSellers, BestSellers(10));
    for (const auto& i : top.items())
      facts.push_back(absl::StrCat("best:", i.item().sku(), ":", i.units()));
    return facts;
  };
  const auto before = snapshot();

  // A customer buys, returns, browses...
  w.Deliver({w.Delivered("zhao", {"phone", "mug", "kettle"}, w.Now() - 3 * kDay, "z1"),
             w.Delivered("zhao", {"pen", "case"}, w.Now() - 2 * kDay, "z2")});
  v1::Event refund = w.NewEvent("zhao", w.Now() - kDay);
  refund.mutable_order_refunded()->set_order_id("z1");
  auto* returned = refund.mutable_order_refunded()->add_items();
  returned->set_sku("mug");
  returned->set_quantity(1);
  v1::Event browse = w.NewEvent("zhao", w.Now() - kDay);
  for (const char* sku : {"kettle", "charger", "teapot", "kettle"}) {
    auto* s = browse.mutable_behavior_recorded()->add_signals();
    s->set_type("item_view");
    s->set_category("kitchen");
    s->set_sku(sku);
    s->set_dwell_seconds(40);
  }
  w.Deliver({refund, browse});
  REQUIRE(snapshot() != before);
  REQUIRE_FALSE(w.Recommend("zhao").recommendations().empty());

  // ...and asks to be forgotten.
  v1::Event erased = w.NewEvent("zhao", w.Now());
  erased.set_producer("customer-profile");
  api::SetTimestamp(w.Now(), erased.mutable_customer_erased()->mutable_erase_time());
  w.Deliver({erased});
  CHECK(snapshot() == before);
  // Nothing about them is left: they are a stranger again (cold start).
  auto recs = w.Recommend("zhao");
  REQUIRE_FALSE(recs.recommendations().empty());
  CHECK(recs.recommendations(0).model() == v1::MODEL_COLD_START);
  bool any = false;
  for (const auto& cf : w.reco.store().column_family_names()) {
    if (cf == "consumed_events" || cf == "default") continue;
    (void)w.reco.store().ScanPrefix(w.reco.store().cf(cf), store::Key().Str("zhao").Build(),
                                    [&](absl::string_view, absl::string_view) {
                                      any = true;
                                      return false;
                                    });
  }
  CHECK_FALSE(any);
  // A redelivered erasure changes nothing.
  w.Deliver({erased});
  CHECK(snapshot() == before);
}

// Every customer in the buyers family (an item's buyers, newest purchase first), as keyed.
std::set<std::string> IndexedBuyers(World& w) {
  std::set<std::string> customers;
  store::Store& s = w.reco.store();
  REQUIRE(s.ScanPrefix(s.cf("buyers"), "", [&](absl::string_view k, absl::string_view) {
             store::KeyReader key(k);
             const auto sku = key.Str();
             if (sku && !sku->empty() && key.TimeNewestFirst()) customers.insert(*key.Str());
             return true;
           }).ok());
  return customers;
}

TEST_CASE(
    "customers alike: what the customers whose purchases are most like yours bought, on the home "
    "page, not on product pages or carts, with returns, erasure and purchases after the clock left "
    "out") {
  World w;
  w.Catalog({{"a", "c1"},
             {"b", "c1"},
             {"c", "c1"},
             {"d", "c2"},
             {"e", "c2"},
             {"x", "c3"},
             {"y", "c3"},
             {"w", "c3"},
             {"late", "c2"}});
  const absl::Time t = w.Now() - 5 * kDay;
  w.Buy("alice", {"a", "b", "c"}, t);
  w.Buy("bob", {"a", "b"}, t);
  w.Buy("bob", {"c", "d"}, t + kDay);                      // alike: shares all three
  w.Buy("carol", {"x", "y", "w"}, t);                      // shares nothing with alice
  w.Buy("dan", {"a", "e"}, t);                             // shares one item
  w.Buy("erin", {"a", "b", "c", "late"}, w.Now() + kDay);  // after the clock: not yet
  auto alike = [&](const std::string& customer, v1::Placement placement = v1::PLACEMENT_HOME) {
    // A product page or a cart names its items.
    return w.Recommend(customer, placement, 10, v1::MODEL_SIMILAR_CUSTOMERS,
                       placement == v1::PLACEMENT_HOME ? std::vector<std::string>{}
                                                       : std::vector<std::string>{"a"});
  };
  const v1::RecommendResponse home = alike("alice");
  REQUIRE(Skus(home) == std::vector<std::string>{"d", "e"});  // bob is more alike than dan
  CHECK(home.recommendations(0).model() == v1::MODEL_SIMILAR_CUSTOMERS);
  CHECK(home.recommendations(0).reason() == "customers who shop like you bought this lately");
  // A product page or a cart is about its items, not the customer.
  CHECK(alike("alice", v1::PLACEMENT_PRODUCT_PAGE).recommendations().empty());
  CHECK(alike("alice", v1::PLACEMENT_CART).recommendations().empty());
  CHECK(Has(w.Recommend("alice"), "d"));  // and the blend has it

  // Sent back: bob is no longer a buyer of d.
  v1::Event refund = w.NewEvent("bob", w.Now());
  refund.mutable_order_refunded()->set_order_id("o3");
  auto* returned = refund.mutable_order_refunded()->add_items();
  returned->set_sku("d");
  returned->set_quantity(1);
  w.Deliver({refund});
  CHECK(Skus(alike("alice")) == std::vector<std::string>{"e"});

  // Erased: dan is nobody's neighbour, and no item lists him as a buyer.
  REQUIRE(IndexedBuyers(w).count("dan") == 1);
  v1::Event erased = w.NewEvent("dan", w.Now());
  erased.set_producer("customer-profile");
  api::SetTimestamp(w.Now(), erased.mutable_customer_erased()->mutable_erase_time());
  w.Deliver({erased});
  CHECK(IndexedBuyers(w).count("dan") == 0);
  CHECK(alike("alice").recommendations().empty());

  // Once the clock passes erin's purchase, she is the one alike.
  w.reco.clock().Advance(2 * kDay);
  CHECK(Skus(alike("alice")) == std::vector<std::string>{"late"});
}

// The smallest shop with a customer alike: `customer` bought a and b five days ago, bob bought a, b
// and d, so customers alike offers `customer` d.
void BobAlikeTo(World& w, const std::string& customer) {
  w.Catalog({{"a", "c1"}, {"b", "c1"}, {"d", "c2"}});
  const absl::Time t = w.Now() - 5 * kDay;
  w.Buy(customer, {"a", "b"}, t);
  w.Buy("bob", {"a", "b", "d"}, t);
}

// Issue 19: item-kNN caught the staples of a family the customer already buys from (lunch bags
// in other prints) that co-purchase lists missed.
TEST_CASE(
    "items named alike: the other bought members of a family the customer buys from on the home "
    "page, of the item's family on its product page, none in carts, kept across a rename and a "
    "restart") {
  World w;
  v1::UpsertCatalogItemsRequest catalog;
  for (const auto& [sku, name] : std::vector<std::pair<std::string, std::string>>{
           {"bag-red", "LUNCH BAG RED RETROSPOT"},
           {"bag-skull", "LUNCH BAG BLACK SKULL"},
           {"bag-cars", "LUNCH BAG CARS BLUE"},
           {"bag-unsold", "LUNCH BAG DOLLY GIRL"},
           {"cases", "PACK OF 72 RETROSPOT CAKE CASES"},
           {"stand", "REGENCY CAKESTAND 3 TIER"},
           {"pencils", "PENCILS SMALL TUBE"},
           {"lantern", "WHITE METAL LANTERN"},
           // The print is on many things nobody here bought: it ties the family less than
           // "LUNCH BAG" does.
           {"mug", "RETROSPOT MUG"},
           {"towel", "RETROSPOT TEA TOWEL"},
           {"apron", "RETROSPOT APRON"}}) {
    auto* item = catalog.add_items();
    item->set_sku(sku);
    item->set_name(name);
  }
  CallOk(w.stub.get(), &Stub::UpsertCatalogItems, catalog);
  const absl::Time t = w.Now() - 5 * kDay;
  // The skull bag is the staple: bought by four; the cars bag by one; the dolly girl bag by none.
  for (int i = 0; i < 4; ++i) w.Buy(absl::StrCat("regular", i), {"bag-skull", "lantern"}, t);
  w.Buy("once", {"bag-cars"}, t);
  w.Buy("baker", {"cases", "stand", "pencils"}, t);
  w.Buy("alice", {"bag-red"}, t + kDay);
  auto named_like = [&](v1::Placement placement = v1::PLACEMENT_HOME) {
    return w.Recommend("alice", placement, 10, v1::MODEL_SIMILAR_ITEMS,
                       placement == v1::PLACEMENT_HOME ? std::vector<std::string>{}
                                                       : std::vector<std::string>{"bag-red"});
  };
  const v1::RecommendResponse home = named_like();
  // Bought by many first; never bought, never; the cake cases share only the print.
  REQUIRE(Skus(home) == std::vector<std::string>{"bag-skull", "bag-cars", "cases"});
  CHECK(home.recommendations(0).model() == v1::MODEL_SIMILAR_ITEMS);
  CHECK(home.recommendations(0).reason() == "named like LUNCH BAG RED RETROSPOT, which you bought");
  // A product page's seed is the item on it, whoever looks: a newcomer on the cars bag's page gets
  // its bought family members, the staple first.
  const v1::RecommendResponse page = named_like(v1::PLACEMENT_PRODUCT_PAGE);
  CHECK(Skus(page) == std::vector<std::string>{"bag-skull", "bag-cars", "cases"});
  CHECK(page.recommendations(0).reason() == "named like LUNCH BAG RED RETROSPOT");
  const std::vector<std::string> newcomer = Skus(w.Recommend(
      "newcomer", v1::PLACEMENT_PRODUCT_PAGE, 10, v1::MODEL_SIMILAR_ITEMS, {"bag-cars"}));
  REQUIRE_FALSE(newcomer.empty());
  CHECK(newcomer.front() == "bag-skull");
  CHECK(std::find(newcomer.begin(), newcomer.end(), "bag-unsold") == newcomer.end());
  CHECK(std::find(newcomer.begin(), newcomer.end(), "bag-cars") == newcomer.end());
  CHECK(named_like(v1::PLACEMENT_CART).recommendations().empty());
  CHECK(Has(w.Recommend("alice"), "bag-skull"));  // and the blend has it

  // Renamed into the family, the pencils join it; the next call sees it.
  v1::UpsertCatalogItemsRequest rename;
  rename.add_items()->set_sku("pencils");
  rename.mutable_items(0)->set_name("LUNCH BAG PENCILS");
  CallOk(w.stub.get(), &Stub::UpsertCatalogItems, rename);
  const std::vector<std::string> renamed = Skus(named_like());
  CHECK(std::find(renamed.begin(), renamed.end(), "pencils") != renamed.end());

  // The index is rebuilt from the catalog at start: the same answer after a restart.
  w.reco.Restart();
  w.stub = v1::RecommendationService::NewStub(w.reco.channel());
  CHECK(Skus(named_like()) == renamed);
}

// Item `i` of a shop whose item numbers are three digits wide.
std::string ItemNumbered(int i) { return absl::StrFormat("item-%03d", i); }

// `buyers` customers bought the seed in one instant, each with an item of their own; their ids sort
// the other way round from their items. Alice bought the seed a day later. Returns her home list
// from customers alike.
std::vector<std::string> AliceAmongBuyersOfOneInstant(int buyers) {
  World w;
  std::vector<std::tuple<std::string, std::string>> catalog = {{"seed", "c1"}};
  for (int i = 0; i < buyers; ++i) catalog.emplace_back(ItemNumbered(i), "c2");
  w.Catalog(catalog);
  const absl::Time t = w.Now() - 5 * kDay;
  for (int i = 0; i < buyers; ++i) {
    w.Buy(absl::StrFormat("z%03d", buyers - 1 - i), {"seed", ItemNumbered(i)}, t);
  }
  w.Buy("alice", {"seed"}, t + kDay);
  return Skus(w.Recommend("alice", v1::PLACEMENT_HOME, 10, v1::MODEL_SIMILAR_CUSTOMERS));
}

std::vector<std::string> ItemsNumbered(int from, int to) {
  std::vector<std::string> items;
  for (int i = from; i < to; ++i) items.push_back(ItemNumbered(i));
  return items;
}

// Imported histories share minutes, and customer ids are minted at random: who is read among an
// item's buyers, and who is kept among the customers alike, must not depend on the ids.
TEST_CASE(
    "customers alike: buyers of the same instant are read and kept together, whatever their ids") {
  // Sixty buyers: the 50 first ids hold items 10 to 59. All sixty are read and kept, equally alike
  // and equally late, so their items score the same and the list is the first ten by SKU.
  CHECK(AliceAmongBuyersOfOneInstant(60) == ItemsNumbered(0, 10));
}

TEST_CASE(
    "customers alike: at most four times the buyers a seed reads when more share an instant") {
  // A history with dates only: 250 buyers of one instant. 200 buyers are read: alice herself (the
  // latest), then 199 of them, the first by id, which hold items 51 to 249.
  CHECK(AliceAmongBuyersOfOneInstant(250) == ItemsNumbered(51, 61));
}

TEST_CASE("customers alike in a marketing e-mail and a push, with the customer's consent") {
  World w;
  const std::string id = w.Customer("li.na@example.com");
  BobAlikeTo(w, id);
  for (const v1::Channel channel : {v1::CHANNEL_EMAIL, v1::CHANNEL_PUSH}) {
    auto consent = testing::ForCustomer<v1::SetMarketingConsentRequest>(id);
    consent.set_channel(channel);
    consent.set_granted(true);
    consent.set_source("settings page");
    CallOk(w.profiles.get(), &v1::CustomerProfileService::Stub::SetMarketingConsent, consent);
  }
  for (const v1::Placement placement : {v1::PLACEMENT_EMAIL, v1::PLACEMENT_PUSH}) {
    auto req = testing::ForCustomer<v1::RecommendRequest>(id);
    req.set_placement(placement);
    req.set_count(3);
    req.set_model(v1::MODEL_SIMILAR_CUSTOMERS);
    req.set_request_id(absl::StrCat("alike-", v1::Placement_Name(placement)));
    const v1::RecommendResponse sent = CallOk(w.stub.get(), &Stub::Recommend, req);
    INFO(v1::Placement_Name(placement));
    CHECK(sent.withheld_reason().empty());
    CHECK(Skus(sent) == std::vector<std::string>{"d"});
  }
}

TEST_CASE(
    "items named alike: the memory its index holds outside the budget is exported, per catalog "
    "item") {
  World w;
  for (int batch = 0; batch < 2; ++batch) {
    v1::UpsertCatalogItemsRequest catalog;  // at most 1000 a call
    for (int i = 1000 * batch; i < 1000 * (batch + 1); ++i) {
      auto* item = catalog.add_items();
      item->set_sku(absl::StrCat("sku-", i));
      item->set_name(absl::StrCat("LUNCH BAG ", i % 2 ? "RED RETROSPOT " : "BLACK SKULL ", i));
    }
    CallOk(w.stub.get(), &Stub::UpsertCatalogItems, catalog);
  }
  // Set at start (the index is loaded then) and every 15 s after.
  w.reco.Restart();
  const auto held = [&] {
    return testing::MetricValue(w.reco.metrics().registry(), "crm_memory_outside_budget_bytes",
                                {{"part", "catalog_names"}});
  };
  REQUIRE(testing::WaitUntil([&] { return held() > 0; }, absl::Seconds(10)));
  INFO(held() << " bytes for 2000 items");
  CHECK(held() > 2000 * 50);
  CHECK(held() < 2000 * 1000);
}

TEST_CASE("items named alike off (--items_named_alike=false): no such recommendations") {
  absl::FlagSaver restore_flags;
  absl::SetFlag(&FLAGS_items_named_alike, false);
  World w;
  v1::UpsertCatalogItemsRequest catalog;
  for (const char* sku : {"bag-red", "bag-skull"}) {
    auto* item = catalog.add_items();
    item->set_sku(sku);
    item->set_name(std::string("LUNCH BAG ") + sku);
  }
  CallOk(w.stub.get(), &Stub::UpsertCatalogItems, catalog);
  w.Buy("regular", {"bag-skull"}, w.Now() - kDay);
  w.Buy("alice", {"bag-red"}, w.Now() - kDay);
  CHECK(w.Recommend("alice", v1::PLACEMENT_HOME, 10, v1::MODEL_SIMILAR_ITEMS)
            .recommendations()
            .empty());
}

TEST_CASE("customers alike off (--customers_alike=false): no such recommendations, index kept") {
  absl::FlagSaver restore_flags;
  absl::SetFlag(&FLAGS_customers_alike, false);
  World w;
  BobAlikeTo(w, "alice");
  CHECK(w.Recommend("alice", v1::PLACEMENT_HOME, 10, v1::MODEL_SIMILAR_CUSTOMERS)
            .recommendations()
            .empty());
  // The buyers are still listed, so turning it on later needs no rebuild.
  CHECK(IndexedBuyers(w) == std::set<std::string>{"alice", "bob"});
}

TEST_CASE(
    "customers alike: a store written before the buyers family existed gets it built from its "
    "customers' items at the next start") {
  World w;
  BobAlikeTo(w, "alice");
  auto alike = [&] {
    return Skus(w.Recommend("alice", v1::PLACEMENT_HOME, 10, v1::MODEL_SIMILAR_CUSTOMERS));
  };
  REQUIRE(alike() == std::vector<std::string>{"d"});
  // What an older binary's store looks like: the family empty, not marked built.
  store::Store& s = w.reco.store();
  rocksdb::WriteBatch wipe;
  REQUIRE(s.ScanPrefix(s.cf("buyers"), "", [&](absl::string_view k, absl::string_view) {
             return wipe.Delete(s.cf("buyers"), rocksdb::Slice(k.data(), k.size())).ok();
           }).ok());
  REQUIRE(s.Write(&wipe, store::Durability::kSynced).ok());
  REQUIRE(IndexedBuyers(w).empty());
  CHECK(alike().empty());

  auto restart = [&] {
    w.reco.Restart();
    w.stub = v1::RecommendationService::NewStub(w.reco.channel());
  };
  restart();
  CHECK(IndexedBuyers(w) == std::set<std::string>{"alice", "bob"});
  CHECK(alike() == std::vector<std::string>{"d"});
  // Built once: a later start finds it complete and writes nothing (bob's rows, removed by hand
  // now, stay away).
  store::Store& reopened = w.reco.store();
  rocksdb::WriteBatch bob;
  REQUIRE(reopened
              .ScanPrefix(reopened.cf("buyers"), "",
                          [&](absl::string_view k, absl::string_view) {
                            if (absl::StrContains(k, "bob")) {
                              bob.Delete(reopened.cf("buyers"), rocksdb::Slice(k.data(), k.size()));
                            }
                            return true;
                          })
              .ok());
  REQUIRE(reopened.Write(&bob, store::Durability::kSynced).ok());
  restart();
  CHECK(IndexedBuyers(w) == std::set<std::string>{"alice"});
}

// The items `sku` is bought together with in at least one basket, comma-separated.
std::string BundlesOf(World& w, const std::string& sku) {
  auto req = AboutSku<v1::BoughtTogetherRequest>(sku, 50);
  req.set_min_baskets(1);
  const v1::BoughtTogetherResponse resp = CallOk(w.stub.get(), &Stub::BoughtTogether, req);
  std::vector<std::string> skus;
  for (const auto& rule : resp.rules()) skus.push_back(rule.item().sku());
  return absl::StrJoin(skus, ",");
}

TEST_CASE(
    "a first purchase in a wholesale basket makes a buyer but pairs with nothing bought before, "
    "and "
    "erasure takes it back exactly") {
  World w;
  // A retailer buys a desk, then kWholesaleBasketLines items in one order: each is paired with the
  // desk ("bought the desk, also bought this"). A reseller buys a lamp, then restocks one item more
  // than that in one order: none of the range is paired with the lamp.
  std::vector<std::tuple<std::string, std::string>> catalog = {
      {"desk", "office"}, {"lamp", "home"}, {"shade", "home"}};
  std::vector<std::string> order_of_retailer, restock;
  for (int i = 0; i <= kWholesaleBasketLines; ++i) {
    if (i < kWholesaleBasketLines) {
      order_of_retailer.push_back(absl::StrFormat("stationery-%02d", i));
      catalog.emplace_back(order_of_retailer.back(), "office");
    }
    restock.push_back(absl::StrFormat("range-%02d", i));
    catalog.emplace_back(restock.back(), "home");
  }
  w.Catalog(catalog);
  auto related = [&](const std::string& sku) {
    std::map<std::string, double> similarity;
    const v1::RelatedItemsResponse resp = w.Related(sku, 50);
    for (const auto& i : resp.items()) similarity[i.item().sku()] = i.similarity();
    return similarity;
  };
  // What every item is related to and bought together with.
  auto snapshot = [&] {
    std::vector<std::string> facts;
    for (const auto& [sku, category] : catalog) {
      const v1::RelatedItemsResponse rel = w.Related(sku, 50);
      for (const auto& i : rel.items()) {
        facts.push_back(
            absl::StrCat(sku, ">", i.item().sku(), ":", i.co_purchases(), "/", i.similarity()));
      }
      facts.push_back(absl::StrCat(sku, "+", BundlesOf(w, sku)));
    }
    return facts;
  };
  w.Deliver({w.Delivered("retailer", {"desk"}, w.Now() - 3 * kDay),
             w.Delivered("retailer", order_of_retailer, w.Now() - 2 * kDay)});
  CHECK(related("desk").count("stationery-00") == 1);
  // A shopper pairs the lamp with one item of the range, so an erasure that took back more than
  // the reseller added would show.
  w.Deliver({w.Delivered("shopper", {"lamp"}, w.Now() - 3 * kDay),
             w.Delivered("shopper", {"range-00"}, w.Now() - 2 * kDay)});
  const double lamp_range_alone = related("lamp")["range-00"];
  REQUIRE(lamp_range_alone > 0);
  const auto before = snapshot();

  w.Deliver({w.Delivered("reseller", {"lamp"}, w.Now() - 3 * kDay),
             w.Delivered("reseller", restock, w.Now() - 2 * kDay)});
  const auto lamp = related("lamp");
  CHECK(lamp.size() == 1);  // the shopper's pair only
  // The reseller is a buyer of both, so the shopper's one shared buyer weighs less.
  CHECK(lamp.count("range-00") == 1);
  CHECK(related("lamp")["range-00"] < lamp_range_alone);
  for (size_t i = 1; i < restock.size(); ++i) CHECK(related(restock[i]).count("lamp") == 0);
  // The reseller's next first purchase, in an order of its own, pairs with the items first bought
  // just before it (the end of the restock), as any first purchase does.
  w.Deliver({w.Delivered("reseller", {"shade"}, w.Now() - kDay)});
  const auto shade = related("shade");
  CHECK(shade.size() == static_cast<size_t>(kMaxPurchasesPaired));
  CHECK(shade.count(restock.back()) == 1);
  CHECK(shade.count("lamp") == 0);
  // The restock's items still go together as a basket (bought together).
  int restock_bundles = 0;
  for (const auto& sku : restock) restock_bundles += BundlesOf(w, sku).empty() ? 0 : 1;
  CHECK(restock_bundles >= kMaxItemsPaired);
  REQUIRE(snapshot() != before);

  v1::Event erased = w.NewEvent("reseller", w.Now());
  erased.set_producer("customer-profile");
  api::SetTimestamp(w.Now(), erased.mutable_customer_erased()->mutable_erase_time());
  w.Deliver({erased});
  CHECK(snapshot() == before);
}

// A hub item whose list, kept batch by batch, goes stale: 40 items bought with it fill its list
// (kMaxNeighbours), one basket a batch; 5 more, just as similar when they come, do not displace
// anyone; then p1-p5 sell on their own, which makes them less specific to the hub than q1-q5, but
// the hub's pairs did not change, so its list is not looked at again. Returns the list the counts
// give: p6-p40 and q1-q5.
std::set<std::string> HubWithStaleList(World& w) {
  std::vector<std::tuple<std::string, std::string>> catalog = {{"hub", "home"}};
  for (int i = 1; i <= 40; ++i) catalog.emplace_back(absl::StrCat("p", i), "home");
  for (int i = 1; i <= 5; ++i) catalog.emplace_back(absl::StrCat("q", i), "home");
  w.Catalog(catalog);
  const absl::Time t = w.Now() - absl::Hours(24);
  for (int i = 1; i <= 40; ++i) w.Buy(absl::StrCat("c", i), {"hub", absl::StrCat("p", i)}, t);
  for (int i = 1; i <= 5; ++i) w.Buy(absl::StrCat("d", i), {"hub", absl::StrCat("q", i)}, t);
  for (int i = 1; i <= 5; ++i) {
    for (int k = 0; k < 10; ++k) w.Buy(absl::StrCat("e", i, "-", k), {absl::StrCat("p", i)}, t);
  }
  std::set<std::string> best;
  for (int i = 6; i <= 40; ++i) best.insert(absl::StrCat("p", i));
  for (int i = 1; i <= 5; ++i) best.insert(absl::StrCat("q", i));
  return best;
}

std::set<std::string> RelatedSkus(World& w, const std::string& sku) {
  const v1::RelatedItemsResponse resp = w.Related(sku, 50);
  std::set<std::string> skus;
  for (const auto& r : resp.items()) skus.insert(r.item().sku());
  return skus;
}

TEST_CASE(
    "neighbour lists: a requested rebuild keeps the best candidates by the counts learned, "
    "whatever order they were learned in, and only admins may ask for it") {
  absl::FlagSaver restore_flags;
  absl::SetFlag(&FLAGS_neighbour_rebuilds, false);  // the lists stay as learned until asked
  World w;
  const std::set<std::string> best = HubWithStaleList(w);
  const std::set<std::string> before = RelatedSkus(w, "hub");
  CHECK(before.size() == 40);
  CHECK(before.count("p1") == 1);
  CHECK(before.count("q1") == 0);

  v1::RebuildItemNeighboursRequest rebuild;
  const auto rebuilt = CallOk(w.stub.get(), &Stub::RebuildItemNeighbours, rebuild);
  CHECK(rebuilt.items() == 46);  // the hub and its 45 partners
  CHECK(rebuilt.pairs() == 45);
  CHECK(RelatedSkus(w, "hub") == best);
  // Again: the same lists.
  CHECK(CallOk(w.stub.get(), &Stub::RebuildItemNeighbours, rebuild).items() == 46);
  CHECK(RelatedSkus(w, "hub") == best);
  // Learning goes on batch by batch after a rebuild.
  const absl::Time t = w.Now() - absl::Hours(24);
  w.Buy("f1", {"hub", "p1"}, t);
  w.Buy("f2", {"hub", "p1"}, t);
  CHECK(RelatedSkus(w, "hub").count("p1") == 1);
  CHECK(testing::MetricValue(w.reco.metrics().registry(),
                             "crm_recommendation_neighbour_rebuilds_total",
                             {{"trigger", "request"}}) == 2);

  for (const v1::Role role : {v1::ROLE_CUSTOMER, v1::ROLE_AGENT, v1::ROLE_SERVICE}) {
    auto other =
        v1::RecommendationService::NewStub(w.reco.ChannelAs(testing::ViaGateway(role, "someone")));
    CHECK(StatusOf(other.get(), &Stub::RebuildItemNeighbours, rebuild).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
  }
  auto admin = v1::RecommendationService::NewStub(
      w.reco.ChannelAs(testing::ViaGateway(v1::ROLE_ADMIN, "ops-1")));
  CHECK(StatusOf(admin.get(), &Stub::RebuildItemNeighbours, rebuild).ok());
}

TEST_CASE(
    "neighbour lists: rebuilt by themselves once enough item pairs changed and learning went "
    "quiet, with no one asking") {
  World w;  // --neighbour_rebuilds on, as shipped
  const std::set<std::string> best = HubWithStaleList(w);
  // A store this small rebuilds 2 s after the last change (a large one once a tenth of its pairs
  // changed). With the flag off the list keeps p1-p5 (the case above).
  const auto rebuilds = [&] {
    return testing::MetricValue(w.reco.metrics().registry(),
                                "crm_recommendation_neighbour_rebuilds_total",
                                {{"trigger", "changes"}});
  };
  REQUIRE(testing::WaitUntil(
      [&] { return rebuilds() >= 1 && !w.reco.component().service().neighbour_rebuild_pending(); },
      absl::Seconds(30)));
  CHECK(RelatedSkus(w, "hub") == best);
  // Quiet and nothing new: no further rebuild.
  const double settled = rebuilds();
  absl::SleepFor(absl::Seconds(3));
  CHECK(rebuilds() == settled);
  CHECK(testing::MetricValue(w.reco.metrics().registry(),
                             "crm_recommendation_neighbour_rebuilds_total",
                             {{"trigger", "request"}}) == 0);
}

TEST_CASE(
    "neighbour lists: a few pair changes in a large store are rebuilt once learning has been idle "
    "for a minute, not before") {
  World w;
  // 40 customers each buy 40 of 400 items: tens of thousands of pairs, past the small store's
  // every-change rule, so a tenth of them is thousands.
  std::vector<std::tuple<std::string, std::string>> catalog;
  for (int i = 0; i < 400; ++i) catalog.emplace_back(ItemNumbered(i), "home");
  w.Catalog(catalog);
  const absl::Time t = w.Now() - absl::Hours(24);
  for (int c = 0; c < 40; ++c) {
    std::vector<std::string> basket;
    for (int k = 0; k < 40; ++k) basket.push_back(ItemNumbered((c * 7 + k * 13) % 400));
    w.Buy(absl::StrCat("c", c), basket, t);
  }
  const auto rebuilds = [&] {
    return testing::MetricValue(w.reco.metrics().registry(),
                                "crm_recommendation_neighbour_rebuilds_total",
                                {{"trigger", "changes"}});
  };
  const auto pending = [&] { return w.reco.component().service().neighbour_rebuild_pending(); };
  REQUIRE(testing::WaitUntil([&] { return rebuilds() == 1 && !pending(); }, absl::Seconds(30)));
  // One new pair: far short of a tenth, so not rebuilt when learning goes quiet...
  w.Buy("late", {ItemNumbered(0), ItemNumbered(1)}, t);
  CHECK(pending());
  absl::SleepFor(absl::Seconds(5));
  CHECK(rebuilds() == 1);
  // ...but once it has been idle for a minute, so the lists hold every change.
  CHECK(testing::WaitUntil([&] { return rebuilds() == 2 && !pending(); }, absl::Seconds(120)));
}

// Free bytes on the volume holding `path`, as the store's disk reserve counts them.
int64_t FreeBytesAt(const std::string& path) {
  struct statvfs fs {};
  if (statvfs(path.c_str(), &fs) != 0) return -1;
  return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
}

constexpr int64_t kGiB = int64_t{1} << 30;

// A full disk for a store on the temporary volume, without filling it: the store's disk reserve is
// set 1 GiB under what the volume has free, and Fill() allocates a 3 GiB file beside it, taking the
// volume 2 GiB under the reserve; Free() removes the file. The margins absorb what other tests
// write meanwhile. usable() is false (the case is skipped) when the volume has under 5 GiB free.
class FullDisk {
 public:
  FullDisk() : free_bytes_(FreeBytesAt(volume_.path())) {}
  bool usable() const {
    if (free_bytes_ >= 5 * kGiB) return true;
    WARN("skipped: the temporary volume has under 5 GiB free");
    return false;
  }
  uint64_t reserve_bytes() const { return static_cast<uint64_t>(free_bytes_ - kGiB); }
  bool Fill() const {
    const int fd = open(filler().c_str(), O_CREAT | O_WRONLY, 0600);
    const bool allocated = fd >= 0 && fallocate(fd, 0, 0, 3 * kGiB) == 0;
    if (fd >= 0) close(fd);
    if (!allocated) WARN("skipped: the temporary volume cannot allocate a file without writing it");
    return allocated;
  }
  void Free() const { std::filesystem::remove(filler()); }
  // Whether `dir` is on the same volume.
  bool Holds(const std::string& dir) const {
    return std::abs(FreeBytesAt(dir) - free_bytes_) < kGiB / 2;
  }

 private:
  std::string filler() const { return volume_.Sub("filler"); }
  testing::TempDir volume_;
  int64_t free_bytes_;
};

TEST_CASE(
    "neighbour lists: a rebuild refused by a full disk is rebuilt by itself once space returns, "
    "with nothing more learned") {
  FullDisk disk;
  if (!disk.usable()) return;
  World w(false, "none", 0, 0, disk.reserve_bytes());
  REQUIRE(disk.Holds(w.reco.data_dir()));
  const std::set<std::string> best = HubWithStaleList(w);
  const auto counted = [&](const char* metric) {
    return testing::MetricValue(w.reco.metrics().registry(), metric, {{"trigger", "changes"}});
  };
  const auto pending = [&] { return w.reco.component().service().neighbour_rebuild_pending(); };
  // Learned and folded into the lists; the rebuild waits for 2 s of quiet.
  REQUIRE(testing::WaitUntil(pending, absl::Seconds(5)));
  if (!disk.Fill()) return;
  REQUIRE(counted("crm_recommendation_neighbour_rebuilds_total") == 0);
  REQUIRE(testing::WaitUntil(
      [&] { return counted("crm_recommendation_neighbour_rebuild_failures_total") >= 1; },
      absl::Seconds(30)));
  CHECK(pending());                               // what it was to cover is still to be rebuilt
  CHECK(RelatedSkus(w, "hub").count("p1") == 1);  // reads go on; the list kept batch by batch
  disk.Free();
  // The retry 10 s after the failure rebuilds, with nothing more learned.
  CHECK(testing::WaitUntil(
      [&] { return counted("crm_recommendation_neighbour_rebuilds_total") == 1 && !pending(); },
      absl::Seconds(60)));
  CHECK(RelatedSkus(w, "hub") == best);
}

TEST_CASE(
    "neighbour lists: pairs learned before a refresh or rebuild that the disk refused are folded "
    "by "
    "the next one") {
  // The store itself, so that the disk fills between learning and folding, which through the
  // service happen in one delivery.
  FullDisk disk;
  if (!disk.usable()) return;
  testing::TempDir dir;
  store::StoreOptions options;
  options.path = dir.Sub("data");
  options.merge_operators = RecommendationStore::MergeOperators();
  options.disk_reserve_bytes = disk.reserve_bytes();
  auto opened = store::Store::Open(options, RecommendationStore::ColumnFamilies());
  REQUIRE(opened.ok());
  REQUIRE(disk.Holds(options.path));
  RecommendationStore store(opened->get(), nullptr);
  const absl::Time now = absl::Now();
  v1::OrderDelivered order;
  order.set_order_id("o1");
  for (const char* sku : {"kettle", "teapot"}) {
    auto* item = order.add_items();
    item->set_item_id(sku);
    item->set_sku(sku);
    item->set_quantity(1);
  }
  REQUIRE((*opened)
              ->Transact(store::Durability::kSynced,
                         [&](store::Transaction& txn) {
                           return store.LearnDelivery(txn, "c1", order, now);
                         })
              .ok());
  if (!disk.Fill()) return;
  absl::SleepFor(absl::Milliseconds(250));  // the store reads the free space at most every 100 ms
  CHECK(absl::IsResourceExhausted(store.RefreshNeighbours().status()));
  CHECK(absl::IsResourceExhausted(store.RebuildNeighbours().status()));
  disk.Free();
  // Both put the pair back: the first refresh the disk allows (once the store sees the space, each
  // refused one putting it back again) folds it.
  absl::StatusOr<int64_t> folded;
  REQUIRE(testing::WaitUntil(
      [&] {
        folded = store.RefreshNeighbours();
        return folded.ok();
      },
      absl::Seconds(5)));
  CHECK(*folded == 1);
  const auto list = store.NeighboursOf("teapot");
  REQUIRE(list.ok());
  REQUIRE(list->items_size() == 1);
  CHECK(list->items(0).sku() == "kettle");
}

TEST_CASE("feedback: impressions and clicks per model as metrics, a retry counted once") {
  World w(/*serve_metrics=*/true);
  SmallShop(w);
  v1::RecordFeedbackRequest fb = HomeFeedback("c1", "fb-1");
  for (const char* sku : {"case", "pen"}) {
    auto* i = fb.add_impressions();
    i->set_sku(sku);
    i->set_model(v1::MODEL_ITEM_CF);
  }
  auto* c = fb.add_clicks();
  c->set_sku("case");
  c->set_model(v1::MODEL_ITEM_CF);
  CallOk(w.stub.get(), &Stub::RecordFeedback, fb);
  CallOk(w.stub.get(), &Stub::RecordFeedback, fb);  // retried
  w.Recommend("c1");
  auto page = testing::HttpGet(w.reco.metrics().port(), "/metrics");
  REQUIRE(page.ok());
  testing::CheckPageShows(page->body, {R"(crm_recommendation_impressions_total{model="item_cf"} 2)",
                                       R"(crm_recommendation_clicks_total{model="item_cf"} 1)",
                                       R"(crm_recommendations_served_total{placement="home"} 1)",
                                       R"(crm_recommendation_learned_total{kind="purchase"} 41)"});
  // The same request id for different feedback is refused.
  fb.mutable_clicks(0)->set_sku("pen");
  RequireError(StatusOf(w.stub.get(), &Stub::RecordFeedback, fb),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id");
}

TEST_CASE(
    "bad input: clear errors naming the field, nothing written, unknown customers get cold start") {
  World w;
  SmallShop(w);
  auto req = testing::ForCustomer<v1::RecommendRequest>("c1");
  req.set_placement(v1::PLACEMENT_HOME);
  req.set_count(10);
  auto expect = [&](v1::RecommendRequest r, grpc::StatusCode code, const std::string& field) {
    RequireError(StatusOf(w.stub.get(), &Stub::Recommend, r), code, field);
  };
  auto r = req;
  r.set_count(0);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "count");
  r.set_count(51);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "count");
  r = req;
  r.set_placement(v1::PLACEMENT_UNSPECIFIED);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "placement");
  r.set_placement(static_cast<v1::Placement>(99));
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "placement");
  r = req;
  r.set_customer_id("");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "customer_id");
  r = req;
  r.set_model(static_cast<v1::Model>(42));
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "model");
  r = req;
  r.set_placement(v1::PLACEMENT_CART);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "context_skus");
  r.add_context_skus("phone");
  r.add_context_skus("no-such-sku");
  expect(r, grpc::StatusCode::NOT_FOUND, "context_skus[1]");
  // Unknown customer: not an error, just cold start.
  r = req;
  r.set_customer_id("never-seen");
  const v1::RecommendResponse resp = CallOk(w.stub.get(), &Stub::Recommend, r);
  REQUIRE_FALSE(resp.recommendations().empty());
  CHECK(resp.recommendations(0).model() == v1::MODEL_COLD_START);

  RequireError(StatusOf(w.stub.get(), &Stub::RelatedItems,
                        AboutSku<v1::RelatedItemsRequest>("no-such-sku", 5)),
               grpc::StatusCode::NOT_FOUND, "sku");
  RequireError(
      StatusOf(w.stub.get(), &Stub::RelatedItems, AboutSku<v1::RelatedItemsRequest>("phone", 0)),
      grpc::StatusCode::INVALID_ARGUMENT, "count");
  RequireError(StatusOf(w.stub.get(), &Stub::BoughtTogether,
                        AboutSku<v1::BoughtTogetherRequest>("ghost", 3)),
               grpc::StatusCode::NOT_FOUND, "sku");
  RequireError(StatusOf(w.stub.get(), &Stub::BestSellers, BestSellers(500)),
               grpc::StatusCode::INVALID_ARGUMENT, "count");

  // Feedback: a bad item anywhere refuses the whole call, and nothing of it is counted.
  v1::RecordFeedbackRequest fb = HomeFeedback("c1", "fb-bad");
  auto* good = fb.add_impressions();
  good->set_sku("pen");
  good->set_model(v1::MODEL_BESTSELLERS);
  auto* bad = fb.add_impressions();
  bad->set_sku("pen");
  auto refused = [&](grpc::StatusCode code, const std::string& field) {
    RequireError(StatusOf(w.stub.get(), &Stub::RecordFeedback, fb), code, field);
  };
  refused(grpc::StatusCode::INVALID_ARGUMENT, "impressions[1].model");
  bad->set_model(v1::MODEL_BESTSELLERS);
  bad->set_sku("ghost");
  refused(grpc::StatusCode::NOT_FOUND, "impressions[1].sku");
  fb.clear_request_id();
  refused(grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  bool shown = false;
  (void)w.reco.store().ScanPrefix(w.reco.store().cf("shown"), "",
                                  [&](absl::string_view, absl::string_view) {
                                    shown = true;
                                    return false;
                                  });
  CHECK_FALSE(shown);

  // An event without a customer is refused (and would be dead-lettered by its producer), not half
  // applied.
  v1::Event orphan = w.Delivered("", {"pen"}, w.Now());
  v1::DeliverEventsRequest deliver;
  *deliver.add_events() = orphan;
  const v1::DeliverEventsResponse delivered =
      CallOk(w.sink.get(), &v1::EventSink::Stub::DeliverEvents, deliver);
  CHECK(delivered.processed_count() == 0);
  CHECK(delivered.failed_message() == "event has no customer_id");
}

TEST_CASE(
    "a clock long after the last sale still recommends: longer windows, then all-time best "
    "sellers") {
  World w;
  SmallShop(w);
  w.Buy("regular", {"pen"}, w.Now() - 5 * kDay);
  w.reco.clock().Advance(3 * 365 * kDay);  // no sale in the last 30, 90 or 365 days
  auto cold = w.Recommend("never-seen");
  REQUIRE_FALSE(cold.recommendations().empty());
  CHECK(cold.recommendations(0).item().sku() == "charger");
  auto known = w.Recommend("regular");
  CHECK(known.recommendations_size() >= 5);
  CHECK_FALSE(Has(known, "pen"));
  const v1::BestSellersResponse top = CallOk(w.stub.get(), &Stub::BestSellers, BestSellers(3));
  REQUIRE(top.items_size() == 3);
  CHECK(top.items(0).item().sku() == "charger");
}

TEST_CASE(
    "buy again is its own labelled section: items bought with a rhythm and due now, never in "
    "discovery") {
  World w;
  SmallShop(w);
  const absl::Time start = w.Now();
  // Tea every two weeks (on four days), a mug once, a kettle on two days long ago.
  for (int i = 0; i < 4; ++i) w.Buy("tea-drinker", {"teapot"}, start + i * 14 * kDay);
  w.Buy("tea-drinker", {"mug"}, start);
  w.Buy("tea-drinker", {"kettle"}, start - 400 * kDay);
  w.Buy("tea-drinker", {"kettle"}, start - 390 * kDay);
  w.reco.clock().Set(start + 3 * 14 * kDay + 13 * kDay);  // 13 days after the last tea
  auto recs = w.Recommend("tea-drinker");
  REQUIRE(recs.buy_again_size() == 1);
  const auto& again = recs.buy_again(0);
  CHECK(again.item().sku() == "teapot");
  CHECK(again.model() == v1::MODEL_BUY_AGAIN);
  CHECK(again.reason().find("every 14 days") != std::string::npos);
  for (const auto& r : recs.recommendations()) {
    CHECK(r.model() != v1::MODEL_BUY_AGAIN);
    for (const char* bought : {"teapot", "mug", "kettle"}) CHECK(r.item().sku() != bought);
  }
  CHECK_FALSE(recs.recommendations().empty());
  // Not due yet a week after a purchase, and no section on a product page.
  w.Buy("tea-drinker", {"teapot"}, w.Now());
  w.reco.clock().Advance(7 * kDay);
  CHECK(w.Recommend("tea-drinker").buy_again().empty());
  w.reco.clock().Advance(7 * kDay);
  CHECK(w.Recommend("tea-drinker").buy_again_size() == 1);
  CHECK(w.Recommend("tea-drinker", v1::PLACEMENT_PRODUCT_PAGE, 5, v1::MODEL_BLEND, {"phone"})
            .buy_again()
            .empty());
}

TEST_CASE(
    "the same history gives the same lists: two services fed the same events answer identically") {
  auto feed = [](World& w) {
    w.Catalog({{"a", "x"}, {"b", "x"}, {"c", "y"}, {"d", "y"}, {"e", "z"}, {"f", "z"}, {"g", "z"}});
    const absl::Time t = w.Now() - 20 * kDay;
    // Ties everywhere: every pair bought by as many customers, every item as popular.
    const std::vector<std::vector<std::string>> baskets = {
        {"a", "b"}, {"c", "d"}, {"e", "f"}, {"g", "a"}, {"b", "c"}, {"d", "e"}, {"f", "g"}};
    std::vector<v1::Event> events;
    for (int i = 0; i < 14; ++i)
      events.push_back(w.Delivered("c" + std::to_string(i), baskets[i % 7], t + i * kDay));
    w.Deliver(events);
    w.Buy("me", {"a"}, w.Now() - kDay);
  };
  World first, second;
  feed(first);
  feed(second);
  auto lists = [](World& w) {
    std::vector<std::vector<std::string>> out;
    for (const char* who : {"me", "c3", "nobody"})
      out.push_back(Skus(w.Recommend(who, v1::PLACEMENT_HOME, 6)));
    return out;
  };
  const auto a = lists(first);
  CHECK(a == lists(second));
  CHECK(a == lists(first));  // and asking again changes nothing
  REQUIRE(a[0].size() == 6);
  // Equal scores are ordered by SKU.
  auto cold = first.Recommend("nobody", v1::PLACEMENT_HOME, 7);
  for (int i = 1; i < cold.recommendations_size(); ++i) {
    if (cold.recommendations(i).score() == cold.recommendations(i - 1).score()) {
      CHECK(cold.recommendations(i - 1).item().sku() < cold.recommendations(i).item().sku());
    }
  }
}

// A consumer that never answers: recommendation's events stay in its outbox for the test to read.
constexpr char kKeepEvents[] = "test=127.0.0.1:1";

// The ReminderDue events recommendation wrote, in the order written.
std::vector<v1::Event> RemindersWritten(RecoHarness& reco) {
  std::vector<v1::Event> out;
  for (v1::Event& e : testing::OutboxEvents(reco.store()))
    if (e.has_reminder_due()) out.push_back(std::move(e));
  return out;
}

ReminderSweep::Counts Sweep(World& w) {
  absl::StatusOr<ReminderSweep::Counts> counts = w.reco.component().service().reminders().Run();
  INFO(counts.status().ToString());
  REQUIRE(counts.ok());
  CHECK(counts->failed == 0);
  return *counts;
}

double RemindersDue(World& w, const std::string& kind) {
  return testing::MetricValue(w.reco.metrics().registry(), "crm_reminders_due_total",
                              {{"kind", kind}});
}

absl::Time Utc(int year, int month, int day, int hour = 0) {
  return absl::FromCivil(absl::CivilHour(year, month, day, hour), absl::UTCTimeZone());
}

// A toy shop whose toys sell in late September (the clock is set to 28 September 2026, 9:00),
// where "aunt" bought toys every October and "viewer" bought the first TV; five parents bought
// this week and "browser" only looked.
void GiftShop(World& w) {
  w.Catalog({{"doll", "toys"},
             {"kite", "toys"},
             {"robot", "toys"},
             {"tv-1", "tv"},
             {"socks", "clothes"},
             {"hat", "clothes"}});
  w.Buy("aunt", {"doll"}, Utc(2024, 10, 14));
  w.Buy("aunt", {"kite"}, Utc(2025, 10, 12));
  w.Buy("aunt", {"socks"}, Utc(2026, 2, 1));
  w.Buy("viewer", {"tv-1"}, Utc(2025, 11, 1));
  v1::Event browse = w.NewEvent("browser", Utc(2025, 10, 1));
  auto* look = browse.mutable_behavior_recorded()->add_signals();
  look->set_type("item_view");
  look->set_category("toys");
  look->set_sku("kite");
  look->set_dwell_seconds(40);
  w.Deliver({browse});
  w.reco.clock().Set(Utc(2026, 9, 28, 9));
  for (int i = 0; i < 5; ++i)
    w.Buy("parent" + std::to_string(i), {"robot", "hat"}, w.Now() - 3 * kDay);
}

TEST_CASE(
    "scheduled reminders: the occasion and upgrade models' best item as a ReminderDue event, at "
    "most one of each kind per customer a day, however often the sweep runs",
    "[recommendation][reminders]") {
  World w(/*serve_metrics=*/false, kKeepEvents);
  GiftShop(w);

  // The aunt's October habit: reminded of the toy selling best, with the reason Recommend gives.
  ReminderSweep::Counts counts = Sweep(w);
  CHECK(counts.customers == 7);  // aunt, viewer, five parents; the browser bought nothing
  CHECK(counts.occasion == 1);
  CHECK(counts.upgrade == 0);
  std::vector<v1::Event> due = RemindersWritten(w.reco);
  REQUIRE(due.size() == 1);
  CHECK(due[0].customer_id() == "aunt");
  CHECK(due[0].producer() == "recommendation");
  CHECK(api::FromTimestamp(due[0].occur_time()) == w.Now());
  const v1::ReminderDue& occasion = due[0].reminder_due();
  CHECK(occasion.kind() == v1::REMINDER_KIND_OCCASION);
  CHECK(occasion.sku() == "robot");
  CHECK(occasion.title() == "Item robot");
  CHECK(occasion.category() == "toys");
  CHECK(occasion.reason() == "you bought in toys around this time last year (12 October 2025)");
  CHECK(occasion.replaces_sku().empty());
  // Exactly what the occasion model recommends.
  auto recs = w.Recommend("aunt", v1::PLACEMENT_HOME, 1, v1::MODEL_OCCASION);
  REQUIRE(recs.recommendations_size() == 1);
  CHECK(recs.recommendations(0).item().sku() == occasion.sku());
  CHECK(recs.recommendations(0).reason() == occasion.reason());
  CHECK(RemindersDue(w, "occasion") == 1);

  // Later the same day: nothing new.
  w.reco.clock().Advance(absl::Hours(5));
  counts = Sweep(w);
  CHECK(counts.occasion == 0);
  CHECK(counts.upgrade == 0);
  CHECK(RemindersWritten(w.reco).size() == 1);

  // The successor launches: its predecessor's owner gets one upgrade notice; the aunt nothing more.
  LaunchTv2(w);
  counts = Sweep(w);
  CHECK(counts.occasion == 0);
  CHECK(counts.upgrade == 1);
  due = RemindersWritten(w.reco);
  REQUIRE(due.size() == 2);
  CHECK(due[1].customer_id() == "viewer");
  const v1::ReminderDue& upgrade = due[1].reminder_due();
  CHECK(upgrade.kind() == v1::REMINDER_KIND_UPGRADE);
  CHECK(upgrade.sku() == "tv-2");
  CHECK(upgrade.replaces_sku() == "tv-1");
  CHECK(upgrade.title() == "TV mark II");
  CHECK(upgrade.category() == "tv");
  CHECK(upgrade.reason() == "a newer model of Item tv-1, which you bought");
  CHECK(RemindersDue(w, "upgrade") == 1);

  // A restart the same day: the store remembers what was written.
  w.reco.Restart();
  w.stub = v1::RecommendationService::NewStub(w.reco.channel());
  counts = Sweep(w);
  CHECK(counts.occasion == 0);
  CHECK(counts.upgrade == 0);
  CHECK(RemindersWritten(w.reco).size() == 2);

  // The next day both are still due: one of each again, still for nobody else.
  w.reco.clock().Advance(kDay);
  counts = Sweep(w);
  CHECK(counts.occasion == 1);
  CHECK(counts.upgrade == 1);
  due = RemindersWritten(w.reco);
  REQUIRE(due.size() == 4);
  std::set<std::pair<std::string, std::string>> reminded;
  for (const v1::Event& e : due) reminded.insert({e.customer_id(), e.reminder_due().sku()});
  CHECK(reminded ==
        std::set<std::pair<std::string, std::string>>{{"aunt", "robot"}, {"viewer", "tv-2"}});
}

TEST_CASE(
    "scheduled reminders: none for an erased customer, and an erasure drops the reminders still "
    "waiting in the outbox",
    "[recommendation][reminders]") {
  World w(/*serve_metrics=*/false, kKeepEvents);
  GiftShop(w);
  LaunchTv2(w);
  auto erase = [&](const std::string& customer_id) {
    v1::Event erased = w.NewEvent(customer_id, w.Now());
    erased.set_producer("customer-profile");
    api::SetTimestamp(w.Now(), erased.mutable_customer_erased()->mutable_erase_time());
    w.Deliver({erased});
  };
  erase("aunt");
  ReminderSweep::Counts counts = Sweep(w);
  CHECK(counts.occasion == 0);
  CHECK(counts.upgrade == 1);
  std::vector<v1::Event> due = RemindersWritten(w.reco);
  REQUIRE(due.size() == 1);
  CHECK(due[0].customer_id() == "viewer");

  erase("viewer");
  CHECK(RemindersWritten(w.reco).empty());
  w.reco.clock().Advance(kDay);
  counts = Sweep(w);
  CHECK(counts.occasion == 0);
  CHECK(counts.upgrade == 0);
  CHECK(RemindersWritten(w.reco).empty());
}

TEST_CASE("scheduled reminders: the sweep runs by itself every --reminder_sweep_interval_s",
          "[recommendation][reminders]") {
  World w(/*serve_metrics=*/false, kKeepEvents, /*reminder_sweep_s=*/1);
  GiftShop(w);
  REQUIRE(
      testing::WaitUntil([&] { return RemindersWritten(w.reco).size() == 1; }, absl::Seconds(30)));
  CHECK(RemindersWritten(w.reco)[0].reminder_due().sku() == "robot");
}

}  // namespace
}  // namespace crm::recommendation
