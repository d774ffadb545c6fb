#include "tests/eval/datasets.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/api/validate.h"
#include "libs/sharding/hash.h"

namespace crm::eval {
namespace {

const absl::TimeZone kUtc = absl::UTCTimeZone();

absl::Time Day(int y, int m, int d) { return absl::FromCivil(absl::CivilDay(y, m, d), kUtc); }

// Deterministic on every machine: no std:: distributions, whose algorithms vary by library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  double Uniform() { return static_cast<double>(g_() >> 11) * (1.0 / 9007199254740992.0); }
  int Int(int n) { return static_cast<int>(Uniform() * n); }
  bool Chance(double p) { return Uniform() < p; }
  absl::Time Between(absl::Time a, absl::Time b) { return a + (b - a) * Uniform(); }

 private:
  std::mt19937_64 g_;
};

// Ranks 0..n-1 with probability proportional to 1 / (rank + 1)^1.1.
class Zipf {
 public:
  explicit Zipf(int n) {
    double total = 0;
    for (int i = 0; i < n; ++i) cumulative_.push_back(total += 1.0 / std::pow(i + 1, 1.1));
    for (double& c : cumulative_) c /= total;
  }
  int Sample(Rng& rng) const {
    return static_cast<int>(
        std::lower_bound(cumulative_.begin(), cumulative_.end(), rng.Uniform()) -
        cumulative_.begin());
  }

 private:
  std::vector<double> cumulative_;
};

const char* const kCategoryNames[] = {"phones", "audio",  "kitchen", "toys",   "books", "beauty",
                                      "sports", "garden", "pets",    "office", "baby",  "games",
                                      "tools",  "travel", "music",   "crafts"};

void SortByTime(Dataset& d) {
  auto by_time = [](const auto& a, const auto& b) { return a.time < b.time; };
  std::stable_sort(d.orders.begin(), d.orders.end(), by_time);
  std::stable_sort(d.returns.begin(), d.returns.end(), by_time);
  std::stable_sort(d.views.begin(), d.views.end(), by_time);
}

}  // namespace

