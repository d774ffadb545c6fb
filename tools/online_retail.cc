#include "tools/online_retail.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/api/validate.h"

namespace crm::import {
namespace {

// What an imported order line may hold (order-tracking's limits).
constexpr int kMaxQuantity = 10000;
constexpr int kMaxLinesPerOrder = 1000;

struct CreditLine {
  std::string customer, credit_note, sku;
  absl::Time time;
  int quantity;
};

}  // namespace

std::vector<std::string> CsvFields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r' && c != '\n') {
      out.back() += c;
    }
  }
  return out;
}

bool IsProductCode(const std::string& stock_code) {
  if (stock_code.size() < 5) return false;
  for (int i = 0; i < 5; ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(stock_code[i]))) return false;
  }
  return true;
}

std::string CategoryOfDescription(const std::string& description) {
  // First match wins; words are matched whole.
  static const std::vector<std::pair<const char*, std::vector<const char*>>> kRules = {
      {"christmas",
       {"CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE", "BAUBLE", "NATIVITY"}},
      {"easter", {"EASTER", "CHICK", "CHICKS"}},
      {"jewellery",
       {"NECKLACE", "EARRINGS", "BRACELET", "RING", "CHARM", "BEAD", "BEADS", "DIAMANTE", "BLING",
        "HAIR", "BROOCH", "PENDANT"}},
      {"candles-and-lights",
       {"CANDLE", "CANDLES", "T-LIGHT", "T-LIGHTS", "TEALIGHT", "LANTERN", "LIGHT", "LIGHTS",
        "LAMP", "INCENSE"}},
      {"bags", {"BAG", "BAGS", "PURSE", "SHOPPER", "TOTE", "WASHBAG", "RUCKSACK"}},
      {"party",
       {"PARTY", "BIRTHDAY", "BUNTING", "BALLOON", "BALLOONS", "GARLAND", "NAPKINS", "CONFETTI"}},
      {"stationery",
       {"CARD",     "CARDS", "PAPER",    "WRAP",       "NOTEBOOK", "PENCIL",    "PENCILS",
        "PEN",      "PENS",  "STICKERS", "STICKER",    "ENVELOPE", "ENVELOPES", "TAPE",
        "CALENDAR", "BOOK",  "ERASER",   "STATIONERY", "RIBBON",   "RIBBONS"}},
      {"toys-and-kids",
       {"TOY",   "TOYS",    "DOLLY",     "DOLL",     "CHILDREN", "CHILDS",   "CHILDRENS",
        "KIDS",  "GAME",    "GAMES",     "PUZZLE",   "JIGSAW",   "SPACEBOY", "BABY",
        "TEDDY", "CRAYONS", "PLAYHOUSE", "SKIPPING", "DOMINOES", "SOLDIER",  "SOLDIERS"}},
      {"kitchen", {"MUG",      "MUGS",    "BOWL",     "BOWLS",   "CUP",    "CUPS",    "PLATE",
                   "PLATES",   "CUTLERY", "TEA",      "TEAPOT",  "CAKE",   "CAKES",   "BAKING",
                   "JAR",      "JARS",    "PANTRY",   "KITCHEN", "TRAY",   "TIN",     "TINS",
                   "APRON",    "JUG",     "SPOON",    "SPOONS",  "BOTTLE", "LUNCH",   "COASTER",
                   "COASTERS", "TEATIME", "CHOPPING", "BREAD",   "SUGAR",  "BEAKER",  "GLASS",
                   "GLASSES",  "SAUCER",  "EGG",      "COOKIE",  "CUTTER", "CUTTERS", "CASES"}},
      {"garden",
       {"GARDEN", "PLANT", "PLANTS", "WATERING", "BIRD", "BIRDS", "PLANTER", "HERB", "FLOWER",
        "FLOWERS", "POT", "POTS", "SEED", "SEEDS", "DOVE", "BUTTERFLY"}},
      {"home-decor",
       {"SIGN",   "FRAME",      "MIRROR",   "CLOCK",   "CUSHION", "DOORMAT", "HOOK",   "HOOKS",
        "HANGER", "HANGERS",    "DRAWER",   "STORAGE", "BOX",     "BOXES",   "HOLDER", "WALL",
        "TILE",   "DECORATION", "ORNAMENT", "HEART",   "VASE",    "BLANKET", "THROW",  "DOORSTOP",
        "MAGNET", "MAGNETS",    "CABINET",  "SHELF",   "BASKET"}},
  };
  std::set<std::string> words;
  for (absl::string_view w :
       absl::StrSplit(description, absl::ByAnyChar(" ,./"), absl::SkipEmpty())) {
    words.insert(absl::AsciiStrToUpper(w));
  }
  for (const auto& [category, keywords] : kRules) {
    for (const char* k : keywords) {
      if (words.count(k)) return category;
    }
  }
  return "other";
}

