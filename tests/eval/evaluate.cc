#include "tests/eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/sharding/hash.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/order_tracking/order_tracking_component.h"
#include "services/recommendation/recommendation_component.h"
#include "tests/eval/markdown.h"
#include "tests/support/caller.h"
#include "tests/support/service_harness.h"

namespace crm::eval {
namespace {

using Harness = testing::ServiceHarness<recommendation::RecommendationComponent>;
using ProfileHarness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
using OrderHarness = testing::ServiceHarness<order_tracking::OrderTrackingComponent>;
using Stub = v1::RecommendationService::Stub;

constexpr int kEventBatch = 256;

template <typename Request, typename Response>
grpc::Status Call(Stub* stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& req, Response* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return (stub->*method)(&ctx, req, resp);
}

void Check(const grpc::Status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(absl::StrCat(what, ": ", s.error_message()));
}

// Adds one customer's top-k to a model's running sums.
struct Tally {
  Scores sums;
  int customers = 0;
  std::set<std::string> distinct;

  void Add(const std::vector<std::string>& recs, const std::set<std::string>& truth, int k) {
    ++customers;
    int hits = 0;
    double dcg = 0;
    for (int i = 0; i < static_cast<int>(recs.size()) && i < k; ++i) {
      distinct.insert(recs[i]);
      if (truth.count(recs[i])) {
        ++hits;
        dcg += 1.0 / std::log2(i + 2.0);
      }
    }
    double ideal = 0;
    for (int i = 0; i < std::min<int>(k, static_cast<int>(truth.size())); ++i)
      ideal += 1.0 / std::log2(i + 2.0);
    sums.precision += static_cast<double>(hits) / k;
    sums.recall += static_cast<double>(hits) / static_cast<double>(truth.size());
    sums.ndcg += ideal > 0 ? dcg / ideal : 0;
    sums.hit_rate += hits > 0 ? 1 : 0;
  }
  Scores Result(const std::string& model, size_t catalog) const {
    Scores s;
    s.model = model;
    const double n = std::max(1, customers);
    s.precision = sums.precision / n;
    s.recall = sums.recall / n;
    s.ndcg = sums.ndcg / n;
    s.hit_rate = sums.hit_rate / n;
    s.coverage =
        static_cast<double>(distinct.size()) / static_cast<double>(std::max<size_t>(1, catalog));
    return s;
  }
};

// Every purchase, return and day of browsing before `until`, in time order, with ids unique in the
// run.
std::vector<v1::Event> HistoryEvents(const Dataset& data,
                                     const std::map<std::string, std::string>& category_of,
                                     absl::Time until) {
  std::vector<v1::Event> events;
  auto event = [&](const std::string& customer, absl::Time t, const char* producer) {
    v1::Event e;
    e.set_producer(producer);
    e.set_customer_id(customer);
    api::SetTimestamp(t, e.mutable_occur_time());
    return e;
  };
  for (const auto& o : data.orders) {
    if (o.time >= until) continue;
    v1::Event e = event(o.customer_id, o.time, "order-tracking");
    auto* d = e.mutable_order_delivered();
    d->set_order_id(o.order_id);
    api::SetTimestamp(o.time, d->mutable_delivered_time());
    for (const auto& line : o.lines) {
      auto* i = d->add_items();
      i->set_item_id(line.sku);
      i->set_sku(line.sku);
      i->set_quantity(line.quantity);
      if (auto it = category_of.find(line.sku); it != category_of.end())
        i->set_category(it->second);
    }
    events.push_back(std::move(e));
  }
  for (const auto& r : data.returns) {
    if (r.time >= until) continue;
    v1::Event e = event(r.customer_id, r.time, "order-tracking");
    auto* f = e.mutable_order_refunded();
    f->set_order_id(r.order_id);
    f->set_return_id(absl::StrCat(r.order_id, "-r", events.size()));
    for (const auto& line : r.lines) {
      auto* i = f->add_items();
      i->set_item_id(line.sku);
      i->set_sku(line.sku);
      i->set_quantity(line.quantity);
    }
    events.push_back(std::move(e));
  }
  // Browsing as customer-profile forwards it: one event per customer and day.
  std::map<std::pair<std::string, int64_t>, v1::Event> browsing;
  for (const auto& v : data.views) {
    if (v.time >= until) continue;
    const int64_t day = absl::ToUnixSeconds(v.time) / 86400;
    auto [it, inserted] = browsing.try_emplace({v.customer_id, day});
    if (inserted) it->second = event(v.customer_id, v.time, "customer-profile");
    auto* s = it->second.mutable_behavior_recorded()->add_signals();
    s->set_type("item_view");
    s->set_category(v.category);
    s->set_sku(v.sku);
    s->set_dwell_seconds(v.dwell_seconds);
    api::SetTimestamp(v.time, s->mutable_occur_time());
  }
  for (auto& [key, e] : browsing) events.push_back(std::move(e));
  std::stable_sort(events.begin(), events.end(), [](const v1::Event& a, const v1::Event& b) {
    return api::FromTimestamp(a.occur_time()) < api::FromTimestamp(b.occur_time());
  });
  for (size_t i = 0; i < events.size(); ++i)
    events[i].set_event_id(absl::StrCat("eval/0/1.", i + 1));
  return events;
}

void WaitNeighbourRebuild(Harness& service) {
  const absl::Time give_up = absl::Now() + absl::Minutes(10);
  while (service.component().service().neighbour_rebuild_pending()) {
    if (absl::Now() > give_up)
      throw std::runtime_error("the neighbour lists were not rebuilt within 10 minutes");
    absl::SleepFor(absl::Milliseconds(50));
  }
}

Harness::Options ServiceOptions() {
  absl::SetFlag(&FLAGS_bestseller_cache_s,
                3600);  // the clock stands still while a cut-off is scored
  Harness::Options ho;
  ho.block_cache_bytes =
      128 << 20;  // what a deployed service gets (--block_cache_mb, --memtable_mb)
  ho.memtable_budget_bytes = 64 << 20;
  return ho;
}

// The catalog through UpsertCatalogItems, predecessors before their successors; returns each item's
// category.
std::map<std::string, std::string> LoadCatalog(Stub* stub, const Dataset& data) {
  std::vector<v1::CatalogItem> catalog = data.catalog;
  std::stable_partition(catalog.begin(), catalog.end(),
                        [](const v1::CatalogItem& i) { return i.successor_of().empty(); });
  std::map<std::string, std::string> category_of;
  for (const auto& item : catalog) category_of[item.sku()] = item.category();
  for (size_t i = 0; i < catalog.size(); i += 1000) {
    v1::UpsertCatalogItemsRequest req;
    for (size_t j = i; j < std::min(catalog.size(), i + 1000); ++j) *req.add_items() = catalog[j];
    v1::UpsertCatalogItemsResponse resp;
    grpc::ClientContext ctx;
    Check(stub->UpsertCatalogItems(&ctx, req, &resp), "UpsertCatalogItems");
    if (resp.errors_size() > 0)
      throw std::runtime_error("catalog item refused: " + resp.errors(0).message());
  }
  return category_of;
}

// Delivers events[begin, end) through the EventSink in batches, as a producer's dispatcher would;
// returns how many were delivered orders.
int Deliver(v1::EventSink::Stub* sink, const std::vector<v1::Event>& events, size_t begin,
            size_t end) {
  int orders = 0;
  for (size_t i = begin; i < end; i += kEventBatch) {
    v1::DeliverEventsRequest req;
    for (size_t j = i; j < std::min(end, i + kEventBatch); ++j) *req.add_events() = events[j];
    v1::DeliverEventsResponse resp;
    grpc::ClientContext ctx;
    Check(sink->DeliverEvents(&ctx, req, &resp), "DeliverEvents");
    if (resp.processed_count() != req.events_size())
      throw std::runtime_error("event refused: " + resp.failed_message());
    for (const auto& e : req.events()) orders += e.has_order_delivered() ? 1 : 0;
  }
  return orders;
}

// A shop's history through the import path an operator uses (crm-import's calls): customer-profile
// takes the customers (ImportCustomer), order-tracking their orders and returns (ImportOrders), and
// its outbox delivers the events to the recommendation service under evaluation. Nothing poses as
// another service.
class ShopImport {
 public:
  explicit ShopImport(int recommendation_port)
      : profile_(ProfileOptions()), orders_(OrderOptions(profile_.port(), recommendation_port)) {
    profiles_ = v1::CustomerProfileService::NewStub(profile_.channel());
    order_stub_ = v1::OrderTrackingService::NewStub(orders_.channel());
  }

