// Benchmark of recommendation (issue "recommendation"): a catalog of 50k items, 1M interactions
// (purchases and item views) from 100k customers learned through the EventSink as producers deliver
// them (the incremental update throughput), then Recommend and RelatedItems latency on what was
// learned.
#include <atomic>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "libs/api/validate.h"
#include "tests/load/bench.h"
#include "tests/support/caller.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

constexpr int kCategories = 200;
constexpr int kEventsPerCall = 100;

// Items of a category, most popular first: item i of category c is "c<c>-<i>". Popularity is
// Zipfian.
struct Shop {
  int items = 0;
  int customers = 0;
  int per_category() const { return std::max(1, items / kCategories); }
  std::string Sku(int category, int rank) const { return absl::StrCat("c", category, "-", rank); }
  int Zipf(absl::BitGen& gen, int n) const {
    // Inverse-CDF of a continuous 1/x law on [1, n+1): cheap and heavy-headed enough.
    const double u = absl::Uniform(gen, 0.0, 1.0);
    return std::min(n - 1, static_cast<int>(std::exp(u * std::log(n + 1.0))) - 1);
  }
  // Most customers shop now and then; a thousand heavy buyers (wholesalers, fans) make a fifth of
  // all traffic, each with hundreds of interactions.
  int heavy_buyers() const { return std::min(customers, 1000); }
  int Customer(absl::BitGen& gen) const {
    if (absl::Bernoulli(gen, 0.2)) return absl::Uniform(gen, 0, heavy_buyers());
    return absl::Uniform(gen, 0, customers);
  }
  // A customer shops mostly in two categories of their own.
  int CategoryOf(int customer, absl::BitGen& gen) const {
    const double r = absl::Uniform(gen, 0.0, 1.0);
    if (r < 0.4) return customer % kCategories;
    if (r < 0.8) return (customer * 7 + 3) % kCategories;
    return absl::Uniform(gen, 0, kCategories);
  }
  std::string Pick(int customer, absl::BitGen& gen) const {
    return Sku(CategoryOf(customer, gen), Zipf(gen, per_category()));
  }
};

std::atomic<uint64_t> g_event_seq{0};
std::atomic<uint64_t> g_interactions{0};

// One producer batch: delivered orders (1-3 items) and browsing sessions (1-8 item views), half
// each.
std::string LearningBatch(const Shop& shop, absl::BitGen& gen) {
  v1::DeliverEventsRequest req;
  const absl::Time now = absl::Now();
  for (int k = 0; k < kEventsPerCall; ++k) {
    const uint64_t n = g_event_seq.fetch_add(1);
    const int customer = shop.Customer(gen);
    auto* e = req.add_events();
    e->set_event_id(absl::StrCat("bench/0/1.", n));
    e->set_customer_id(absl::StrCat("u", customer));
    const absl::Time t = now - absl::Seconds(absl::Uniform(gen, 0, 365 * 86400));
    api::SetTimestamp(t, e->mutable_occur_time());
    if (absl::Bernoulli(gen, 0.5)) {
      e->set_producer("order-tracking");
      auto* d = e->mutable_order_delivered();
      d->set_order_id(absl::StrCat("o", n));
      api::SetTimestamp(t, d->mutable_delivered_time());
      const int lines = absl::Uniform(gen, 1, 4);
      for (int i = 0; i < lines; ++i) {
        auto* item = d->add_items();
        item->set_item_id(std::to_string(i));
        item->set_sku(shop.Pick(customer, gen));
        item->set_quantity(1);
      }
      g_interactions += lines;
    } else {
      e->set_producer("customer-profile");
      const int views = absl::Uniform(gen, 1, 9);
      for (int i = 0; i < views; ++i) {
        auto* s = e->mutable_behavior_recorded()->add_signals();
        s->set_type("item_view");
        const int category = shop.CategoryOf(customer, gen);
        s->set_category(absl::StrCat("cat", category));
        s->set_sku(shop.Sku(category, shop.Zipf(gen, shop.per_category())));
        s->set_dwell_seconds(absl::Uniform(gen, 2, 120));
        api::SetTimestamp(t + absl::Seconds(30 * i), s->mutable_occur_time());
      }
      g_interactions += views;
    }
  }
  return req.SerializeAsString();
}

// The service rebuilds its neighbour lists by itself once learning goes quiet (2 s after the last
// delivery; a minute for a last burst smaller than a tenth of its pairs): waits for the first
// rebuild it logs after its first `mark` lines, so the calls timed next do not share the cores with
// it, and says how long it took (its log line's fields).
std::string AwaitOwnRebuild(testing::Process& reco, size_t mark) {
  const absl::Time started = absl::Now();
  const absl::StatusOr<std::string> line =
      reco.WaitForLogAfter(mark, "\"message\":\"neighbour lists rebuilt\"", absl::Seconds(90));
  if (!line.ok()) return "recommendation: no neighbour rebuild of its own within 90 s of learning";
  google::protobuf::Struct entry;
  (void)google::protobuf::util::JsonStringToMessage(*line, &entry);
  const auto number = [&entry](const char* name) {
    const auto it = entry.fields().find(name);
    return it == entry.fields().end() ? 0.0 : it->second.number_value();
  };
  return absl::StrFormat(
      "recommendation: rebuilt its neighbour lists by itself %.1f s after learning ended (%.0f "
      "items, %.0f item pairs, in %g s)",
      absl::ToDoubleSeconds(absl::Now() - started), number("items"), number("pairs"),
      number("seconds"));
}

}  // namespace