namespace {

// The export's lines folded into a shop's history: Add each data line, then Finish.
class HistoryBuilder {
 public:
  explicit HistoryBuilder(std::string currency) : currency_(std::move(currency)) {}

  // One line: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
  // Country. Guest, fee and unusable lines are counted and left out.
  void Add(const std::vector<std::string>& c) {
    ++history_.lines_read;
    if (c.size() < 8 || c[6].empty()) {
      ++history_.skipped.guest_lines;
      return;
    }
    if (!IsProductCode(c[1])) {
      ++history_.skipped.fee_lines;
      return;
    }
    int quantity = 0;
    double price = 0;
    absl::Time time;
    std::string err;
    const std::string customer = c[6].substr(0, c[6].find('.'));
    if (!absl::SimpleAtoi(c[3], &quantity) || !absl::SimpleAtod(c[5], &price) || price <= 0 ||
        quantity == 0 || std::abs(quantity) > kMaxQuantity ||
        !absl::ParseTime("%Y-%m-%d %H:%M:%S", c[4], absl::UTCTimeZone(), &time, &err) ||
        !api::RequiredId("id", customer).ok() || !api::RequiredId("id", c[0]).ok() ||
        !api::ValidateSku("sku", c[1]).ok()) {
      ++history_.skipped.unusable_lines;
      return;
    }
    const int64_t price_minor = std::llround(price * 100);
    const v1::CatalogItem& product = NoteProduct(c[1], c[2], price_minor, time);
    NoteCustomer(customer, time);
    const std::string& invoice = c[0];
    if (invoice[0] == 'C') {
      if (quantity < 0)
        credits_.push_back({customer, invoice, c[1], time, -quantity});
      else
        ++history_.skipped.unusable_lines;
      return;
    }
    if (quantity < 0) {
      ++history_.skipped.unusable_lines;
      return;
    }
    AddOrderLine(invoice, customer, product, quantity, price_minor, time);
  }

  ShopHistory Finish() && {
    for (auto& [sku, item] : catalog_) history_.catalog.push_back(std::move(item));
    for (auto& [invoice, order] : orders_)
      customers_[customer_of_[invoice]].orders.push_back(std::move(order));
    auto by_time = [](const auto& a, const auto& b) {
      return a.place_time().seconds() < b.place_time().seconds();
    };
    for (auto& [id, c] : customers_) std::stable_sort(c.orders.begin(), c.orders.end(), by_time);
    MatchCredits();
    for (auto& [id, c] : customers_) {
      std::stable_sort(c.returns.begin(), c.returns.end(), [](const auto& a, const auto& b) {
        return a.refund_time().seconds() < b.refund_time().seconds();
      });
      history_.customers.push_back(std::move(c));
    }
    return std::move(history_);
  }

 private:
  // The product as first seen (name, category, price), launched at its earliest line.
  const v1::CatalogItem& NoteProduct(const std::string& sku, const std::string& description,
                                     int64_t price_minor, absl::Time time) {
    auto [it, inserted] = catalog_.try_emplace(sku);
    if (inserted) {
      it->second.set_sku(sku);
      it->second.set_name(description.empty() ? sku : description);
      it->second.set_category(CategoryOfDescription(description));
      it->second.mutable_price()->set_amount_minor(price_minor);
      it->second.mutable_price()->set_currency(currency_);
      api::SetTimestamp(time, it->second.mutable_launch_time());
    } else if (api::FromTimestamp(it->second.launch_time()) > time) {
      api::SetTimestamp(time, it->second.mutable_launch_time());
    }
    return it->second;
  }