  // Imports the orders and returns before `until` not imported yet, then waits until the
  // recommendation service has acknowledged every event they produced. Returns how many orders this
  // call imported.
  int ImportUntil(const Dataset& data, const std::map<std::string, std::string>& category_of,
                  absl::Time until) {
    std::map<std::string, v1::ImportOrdersRequest> calls;  // by shop customer id
    int imported = 0;
    for (; next_order_ < data.orders.size() && data.orders[next_order_].time < until;
         ++next_order_) {
      const Order& o = data.orders[next_order_];
      v1::HistoricalOrder h;
      h.set_external_order_id(o.order_id);
      api::SetTimestamp(o.time, h.mutable_place_time());
      for (const Line& line : o.lines) {
        if (line.quantity > kMaxUnitsPerLine) continue;  // beyond what an order line takes
        v1::OrderItem* item = h.add_items();
        item->set_sku(line.sku);
        if (auto it = category_of.find(line.sku); it != category_of.end())
          item->set_category(it->second);
        item->set_quantity(line.quantity);
        item->mutable_unit_price()->set_amount_minor(line.unit_price_minor);
        item->mutable_unit_price()->set_currency("GBP");
        returnable_[{o.order_id, line.sku}] += line.quantity;
      }
      if (h.items().empty()) continue;
      *calls[o.customer_id].add_orders() = std::move(h);
      ++imported;
    }
    for (; next_return_ < data.returns.size() && data.returns[next_return_].time < until;
         ++next_return_) {
      const Return& r = data.returns[next_return_];
      v1::HistoricalReturn h;
      h.set_external_return_id(absl::StrCat("return-", next_return_));
      h.set_external_order_id(r.order_id);
      api::SetTimestamp(r.time, h.mutable_refund_time());
      for (const Line& line : r.lines) {
        // Never more than the order holds (the data set's credit notes sometimes do).
        int& left = returnable_[{r.order_id, line.sku}];
        const int units = std::min(left, line.quantity);
        if (units <= 0) continue;
        left -= units;
        v1::HistoricalReturnLine* l = h.add_lines();
        l->set_sku(line.sku);
        l->set_quantity(units);
      }
      if (!h.lines().empty()) *calls[r.customer_id].add_returns() = std::move(h);
    }
    for (auto& [shop_id, call] : calls) {
      call.set_customer_id(CustomerId(shop_id));
      for (int first = 0; first < call.orders_size() || first < call.returns_size();
           first += kImportChunk) {
        v1::ImportOrdersRequest chunk;
        chunk.set_customer_id(call.customer_id());
        for (int i = first; i < std::min(call.orders_size(), first + kImportChunk); ++i)
          *chunk.add_orders() = call.orders(i);
        for (int i = first; i < std::min(call.returns_size(), first + kImportChunk); ++i)
          *chunk.add_returns() = call.returns(i);
        v1::ImportOrdersResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        Check(order_stub_->ImportOrders(&ctx, chunk, &resp), "ImportOrders");
      }
    }
    if (!orders_.component().events().dispatcher().WaitCaughtUp(absl::Minutes(20))) {
      throw std::runtime_error(
          "the recommendation service did not catch up with the imported history");
    }
    return imported;
  }