Dataset Synthetic(const SyntheticOptions& o) {
  Rng rng(o.seed);
  Dataset d;
  d.name = "synthetic";
  const absl::Time start = Day(2024, 1, 1);
  d.split = Day(2026, 10, 1);
  d.end = Day(2026, 10, 31);
  const int categories = std::clamp(o.categories, 4, 16);
  const int toys = 3;  // kCategoryNames[3]
  d.gift_category = kCategoryNames[toys];
  auto sku = [](int c, int i) { return absl::StrCat(kCategoryNames[c], "-", i); };
  for (int c = 0; c < categories; ++c) {
    for (int i = 0; i < o.items_per_category; ++i) {
      v1::CatalogItem item;
      item.set_sku(sku(c, i));
      item.set_name(absl::StrCat(kCategoryNames[c], " item ", i));
      item.set_category(kCategoryNames[c]);
      item.mutable_price()->set_amount_minor(1000 + 100 * i);
      item.mutable_price()->set_currency("CNY");
      api::SetTimestamp(start - absl::Hours(24), item.mutable_launch_time());
      d.catalog.push_back(std::move(item));
    }
  }
  // Upgrades: a newer model of 8 popular items, launched 20 days before the split.
  std::map<std::string, std::string> successor_of_item;
  for (int k = 0; k < 8; ++k) {
    const int c = (k % (categories - 1) >= toys) ? k % (categories - 1) + 1 : k % (categories - 1);
    const int rank = 8 + k;  // moderately popular items; their buyers are a minority
    const std::string old_sku = sku(c, std::min(o.items_per_category - 1, rank));
    v1::CatalogItem next;
    next.set_sku(old_sku + "-v2");
    next.set_name(absl::StrCat(kCategoryNames[c], " item ", rank, " mark II"));
    next.set_category(kCategoryNames[c]);
    next.set_successor_of(old_sku);
    api::SetTimestamp(d.split - absl::Hours(24 * 20), next.mutable_launch_time());
    d.catalog.push_back(next);
    d.upgrades.emplace_back(old_sku, next.sku());
    successor_of_item[old_sku] = next.sku();
  }
  // Complementary pairs: a popular anchor pulls in an unpopular companion from another category.
  std::map<std::string, std::string> companion_of;
  for (int k = 0; k < 24; ++k) {
    const int a = k % categories == toys ? (k + 1) % categories : k % categories;
    int b = (a + 1 + k % 3) % categories;
    if (b == toys) b = (b + 1) % categories;
    const std::string anchor = sku(a, k % 5 + 2);
    if (companion_of.count(anchor)) continue;
    const std::string companion = sku(b, std::min(o.items_per_category - 1, 20 + k % 15));
    companion_of[anchor] = companion;
    d.complementary_pairs.emplace_back(anchor, companion);
  }

  const Zipf in_category(o.items_per_category);
  int order_seq = 0;
  auto add_order = [&](const std::string& customer, absl::Time t, std::vector<std::string> skus) {
    Order order;
    order.customer_id = customer;
    order.order_id = absl::StrCat("o", ++order_seq);
    order.time = t;
    std::set<std::string> seen;
    for (auto& s : skus) {
      if (seen.insert(s).second) order.lines.push_back({s, 1});
    }
    d.orders.push_back(std::move(order));
  };
  for (int n = 0; n < o.customers; ++n) {
    const std::string customer = absl::StrCat("s", n);
    const bool gift_buyer = rng.Chance(0.15);
    std::vector<int> favourites;
    while (favourites.empty() || (favourites.size() < 2 && rng.Chance(0.5))) {
      int c = rng.Int(categories);
      if (c == toys && gift_buyer) continue;
      if (std::find(favourites.begin(), favourites.end(), c) == favourites.end())
        favourites.push_back(c);
    }
    auto pick = [&]() -> std::string {
      const double r = rng.Uniform();
      if (r < 0.1) return d.catalog[rng.Int(categories * o.items_per_category)].sku();  // noise
      const int c =
          r < 0.9 ? favourites[rng.Int(static_cast<int>(favourites.size()))] : rng.Int(categories);
      return sku(c, in_category.Sample(rng));
    };
    const int baskets = 1 + rng.Int(static_cast<int>(2 * o.baskets_per_customer));
    std::vector<std::string> bought_before_split;
    for (int b = 0; b < baskets; ++b) {
      const absl::Time t = rng.Between(start, d.end);
      std::vector<std::string> skus;
      const int picks = 1 + rng.Int(3);
      std::vector<std::string> later;
      for (int p = 0; p < picks; ++p) {
        std::string s = pick();
        // A companion goes in the same basket half the time, follows within weeks 30% of the time.
        if (auto it = companion_of.find(s); it != companion_of.end()) {
          const double r = rng.Uniform();
          if (r < 0.5)
            skus.push_back(it->second);
          else if (r < 0.8)
            later.push_back(it->second);
        }
        skus.push_back(std::move(s));
      }
      if (t < d.split)
        bought_before_split.insert(bought_before_split.end(), skus.begin(), skus.end());
      add_order(customer, t, std::move(skus));
      for (auto& companion : later) {
        const absl::Time t2 = t + absl::Hours(24 * (3 + rng.Int(38)));
        if (t2 >= d.end) continue;
        if (t2 < d.split) bought_before_split.push_back(companion);
        add_order(customer, t2, {std::move(companion)});
      }
    }
    if (gift_buyer) {
      d.gift_buyers.push_back(customer);
      for (int year : {2024, 2025, 2026}) {
        add_order(customer,
                  Day(year, 10, 5) + absl::Hours(24 * rng.Int(20)) + absl::Hours(rng.Int(12)),
                  {sku(toys, in_category.Sample(rng))});
      }
    }
    for (const auto& s : bought_before_split) {
      if (auto it = successor_of_item.find(s); it != successor_of_item.end() && rng.Chance(0.3)) {
        add_order(customer, rng.Between(d.split, d.end), {it->second});
      }
    }
    // Browsing, mostly in the favourite categories.
    const int views = 2 * baskets;
    for (int v = 0; v < views; ++v) {
      const int c = rng.Chance(0.85) ? favourites[rng.Int(static_cast<int>(favourites.size()))]
                                     : rng.Int(categories);
      d.views.push_back({customer, sku(c, in_category.Sample(rng)), kCategoryNames[c],
                         rng.Between(start, d.end), 5 + rng.Int(115)});
    }
  }
  // A few returns, five days after delivery.
  for (const auto& order : d.orders) {
    for (const auto& line : order.lines) {
      if (rng.Chance(0.03)) {
        d.returns.push_back(
            {order.customer_id, order.order_id, order.time + absl::Hours(24 * 5), {line}});
      }
    }
  }
  SortByTime(d);
  return d;
}

std::vector<absl::Time> MonthlyCutoffs(const Dataset& data, int count, absl::Duration horizon) {
  std::vector<absl::Time> cutoffs;
  if (data.orders.empty()) return cutoffs;
  const absl::Time first = data.orders.front().time;
  absl::CivilMonth month(absl::ToCivilSecond(data.end - horizon, kUtc));
  for (; static_cast<int>(cutoffs.size()) < count; --month) {
    const absl::Time t = absl::FromCivil(month, kUtc);
    if (t <= first) break;
    cutoffs.insert(cutoffs.begin(), t);
  }
  return cutoffs;
}