  void NoteCustomer(const std::string& customer, absl::Time time) {
    auto [who, first] = customers_.try_emplace(customer);
    if (first) {
      who->second.external_id = customer;
      who->second.first_seen = time;
    }
    who->second.first_seen = std::min(who->second.first_seen, time);
  }

  // A line of the invoice's order, at the line's own price.
  void AddOrderLine(const std::string& invoice, const std::string& customer,
                    const v1::CatalogItem& product, int quantity, int64_t price_minor,
                    absl::Time time) {
    v1::HistoricalOrder& o = orders_[invoice];
    if (o.external_order_id().empty()) {
      o.set_external_order_id(invoice);
      api::SetTimestamp(time, o.mutable_place_time());
      customer_of_[invoice] = customer;
    }
    if (o.items_size() == kMaxLinesPerOrder) {
      ++history_.skipped.lines_beyond_order_limit;
      return;
    }
    v1::OrderItem* item = o.add_items();
    item->set_sku(product.sku());
    item->set_name(product.name());
    item->set_category(product.category());
    item->set_quantity(quantity);
    item->mutable_unit_price()->set_amount_minor(price_minor);
    item->mutable_unit_price()->set_currency(currency_);
  }

  // Credit notes refund the latest earlier orders holding the item, never beyond what they hold.
  void MatchCredits() {
    std::map<std::pair<std::string, std::string>, int>
        left;  // (invoice, sku) -> units not returned
    for (const auto& [id, c] : customers_) {
      for (const auto& o : c.orders) {
        for (const auto& i : o.items()) left[{o.external_order_id(), i.sku()}] += i.quantity();
      }
    }
    std::stable_sort(credits_.begin(), credits_.end(),
                     [](const CreditLine& a, const CreditLine& b) { return a.time < b.time; });
    std::map<std::string, v1::HistoricalReturn> returns;  // "<credit note>:<invoice>"
    for (const CreditLine& credit : credits_) {
      ShopCustomer& c = customers_[credit.customer];
      int units = credit.quantity;
      for (auto o = c.orders.rbegin(); o != c.orders.rend() && units > 0; ++o) {
        if (api::FromTimestamp(o->place_time()) > credit.time) continue;
        int& available = left[{o->external_order_id(), credit.sku}];
        const int take = std::min(available, units);
        if (take <= 0) continue;
        available -= take;
        units -= take;
        const std::string id = absl::StrCat(credit.credit_note, ":", o->external_order_id());
        v1::HistoricalReturn& r = returns[id];
        if (r.external_return_id().empty()) {
          r.set_external_return_id(id);
          r.set_external_order_id(o->external_order_id());
          api::SetTimestamp(credit.time, r.mutable_refund_time());
        }
        v1::HistoricalReturnLine* line = r.add_lines();
        line->set_sku(credit.sku);
        line->set_quantity(take);
      }
      history_.skipped.unmatched_returned_units += units;
    }
    for (auto& [key, r] : returns)
      customers_[customer_of_[r.external_order_id()]].returns.push_back(std::move(r));
  }

  const std::string currency_;
  ShopHistory history_;
  std::map<std::string, v1::CatalogItem> catalog_;
  std::map<std::string, ShopCustomer> customers_;
  std::map<std::string, v1::HistoricalOrder> orders_;  // by invoice
  std::map<std::string, std::string> customer_of_;     // invoice -> customer
  std::vector<CreditLine> credits_;
};

}  // namespace

absl::StatusOr<ShopHistory> ReadOnlineRetail(const std::string& path, const std::string& currency) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain CSV as well
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  HistoryBuilder builder(currency);
  std::string line;
  char buffer[4096];
  int64_t line_number = 0;
  while (gzgets(f, buffer, sizeof buffer) != nullptr) {
    line += buffer;
    if (line.empty() || line.back() != '\n') continue;  // a longer line continues
    ++line_number;
    std::vector<std::string> fields = CsvFields(line);
    line.clear();
    if (line_number > 1) {
      builder.Add(fields);
    } else if (fields.size() < 8 || fields[0] != "InvoiceNo" || fields[6] != "CustomerID") {
      gzclose(f);
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          ":1: not an Online Retail export (expected the header InvoiceNo,StockCode,Description,"
          "Quantity,InvoiceDate,UnitPrice,CustomerID,Country)"));
    }
  }
  gzclose(f);
  return std::move(builder).Finish();
}

}  // namespace crm::import