  // The customer id the shop's customer got (imported on first use).
  const std::string& CustomerId(const std::string& shop_id) {
    auto [it, inserted] = ids_.try_emplace(shop_id);
    if (inserted) {
      v1::ImportCustomerRequest req;
      req.set_external_id(shop_id);
      v1::ImportCustomerResponse resp;
      grpc::ClientContext ctx;
      Check(profiles_->ImportCustomer(&ctx, req, &resp), "ImportCustomer");
      it->second = resp.customer().customer_id();
    }
    return it->second;
  }

 private:
  // Within a call: returns refer to orders of the same or an earlier call, so orders go first.
  static constexpr int kImportChunk = 400;
  static constexpr int kMaxUnitsPerLine = 10000;

  static ProfileHarness::Options ProfileOptions() {
    ProfileHarness::Options o;
    return o;
  }
  static OrderHarness::Options OrderOptions(int profile_port, int recommendation_port) {
    OrderHarness::Options o;
    o.backends = {{"customer-profile", "127.0.0.1:" + std::to_string(profile_port)}};
    o.event_sinks = "recommendation=127.0.0.1:" + std::to_string(recommendation_port);
    o.block_cache_bytes = 64 << 20;
    o.memtable_budget_bytes = 32 << 20;
    return o;
  }

  ProfileHarness profile_;
  OrderHarness orders_;
  std::unique_ptr<v1::CustomerProfileService::Stub> profiles_;
  std::unique_ptr<v1::OrderTrackingService::Stub> order_stub_;
  std::map<std::string, std::string> ids_;
  std::map<std::pair<std::string, std::string>, int>
      returnable_;  // (invoice, sku) -> units not returned
  size_t next_order_ = 0, next_return_ = 0;
};

// NDCG@k with binary relevance, and whether anything was hit.
std::pair<double, bool> Ndcg(const std::vector<std::string>& recs,
                             const std::set<std::string>& truth, int k) {
  double dcg = 0, ideal = 0;
  bool hit = false;
  for (int i = 0; i < static_cast<int>(recs.size()) && i < k; ++i) {
    if (truth.count(recs[i])) {
      dcg += 1.0 / std::log2(i + 2.0);
      hit = true;
    }
  }
  for (int i = 0; i < std::min<int>(k, static_cast<int>(truth.size())); ++i)
    ideal += 1.0 / std::log2(i + 2.0);
  return {ideal > 0 ? dcg / ideal : 0, hit};
}

// The baselines, from the history before a cut-off: popular in the last 30 days, most popular, and
// item-kNN (cosine of two items over customers: customers who bought both / sqrt(buyers of each)).
// Every list leaves out what the customer bought before and breaks ties by SKU.
class Baselines {
 public:
  Baselines(const Dataset& data, absl::Time cutoff, absl::Duration recent) {
    std::map<std::string, std::set<std::string>> bought;
    std::map<std::string, std::set<std::string>> recent_buyers;
    std::set<std::string> skus;
    for (const auto& o : data.orders) {
      if (o.time >= cutoff) continue;
      for (const auto& line : o.lines) {
        bought[o.customer_id].insert(line.sku);
        skus.insert(line.sku);
        if (o.time >= cutoff - recent) recent_buyers[line.sku].insert(o.customer_id);
      }
    }
    skus_.assign(skus.begin(), skus.end());  // index order is SKU order
    for (size_t i = 0; i < skus_.size(); ++i) index_[skus_[i]] = static_cast<int>(i);
    const size_t n = skus_.size();
    buyers_.assign(n, 0);
    recent_.assign(n, 0);
    co_.assign(n * n, 0);
    for (const auto& [sku, who] : recent_buyers)
      recent_[index_[sku]] = static_cast<double>(who.size());
    for (const auto& [customer, items] : bought) {
      std::vector<int>& mine = items_[customer];
      for (const auto& sku : items) mine.push_back(index_[sku]);
      for (int i : mine) {
        buyers_[i] += 1;
        for (int j : mine) {
          if (i != j) co_[static_cast<size_t>(i) * n + j] += 1;
        }
      }
    }
  }