void RunRecommendationSuite(const BenchOptions& options, Report& report) {
  Shop shop;
  shop.items = options.reco_items;
  shop.customers = options.reco_customers;
  testing::TempDir dir;
  testing::Process reco(
      testing::Process::BuildPath("services/recommendation/recommendation"),
      {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + dir.Sub("recommendation")});
  StartServing(reco);
  const std::string target = absl::StrCat("127.0.0.1:", reco.port());

  // The catalog, 1000 items per call. Each category has eight families, each with a word of its
  // own in its items' names (as "LUNCH BAG" is), so items named alike has words to weigh; "Item"
  // names every item and is left out.
  static constexpr auto FamilyWord = [](int category, int i) {
    std::string word = "FAMILY";
    for (int family = category * 8 + (i / kCategories) % 8; family > 0; family /= 26) {
      word += static_cast<char>('A' + family % 26);
    }
    return word;
  };
  const int calls = (shop.items + 999) / 1000;
  Scenario catalog{"UpsertCatalogItems x1000",
                   {{"UpsertCatalogItems", "/crm.v1.RecommendationService/UpsertCatalogItems",
                     [shop](uint64_t index, absl::BitGen&) {
                       v1::UpsertCatalogItemsRequest req;
                       for (int i = static_cast<int>(index) * 1000;
                            i < std::min(shop.items, (static_cast<int>(index) + 1) * 1000); ++i) {
                         const int category = i % kCategories;
                         auto* item = req.add_items();
                         item->set_sku(shop.Sku(category, i / kCategories));
                         item->set_name(absl::StrCat("Item ", i, " ", FamilyWord(category, i)));
                         item->set_category(absl::StrCat("cat", category));
                       }
                       return req.SerializeAsString();
                     }}}};
  // Sequential: call `index` writes items [1000 index, 1000 index + 1000).
  LoadOptions setup = FillRun(1, calls);
  setup.channels = 1;
  const LoadResult upserted = RunLoad(MakeChannels(target, 1), catalog, setup);
  report.Note(absl::StrFormat("recommendation: %d catalog items upserted in %d calls, %d errors",
                              shop.items, calls, upserted.errors));

  // Learning: four producers' lanes delivering batches until the interactions are in.
  g_interactions = 0;
  const double per_event = 0.5 * 2 + 0.5 * 4.5;  // expected interactions per event
  LoadOptions learn;
  learn.concurrency = 4;
  learn.channels = 4;
  learn.warmup = absl::ZeroDuration();
  learn.duration = absl::Hours(2);
  learn.max_calls =
      static_cast<uint64_t>(std::ceil(options.reco_interactions / per_event / kEventsPerCall));
  Scenario learning{
      absl::StrFormat("learn: DeliverEvents x%d (orders, views), 4 lanes", kEventsPerCall),
      {{"DeliverEvents", "/crm.v1.EventSink/DeliverEvents",
        [shop](uint64_t, absl::BitGen& gen) { return LearningBatch(shop, gen); }}}};
  const Measurement learned = Measure(MakeChannels(target, 4), learning, learn, reco.pid());
  // Marked once learning ended: a long learning run may see rebuilds of its own (5 minutes into a
  // burst), and the one to wait for comes after it goes quiet.
  const size_t logged_while_learning = reco.log_lines();
  report.Add(learned);
  const double seconds = absl::ToDoubleSeconds(learned.result.measured);
  report.Note(absl::StrFormat(
      "recommendation: learned %llu interactions (%llu events) from %d customers over %d items in "
      "%.0f s: "
      "%.0f events/s, %.0f interactions/s",
      static_cast<unsigned long long>(g_interactions.load()),
      static_cast<unsigned long long>(learned.result.ok * kEventsPerCall), shop.customers,
      shop.items, seconds, learned.result.ok * kEventsPerCall / seconds,
      g_interactions.load() / seconds));
  report.Note(AwaitOwnRebuild(reco, logged_while_learning));

  // Recommend for a customer `pick` chooses (`as_traffic`: as the traffic comes, a fifth heavy
  // buyers).
  using Pick = std::function<int(absl::BitGen&)>;
  const Pick as_traffic = [shop](absl::BitGen& gen) { return shop.Customer(gen); };
  auto recommend = [shop](const std::string& name, v1::Placement placement, const Pick& pick) {
    return Scenario{name,
                    {{"Recommend", "/crm.v1.RecommendationService/Recommend",
                      [shop, placement, pick](uint64_t, absl::BitGen& gen) {
                        v1::RecommendRequest r;
                        const int customer = pick(gen);
                        r.set_customer_id(absl::StrCat("u", customer));
                        r.set_placement(placement);
                        r.set_count(10);
                        if (placement != v1::PLACEMENT_HOME)
                          r.add_context_skus(shop.Pick(customer, gen));
                        return r.SerializeAsString();
                      }}}};
  };
  LoadOptions o = options.load;
  o.concurrency = 16;
  const Measurement home =
      Measure(MakeChannels(target, o.channels),
              recommend("Recommend home, 10 items", v1::PLACEMENT_HOME, as_traffic), o, reco.pid());
  report.Add(home);
  // The latency a shopper sees when the service is not saturated: arrivals at half the rate it can
  // take, latency from each call's intended send time (open loop).
  LoadOptions half = o;
  half.mode = LoadOptions::Mode::kOpenLoop;
  half.rate_per_second = std::max(1.0, home.result.throughput() / 2);
  const Scenario at_half =
      recommend("Recommend home, open loop at half the max rate", v1::PLACEMENT_HOME, as_traffic);
  const Measurement first_window =
      Measure(MakeChannels(target, o.channels), at_half, half, reco.pid());
  report.Add(first_window, "Recommend home, 10 items");
  // One window's p99 moves several-fold between runs on a shared VM: two more windows at the same
  // rate show how far it moves within this run. Beside each, the p99 of how late the load generator
  // itself sent its calls: it shares the two cores, and latency counts from the intended send time.
  std::vector<absl::Duration> window_p99s = {first_window.result.latency.Percentile(99)};
  std::vector<absl::Duration> late_p99s = {first_window.result.send_lateness.Percentile(99)};
  for (int window = 2; window <= 3; ++window) {
    const LoadResult r = RunLoad(MakeChannels(target, o.channels), at_half, half);
    window_p99s.push_back(r.latency.Percentile(99));
    late_p99s.push_back(r.send_lateness.Percentile(99));
  }
  const auto in_ms = [](const std::vector<absl::Duration>& ds) {
    return absl::StrJoin(ds, " / ", [](std::string* out, absl::Duration d) {
      absl::StrAppendFormat(out, "%.1f", absl::ToDoubleMilliseconds(d));
    });
  };
  report.Note(absl::StrFormat(
      "recommendation: Recommend home at half the max rate (%.0f calls/s), p99 in three successive "
      "%.0f s windows: %s ms (the load generator's own send delay, p99: %s ms)",
      half.rate_per_second, absl::ToDoubleSeconds(half.duration), in_ms(window_p99s),
      in_ms(late_p99s)));
  // Where the tail comes from: a heavy buyer's call (60 seeds, thousands of candidates) against
  // everyone else's, one call at a time.
  for (const bool heavy : {true, false}) {
    if (!heavy && shop.customers <= shop.heavy_buyers()) break;
    const Pick pick = [shop, heavy](absl::BitGen& gen) {
      return heavy ? absl::Uniform(gen, 0, shop.heavy_buyers())
                   : absl::Uniform(gen, shop.heavy_buyers(), shop.customers);
    };
    LoadOptions one = o;
    one.concurrency = 1;
    report.Add(Measure(MakeChannels(target, 1),
                       recommend(heavy ? "Recommend home, heavy buyers, 1 in flight"
                                       : "Recommend home, others, 1 in flight",
                                 v1::PLACEMENT_HOME, pick),
                       one, reco.pid()));
  }
  report.Add(
      Measure(MakeChannels(target, o.channels),
              recommend("Recommend product page, 10 items", v1::PLACEMENT_PRODUCT_PAGE, as_traffic),
              o, reco.pid()));
  Scenario related{"RelatedItems, 10 items",
                   {{"RelatedItems", "/crm.v1.RecommendationService/RelatedItems",
                     [shop](uint64_t, absl::BitGen& gen) {
                       v1::RelatedItemsRequest r;
                       r.set_sku(shop.Sku(absl::Uniform(gen, 0, kCategories),
                                          shop.Zipf(gen, shop.per_category())));
                       r.set_count(10);
                       return r.SerializeAsString();
                     }}}};
  report.Add(Measure(MakeChannels(target, o.channels), related, o, reco.pid()));
  // Last, so it changes none of the lists measured above: what the import runbook's rebuild costs
  // at this size.
  auto admin = v1::RecommendationService::NewStub(
      testing::ChannelAs(target, testing::ViaGateway(v1::ROLE_ADMIN, "crm-bench")));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::RebuildItemNeighboursResponse rebuilt;
  const absl::Time started = absl::Now();
  const grpc::Status s =
      admin->RebuildItemNeighbours(&ctx, v1::RebuildItemNeighboursRequest(), &rebuilt);
  report.Note(s.ok() ? absl::StrFormat(
                           "recommendation: RebuildItemNeighbours rewrote %d lists from %d item "
                           "pairs in %.1f s",
                           rebuilt.items(), rebuilt.pairs(),
                           absl::ToDoubleSeconds(absl::Now() - started))
                     : "recommendation: RebuildItemNeighbours failed: " + s.error_message());
  reco.Stop();
}

}  // namespace crm::load