absl::Time FirstMonthAfter(const Dataset& data, absl::Duration history) {
  const absl::Time earliest = data.orders.front().time + history;
  const absl::CivilMonth month(absl::ToCivilSecond(earliest, kUtc));
  const absl::Time t = absl::FromCivil(month, kUtc);
  return t >= earliest ? t : absl::FromCivil(month + 1, kUtc);
}

absl::StatusOr<Dataset> OnlineRetail(const std::string& path, int sample_percent) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  Dataset d;
  d.name = sample_percent >= 100
               ? "online-retail"
               : absl::StrCat("online-retail (", sample_percent, "% of customers)");
  std::map<std::string, v1::CatalogItem> catalog;
  std::map<std::string, Order> orders;  // by invoice
  struct ReturnLine {
    std::string customer_id, invoice, sku;
    absl::Time time;
    int quantity;
    int64_t unit_price_minor;
  };
  std::vector<ReturnLine> return_lines;
  std::string line;
  char buffer[4096];
  bool header = true;
  while (gzgets(f, buffer, sizeof buffer) != nullptr) {
    line += buffer;
    if (line.empty() || line.back() != '\n') continue;  // a longer line continues
    std::vector<std::string> c = import::CsvFields(line);
    line.clear();
    if (header) {
      header = false;
      continue;
    }
    if (c.size() < 8 || c[6].empty() || !import::IsProductCode(c[1])) continue;
    const std::string customer = absl::StrCat("r", c[6].substr(0, c[6].find('.')));
    if (sharding::StableHash64(customer) % 100 >= static_cast<uint64_t>(sample_percent)) continue;
    int quantity = 0;
    double price = 0;
    absl::Time time;
    std::string err;
    if (!absl::SimpleAtoi(c[3], &quantity) || !absl::SimpleAtod(c[5], &price) || price <= 0 ||
        !absl::ParseTime("%Y-%m-%d %H:%M:%S", c[4], kUtc, &time, &err)) {
      continue;
    }
    const std::string& sku = c[1];
    auto [it, inserted] = catalog.try_emplace(sku);
    if (inserted) {
      it->second.set_sku(sku);
      it->second.set_name(c[2].empty() ? sku : c[2]);
      it->second.set_category(import::CategoryOfDescription(c[2]));
      it->second.mutable_price()->set_amount_minor(static_cast<int64_t>(std::llround(price * 100)));
      it->second.mutable_price()->set_currency("GBP");
      api::SetTimestamp(time, it->second.mutable_launch_time());
    } else if (api::FromTimestamp(it->second.launch_time()) > time) {
      api::SetTimestamp(time, it->second.mutable_launch_time());
    }
    const std::string& invoice = c[0];
    if (!invoice.empty() && invoice[0] == 'C') {
      if (quantity < 0)
        return_lines.push_back(
            {customer, invoice, sku, time, -quantity, std::llround(price * 100)});
      continue;
    }
    if (quantity <= 0) continue;
    Order& o = orders[invoice];
    if (o.order_id.empty()) {
      o.order_id = invoice;
      o.customer_id = customer;
      o.time = time;
    }
    o.lines.push_back({sku, quantity, std::llround(price * 100)});
  }
  gzclose(f);
  for (auto& [sku, item] : catalog) d.catalog.push_back(std::move(item));
  for (auto& [invoice, order] : orders) d.orders.push_back(std::move(order));
  SortByTime(d);
  // A return refunds the customer's latest earlier order that holds the item; returns of items
  // bought before the data starts have no order and are left out.
  std::map<std::string, std::vector<const Order*>> by_customer;
  for (const auto& o : d.orders) by_customer[o.customer_id].push_back(&o);
  std::map<std::pair<std::string, std::string>, Return>
      returns;  // (return invoice, order) -> return
  for (const auto& r : return_lines) {
    const auto& mine = by_customer[r.customer_id];
    for (auto it = mine.rbegin(); it != mine.rend(); ++it) {
      if ((*it)->time > r.time) continue;
      const auto& lines = (*it)->lines;
      if (std::none_of(lines.begin(), lines.end(), [&](const Line& l) { return l.sku == r.sku; }))
        continue;
      Return& ret = returns[{r.invoice, (*it)->order_id}];
      ret.customer_id = r.customer_id;
      ret.order_id = (*it)->order_id;
      ret.time = r.time;
      ret.lines.push_back({r.sku, r.quantity, r.unit_price_minor});
      break;
    }
  }
  for (auto& [key, r] : returns) d.returns.push_back(std::move(r));
  SortByTime(d);
  if (d.orders.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no orders"));
  // The data runs to the midnight after its last order; its last 30 days are held out.
  absl::Time last = d.orders.back().time;
  if (!d.returns.empty()) last = std::max(last, d.returns.back().time);
  d.end = absl::FromCivil(absl::CivilDay(absl::ToCivilSecond(last, kUtc)) + 1, kUtc);
  d.split = d.end - absl::Hours(24 * 30);
  return d;
}

}  // namespace crm::eval