  std::vector<std::string> PopularRecent(const std::string& customer, int k) const {
    return Top(customer, recent_, k);
  }
  std::vector<std::string> MostPopular(const std::string& customer, int k) const {
    return Top(customer, buyers_, k);
  }
  std::vector<std::string> ItemKnn(const std::string& customer, int k) const {
    const auto it = items_.find(customer);
    if (it == items_.end()) return {};
    return Top(customer, FromSeeds(it->second, /*cosine=*/true), k);
  }
  // A product page's or cart's baselines: the items most alike to `context` (summed cosines over
  // customers x items), and those most customers bought with it; neither offers the context or
  // what the customer bought.
  std::vector<std::string> AlikeTo(const std::string& customer,
                                   const std::vector<std::string>& context, int k,
                                   bool cosine) const {
    std::vector<int> seeds;
    for (const auto& sku : context) {
      if (auto it = index_.find(sku); it != index_.end()) seeds.push_back(it->second);
    }
    std::vector<double> score = FromSeeds(seeds, cosine);
    for (int j : seeds) score[j] = 0;
    return Top(customer, score, k);
  }

 private:
  // Every item's score from `seeds` (indexes): the summed cosines over customers x items, or the
  // summed counts of customers who bought both.
  std::vector<double> FromSeeds(const std::vector<int>& seeds, bool cosine) const {
    const size_t n = skus_.size();
    std::vector<double> score(n, 0);
    for (int j : seeds) {
      const float* row = &co_[static_cast<size_t>(j) * n];
      for (size_t i = 0; i < n; ++i) {
        if (row[i] > 0) score[i] += cosine ? row[i] / std::sqrt(buyers_[i] * buyers_[j]) : row[i];
      }
    }
    return score;
  }

  std::vector<std::string> Top(const std::string& customer, const std::vector<double>& score,
                               int k) const {
    std::vector<char> mine(skus_.size(), 0);
    if (auto it = items_.find(customer); it != items_.end()) {
      for (int i : it->second) mine[i] = 1;
    }
    std::vector<int> candidates;
    for (size_t i = 0; i < skus_.size(); ++i) {
      if (!mine[i] && score[i] > 0) candidates.push_back(static_cast<int>(i));
    }
    const size_t top = std::min<size_t>(k, candidates.size());
    std::partial_sort(
        candidates.begin(), candidates.begin() + top, candidates.end(),
        [&](int a, int b) { return score[a] != score[b] ? score[a] > score[b] : a < b; });
    std::vector<std::string> out;
    for (size_t i = 0; i < top; ++i) out.push_back(skus_[candidates[i]]);
    return out;
  }

  std::vector<std::string> skus_;
  std::vector<double> buyers_;  // customers who bought the item
  std::vector<double> recent_;  // of them, in the recent window
  std::vector<float> co_;       // customers who bought both, row-major
  std::map<std::string, std::vector<int>> items_;
  std::map<std::string, int> index_;
};

// A product page or cart to score: the first `context_lines` distinct items of the customer's
// first order within the horizon that also holds other items new to them, and those items (what
// the page or cart should have led to).
struct ContextPage {
  std::vector<std::string> context;
  std::set<std::string> truth;
};

std::map<std::string, ContextPage> ContextPagesAfter(
    const Dataset& data, absl::Time cutoff, absl::Time end,
    const std::map<std::string, std::set<std::string>>& before, size_t context_lines) {
  std::map<std::string, ContextPage> pages;
  for (const auto& o : data.orders) {
    if (o.time < cutoff) continue;
    if (o.time >= end) break;
    auto had = before.find(o.customer_id);
    if (had == before.end() || pages.count(o.customer_id)) continue;
    ContextPage page;
    for (const auto& line : o.lines) {
      const bool in_context =
          std::find(page.context.begin(), page.context.end(), line.sku) != page.context.end();
      if (in_context) continue;
      if (page.context.size() < context_lines) {
        page.context.push_back(line.sku);
      } else if (!had->second.count(line.sku)) {
        page.truth.insert(line.sku);
      }
    }
    if (!page.truth.empty()) pages.emplace(o.customer_id, std::move(page));
  }
  return pages;
}

// What each customer bought before `cutoff` and, of what they bought in [cutoff, end), the items
// new to them; `chosen`: the customers with history and something new, by a stable hash of their id
// (the first `max_customers` when that is positive), so every evaluation scores the same people.
struct HeldOut {
  std::map<std::string, std::set<std::string>> before, after;
  std::vector<std::pair<uint64_t, std::string>> chosen;
};

HeldOut HeldOutAfter(const Dataset& data, absl::Time cutoff, absl::Time end, int max_customers) {
  HeldOut h;
  for (const auto& o : data.orders) {
    if (o.time >= end) break;
    auto& bucket = o.time < cutoff ? h.before[o.customer_id] : h.after[o.customer_id];
    for (const auto& line : o.lines) bucket.insert(line.sku);
  }
  for (auto& [customer, bought] : h.after) {
    auto it = h.before.find(customer);
    if (it == h.before.end()) continue;
    for (const auto& sku : it->second) bought.erase(sku);
    if (!bought.empty()) h.chosen.emplace_back(sharding::StableHash64(customer), customer);
  }
  std::sort(h.chosen.begin(), h.chosen.end());
  if (max_customers > 0 && h.chosen.size() > static_cast<size_t>(max_customers)) {
    h.chosen.resize(max_customers);
  }
  return h;
}

}  // namespace

const Scores* Report::Row(const std::string& model) const {
  for (const auto& r : rows) {
    if (r.model == model) return &r;
  }
  return nullptr;
}

std::string Report::Markdown() const {
  std::string out =
      absl::StrFormat(
          "**%s**: %d customers evaluated (bought something new after the split), %d orders and "
          "%d events learned in %.1f s.\n\n",
          dataset, customers_evaluated, orders_learned, events_learned, load_seconds) +
      MarkdownTableHead(
          {"model", "precision@10", "recall@10", "NDCG@10", "hit-rate@10", "coverage"});
  for (const auto& r : rows) {
    absl::StrAppendFormat(&out, "| %s | %.4f | %.4f | %.4f | %.4f | %.3f |\n", r.model, r.precision,
                          r.recall, r.ndcg, r.hit_rate, r.coverage);
  }
  const Scores* blend = Row("blend");
  const Scores* popular = Row("most-popular baseline");
  if (blend != nullptr && popular != nullptr && popular->ndcg > 0) {
    absl::StrAppendFormat(&out, "\nBlend NDCG@10 = %.2f × most-popular.\n",
                          blend->ndcg / popular->ndcg);
  }
  if (planted.pairs > 0) {
    absl::StrAppendFormat(
        &out,
        "\nPlanted structure found: complementary pairs %d/%d (BoughtTogether ranks the companion "
        "first), occasion reminders %d/%d gift buyers, upgrade notices %d/%d owners.\n",
        planted.pairs_found, planted.pairs, planted.occasions_found, planted.gift_buyers,
        planted.upgrades_found, planted.upgrade_owners);
  }
  return out;
}

Report Evaluate(const Dataset& data, const EvalOptions& options) {
  Harness service(ServiceOptions());
  auto stub = v1::RecommendationService::NewStub(service.channel());
  auto sink = v1::EventSink::NewStub(service.channel());
  Report report;
  report.dataset = data.name;
  const auto started = std::chrono::steady_clock::now();
  const std::map<std::string, std::string> category_of = LoadCatalog(stub.get(), data);
  const std::vector<v1::Event> events = HistoryEvents(data, category_of, data.split);
  report.orders_learned = Deliver(sink.get(), events, 0, events.size());
  report.events_learned = static_cast<int>(events.size());
  WaitNeighbourRebuild(service);  // as the service does once learning goes quiet
  report.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  service.clock().Set(data.split);

  // Held-out truth: items a customer bought after the split and never before.
  HeldOut held_out = HeldOutAfter(data, data.split, data.end, options.max_customers);
  auto& before = held_out.before;
  auto& after = held_out.after;
  const auto& chosen = held_out.chosen;
  report.customers_evaluated = static_cast<int>(chosen.size());

  std::vector<std::string> launched;
  for (const auto& item : data.catalog) {
    if (!item.has_launch_time() || api::FromTimestamp(item.launch_time()) <= data.split)
      launched.push_back(item.sku());
  }
  // Baselines: the most bought items (by number of customers) before the split, and random items;
  // both skip what the customer already bought.
  std::map<std::string, int> buyers;
  for (const auto& [customer, bought] : before) {
    for (const auto& sku : bought) ++buyers[sku];
  }
  std::vector<std::pair<int, std::string>> popular;
  for (const auto& [sku, n] : buyers) popular.emplace_back(-n, sku);
  std::sort(popular.begin(), popular.end());

  const std::vector<std::pair<std::string, v1::Model>> models = {
      {"blend", v1::MODEL_BLEND},
      {"item_cf", v1::MODEL_ITEM_CF},
      {"similar_customers", v1::MODEL_SIMILAR_CUSTOMERS},
      {"similar_items (by name)", v1::MODEL_SIMILAR_ITEMS},
      {"bundle", v1::MODEL_BUNDLE},
      {"category_affinity", v1::MODEL_CATEGORY_AFFINITY},
      {"bestsellers (30 days)", v1::MODEL_BESTSELLERS},
      {"occasion", v1::MODEL_OCCASION},
      {"upgrade", v1::MODEL_UPGRADE},
      {"cold_start", v1::MODEL_COLD_START},
  };
  // The customer's home page from one model.
  auto recommend = [&](const std::string& customer, v1::Model model) {
    v1::RecommendRequest req;
    req.set_customer_id(customer);
    req.set_placement(v1::PLACEMENT_HOME);
    req.set_count(options.top_k);
    req.set_model(model);
    v1::RecommendResponse resp;
    Check(Call(stub.get(), &Stub::Recommend, req, &resp), "Recommend");
    return resp;
  };
  for (const auto& [name, model] : models) {
    Tally tally;
    for (const auto& [hash, customer] : chosen) {
      const v1::RecommendResponse resp = recommend(customer, model);
      std::vector<std::string> recs;
      for (const auto& r : resp.recommendations()) recs.push_back(r.item().sku());
      tally.Add(recs, after[customer], options.top_k);
    }
    report.rows.push_back(tally.Result(name, launched.size()));
  }
  Tally most_popular, random;
  for (const auto& [hash, customer] : chosen) {
    const auto& mine = before[customer];
    std::vector<std::string> recs;
    for (const auto& [n, sku] : popular) {
      if (static_cast<int>(recs.size()) == options.top_k) break;
      if (!mine.count(sku)) recs.push_back(sku);
    }
    most_popular.Add(recs, after[customer], options.top_k);
    std::mt19937_64 rng(hash);
    recs.clear();
    for (int tries = 0; static_cast<int>(recs.size()) < options.top_k && tries < 1000; ++tries) {
      const std::string& sku = launched[rng() % launched.size()];
      if (!mine.count(sku) && std::find(recs.begin(), recs.end(), sku) == recs.end())
        recs.push_back(sku);
    }
    random.Add(recs, after[customer], options.top_k);
  }
  report.rows.push_back(most_popular.Result("most-popular baseline", launched.size()));
  report.rows.push_back(random.Result("random baseline", launched.size()));

  // What the synthetic generator planted.
  for (const auto& [anchor, companion] : data.complementary_pairs) {
    v1::BoughtTogetherRequest req;
    req.set_sku(anchor);
    req.set_count(3);
    v1::BoughtTogetherResponse resp;
    grpc::ClientContext ctx;
    Check(stub->BoughtTogether(&ctx, req, &resp), "BoughtTogether");
    ++report.planted.pairs;
    if (resp.rules_size() > 0 && resp.rules(0).item().sku() == companion)
      ++report.planted.pairs_found;
  }
  for (const auto& customer : data.gift_buyers) {
    ++report.planted.gift_buyers;
    auto resp = recommend(customer, v1::MODEL_OCCASION);
    if (resp.recommendations_size() > 0 &&
        resp.recommendations(0).item().category() == data.gift_category) {
      ++report.planted.occasions_found;
    }
  }
  // Owners who sent the old model back are rightly not told (a returned item is a signal against
  // it).
  std::set<std::pair<std::string, std::string>> returned;
  for (const auto& r : data.returns) {
    if (r.time >= data.split) continue;
    for (const auto& line : r.lines) returned.emplace(r.customer_id, line.sku);
  }
  for (const auto& [old_sku, new_sku] : data.upgrades) {
    for (const auto& [customer, bought] : before) {
      if (!bought.count(old_sku) || returned.count({customer, old_sku})) continue;
      ++report.planted.upgrade_owners;
      auto resp = recommend(customer, v1::MODEL_UPGRADE);
      for (const auto& r : resp.recommendations()) {
        if (r.item().sku() == new_sku) {
          ++report.planted.upgrades_found;
          break;
        }
      }
    }
  }
  return report;
}

double CutoffScores::RatioToBestBaseline() const {
  const double best = std::max({popular_recent_ndcg, most_popular_ndcg, item_knn_ndcg});
  return best > 0 ? project_ndcg / best : 0;
}

namespace {

// Bands of distinct items bought before the cut-off: a few, a range, a wide range, a reseller's
// catalogue.
std::vector<CutoffScores::HistoryBand> HistoryBands() {
  return {{1, 15}, {16, 40}, {41, 100}, {101, 0}};
}

CutoffScores::HistoryBand& BandOf(std::vector<CutoffScores::HistoryBand>& bands, size_t items) {
  for (auto& band : bands) {
    if (band.most_items == 0 || items <= static_cast<size_t>(band.most_items)) return band;
  }
  return bands.back();
}

std::string BandName(const CutoffScores::HistoryBand& band) {
  return band.most_items == 0 ? absl::StrCat(band.fewest_items, "+")
                              : absl::StrCat(band.fewest_items, "-", band.most_items);
}

}  // namespace

std::string RollingReport::Markdown() const {
  std::string out =
      absl::StrFormat(
          "**%s**, rolling origin: each cut-off scored on the 30 days after it, customers who "
          "bought an item new to them then and something before; one service fed history up to "
          "each cut-off in turn (%.0f s), %.0f s in all; Recommend p50 %.1f ms, p99 %.1f ms (one "
          "call at a time).\n\n",
          dataset, load_seconds, total_seconds, recommend_p50_ms, recommend_p99_ms) +
      MarkdownTableHead(
          {"cut-off", "customers", "project NDCG@10", "project HR@10", "popular, last 30 days",
           "most popular", "item-kNN cosine", "project / best baseline"},
          /*figures_right=*/true);
  for (const auto& r : rows) {
    absl::StrAppendFormat(&out, "| %s | %d | %.4f | %.3f | %.4f | %.4f | %.4f | %.2f× |\n",
                          absl::FormatTime("%Y-%m-%d", r.cutoff, absl::UTCTimeZone()), r.customers,
                          r.project_ndcg, r.project_hit_rate, r.popular_recent_ndcg,
                          r.most_popular_ndcg, r.item_knn_ndcg, r.RatioToBestBaseline());
  }
  if (rows.empty()) return out;
  // The same customers by the size of their history: project ÷ item-kNN NDCG@10 (customers).
  std::vector<std::string> head = {"cut-off"};
  for (const auto& band : rows.front().by_history) {
    head.push_back(absl::StrCat(BandName(band), " items bought"));
  }
  out += "\nBy items bought before the cut-off: project ÷ item-kNN NDCG@10 (customers).\n\n" +
         MarkdownTableHead(head, /*figures_right=*/true);
  for (const auto& r : rows) {
    out += absl::StrCat("| ", absl::FormatTime("%Y-%m-%d", r.cutoff, absl::UTCTimeZone()));
    for (const auto& band : r.by_history) {
      if (band.item_knn_ndcg > 0) {
        absl::StrAppendFormat(&out, " | %.2f× (%d)", band.project_ndcg / band.item_knn_ndcg,
                              band.customers);
      } else {
        absl::StrAppendFormat(&out, " | - (%d)", band.customers);
      }
    }
    out += " |\n";
  }
  out += ContextTable(
      "Product pages: each scored customer's first order in the 30 days that holds items new to "
      "them, its first item as the page (`Recommend`, PRODUCT_PAGE), scored against those items",
      "pages", &CutoffScores::product_page);
  out += ContextTable(
      "Carts: the same orders' first two items as the cart (`Recommend`, CART), scored against "
      "the other items new to the customer",
      "carts", &CutoffScores::cart);
  return out;
}

std::string RollingReport::ContextTable(const std::string& what, const std::string& unit,
                                        CutoffScores::ContextScores CutoffScores::*scores) const {
  std::string out =
      absl::StrCat("\n", what, ". NDCG@10:\n\n") +
      MarkdownTableHead({"cut-off", unit, "project", "item-kNN of the items", "bought with them",
                         "popular, last 30 days", "project / best baseline"},
                        /*figures_right=*/true);
  for (const auto& r : rows) {
    const auto& p = r.*scores;
    const double best = std::max({p.item_knn_ndcg, p.bought_with_ndcg, p.popular_recent_ndcg});
    absl::StrAppendFormat(&out, "| %s | %d | %.4f | %.4f | %.4f | %.4f | %.2f× |\n",
                          absl::FormatTime("%Y-%m-%d", r.cutoff, absl::UTCTimeZone()), p.pages,
                          p.project_ndcg, p.item_knn_ndcg, p.bought_with_ndcg,
                          p.popular_recent_ndcg, best > 0 ? p.project_ndcg / best : 0);
  }
  return out;
}

void ScoreContextPage(Stub* stub, v1::Placement placement, const std::string& customer_id,
                      const std::string& shop_customer, const ContextPage& page,
                      const Baselines& baselines, int top_k, CutoffScores::ContextScores& scores) {
  v1::RecommendRequest req;
  req.set_customer_id(customer_id);
  req.set_placement(placement);
  for (const auto& sku : page.context) req.add_context_skus(sku);
  req.set_count(top_k);
  v1::RecommendResponse resp;
  Check(Call(stub, &Stub::Recommend, req, &resp), "Recommend (product page or cart)");
  std::vector<std::string> recs;
  for (const auto& r : resp.recommendations()) recs.push_back(r.item().sku());
  ++scores.pages;
  scores.project_ndcg += Ndcg(recs, page.truth, top_k).first;
  scores.item_knn_ndcg +=
      Ndcg(baselines.AlikeTo(shop_customer, page.context, top_k, /*cosine=*/true), page.truth,
           top_k)
          .first;
  scores.bought_with_ndcg +=
      Ndcg(baselines.AlikeTo(shop_customer, page.context, top_k, /*cosine=*/false), page.truth,
           top_k)
          .first;
  scores.popular_recent_ndcg +=
      Ndcg(baselines.PopularRecent(shop_customer, top_k), page.truth, top_k).first;
}

RollingReport EvaluateRollingOrigin(const Dataset& data, const RollingOptions& options) {
  if (options.cutoffs.empty()) throw std::invalid_argument("no cut-off given");
  for (size_t i = 0; i < options.cutoffs.size(); ++i) {
    const absl::Time cutoff = options.cutoffs[i];
    if ((i > 0 && cutoff <= options.cutoffs[i - 1]) || cutoff + options.horizon > data.end) {
      throw std::invalid_argument(
          absl::StrCat(absl::FormatTime("%Y-%m-%d", cutoff, absl::UTCTimeZone()),
                       " is out of order or has fewer than ", options.horizon / absl::Hours(24),
                       " days of data after it"));
    }
  }
  Harness service(ServiceOptions());
  auto stub = v1::RecommendationService::NewStub(service.channel());
  ShopImport shop(service.port());
  RollingReport report;
  report.dataset = data.name;
  const auto started = std::chrono::steady_clock::now();
  double load_seconds = 0;
  const std::map<std::string, std::string> category_of = LoadCatalog(stub.get(), data);
  std::vector<double> latencies_ms;
  for (const absl::Time cutoff : options.cutoffs) {
    // Only what happened since the previous cut-off: the services keep what they learned.
    const auto loading = std::chrono::steady_clock::now();
    shop.ImportUntil(data, category_of, cutoff);
    load_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - loading).count();
    service.clock().Set(cutoff);
    // As the service runs: once the history's deliveries end, the neighbour lists are rebuilt from
    // the counts (a changed tenth of the pairs, learning quiet for 2 s); scoring waits for it.
    WaitNeighbourRebuild(service);

    // Truth: items bought within the horizon that the customer had not bought before the cut-off.
    HeldOut held_out = HeldOutAfter(data, cutoff, cutoff + options.horizon, options.max_customers);
    auto& before = held_out.before;
    auto& after = held_out.after;
    const auto& chosen = held_out.chosen;

    const Baselines baselines(data, cutoff, absl::Hours(24 * 30));
    const std::map<std::string, ContextPage> pages =
        ContextPagesAfter(data, cutoff, cutoff + options.horizon, before, 1);
    const std::map<std::string, ContextPage> carts =
        ContextPagesAfter(data, cutoff, cutoff + options.horizon, before, 2);
    CutoffScores row;
    row.cutoff = cutoff;
    row.customers = static_cast<int>(chosen.size());
    row.by_history = HistoryBands();
    int already_bought = 0, slots = 0;
    for (const auto& [hash, customer] : chosen) {
      const std::set<std::string>& truth = after[customer];
      v1::RecommendRequest req;
      req.set_customer_id(shop.CustomerId(customer));
      req.set_placement(v1::PLACEMENT_HOME);
      req.set_count(options.top_k);
      v1::RecommendResponse resp;
      const auto asked = std::chrono::steady_clock::now();
      Check(Call(stub.get(), &Stub::Recommend, req, &resp), "Recommend");
      latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - asked)
              .count());
      std::vector<std::string> recs;
      for (const auto& r : resp.recommendations()) {
        recs.push_back(r.item().sku());
        ++slots;
        already_bought += before[customer].count(r.item().sku()) ? 1 : 0;
      }
      row.lists_fingerprint = sharding::StableHash64(
          absl::StrCat(row.lists_fingerprint, "|", customer, ":", absl::StrJoin(recs, ",")));
      const auto [ndcg, hit] = Ndcg(recs, truth, options.top_k);
      row.project_ndcg += ndcg;
      row.project_hit_rate += hit ? 1 : 0;
      row.popular_recent_ndcg +=
          Ndcg(baselines.PopularRecent(customer, options.top_k), truth, options.top_k).first;
      row.most_popular_ndcg +=
          Ndcg(baselines.MostPopular(customer, options.top_k), truth, options.top_k).first;
      const double item_knn =
          Ndcg(baselines.ItemKnn(customer, options.top_k), truth, options.top_k).first;
      row.item_knn_ndcg += item_knn;
      CutoffScores::HistoryBand& band = BandOf(row.by_history, before[customer].size());
      ++band.customers;
      band.project_ndcg += ndcg;
      band.item_knn_ndcg += item_knn;
      if (auto page = pages.find(customer); page != pages.end()) {
        ScoreContextPage(stub.get(), v1::PLACEMENT_PRODUCT_PAGE, shop.CustomerId(customer),
                         customer, page->second, baselines, options.top_k, row.product_page);
      }
      if (auto cart = carts.find(customer); cart != carts.end()) {
        ScoreContextPage(stub.get(), v1::PLACEMENT_CART, shop.CustomerId(customer), customer,
                         cart->second, baselines, options.top_k, row.cart);
      }
    }
    row.product_page.Average();
    row.cart.Average();
    for (auto& band : row.by_history) {
      band.project_ndcg /= std::max(1, band.customers);
      band.item_knn_ndcg /= std::max(1, band.customers);
    }
    const double n = std::max(1, row.customers);
    row.project_ndcg /= n;
    row.project_hit_rate /= n;
    row.popular_recent_ndcg /= n;
    row.most_popular_ndcg /= n;
    row.item_knn_ndcg /= n;
    row.project_already_bought_share = slots > 0 ? static_cast<double>(already_bought) / slots : 0;
    report.rows.push_back(row);
  }
  report.load_seconds = load_seconds;
  if (!latencies_ms.empty()) {
    std::sort(latencies_ms.begin(), latencies_ms.end());
    report.recommend_p50_ms = latencies_ms[latencies_ms.size() / 2];
    report.recommend_p99_ms =
        latencies_ms[std::min(latencies_ms.size() - 1, latencies_ms.size() * 99 / 100)];
  }
  report.total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace crm::eval
