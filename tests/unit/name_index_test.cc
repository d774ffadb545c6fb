// Items named alike (services/recommendation/name_index.h): which words count, rare words weighing
// most, renames, the order items came in, and the words too common to read.
#include "services/recommendation/name_index.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"

namespace crm::recommendation {
namespace {

const absl::Time kThen = absl::FromUnixSeconds(1'800'000'000);

std::vector<std::string> Skus(const std::vector<NameIndex::Alike>& alike) {
  std::vector<std::string> skus;
  for (const auto& a : alike) skus.push_back(a.sku);
  return skus;
}

// A shop's catalog with two families (lunch bags, cake cases) sharing colours and prints.
void Stock(NameIndex& index) {
  const std::vector<std::pair<std::string, std::string>> items = {
      {"20725", "LUNCH BAG RED RETROSPOT"},
      {"20727", "LUNCH BAG BLACK SKULL"},
      {"20728", "LUNCH BAG CARS BLUE"},
      {"22382", "LUNCH BAG SPACEBOY DESIGN"},
      {"21212", "PACK OF 72 RETROSPOT CAKE CASES"},
      {"21213", "PACK OF 72 SKULL CAKE CASES"},
      {"84991", "60 TEATIME FAIRY CAKE CASES"},
      {"85099B", "JUMBO BAG RED RETROSPOT"},
      {"22423", "REGENCY CAKESTAND 3 TIER"},
      {"POST", "POSTAGE"}};
  for (const auto& [sku, name] : items) index.Put(sku, name, kThen);
}

TEST_CASE(
    "name words are ASCII words of three letters or more, case-folded, and pairs of other "
    "characters",
    "[recommendation][names]") {
  CHECK(NameWords("Pack of 72 Retrospot cake-cases") ==
        std::vector<std::string>{"CAKE", "CASES", "PACK", "RETROSPOT"});
  CHECK(NameWords("XL t-shirt, 2 pcs") == std::vector<std::string>{"PCS", "SHIRT"});
  CHECK(NameWords("").empty());
  CHECK(NameWords("72 12 5").empty());
  // Chinese does not separate words: each pair of neighbouring characters is one.
  CHECK(NameWords("午餐袋 红色") == std::vector<std::string>{"午餐", "红色", "餐袋"});
  CHECK(NameWords("袋") == std::vector<std::string>{"袋"});
  // Mixed scripts split where the script changes.
  CHECK(NameWords("LUNCH BAG午餐袋") == std::vector<std::string>{"BAG", "LUNCH", "午餐", "餐袋"});
}

TEST_CASE("items named like a seed share its words, the one sharing most first",
          "[recommendation][names]") {
  NameIndex index;
  Stock(index);
  const std::vector<std::string> seeds = {"20725"};
  const auto alike = index.NamedLike(seeds, {}, 10);
  // The jumbo bag shares three of the four words; every other bag and the retrospot cases share
  // some; the cake stand and the postage share none.
  REQUIRE(alike.size() == 5);
  CHECK(alike[0].sku == "85099B");
  const std::vector<std::string> skus = Skus(alike);
  for (const char* sku : {"20727", "20728", "22382", "21212", "21213"}) {
    CHECK(std::count(skus.begin(), skus.end(), sku) == (std::string(sku) == "21213" ? 0 : 1));
  }
  for (const auto& a : alike) {
    CHECK(a.sku != "20725");  // never a seed
    CHECK(a.closest_seed == "20725");
    CHECK(a.similarity > 0);
    CHECK(a.similarity <= 1.0 + 1e-9);  // a cosine, one seed
  }
  // Best first, equal ones by SKU.
  for (size_t i = 1; i < alike.size(); ++i) {
    CHECK((alike[i - 1].similarity > alike[i].similarity ||
           (alike[i - 1].similarity == alike[i].similarity && alike[i - 1].sku < alike[i].sku)));
  }
}

TEST_CASE("a rarer shared word makes an item more alike", "[recommendation][names]") {
  NameIndex index;
  index.Put("seed", "OWL MUG", kThen);
  index.Put("owl", "OWL CUSHION", kThen);  // shares the rare word
  for (int i = 0; i < 5; ++i) index.Put(absl::StrCat("mug-", i), absl::StrCat("MUG ", i), kThen);
  index.Put("plate", "PLATE", kThen);
  const std::vector<std::string> seeds = {"seed"};
  const auto alike = index.NamedLike(seeds, {}, 10);
  REQUIRE(alike.size() == 6);
  CHECK(alike[0].sku == "owl");
  CHECK(alike[0].similarity > 2 * alike[1].similarity);
}

TEST_CASE("items named like several seeds sum their likeness and name the closest seed",
          "[recommendation][names]") {
  NameIndex index;
  Stock(index);
  const std::vector<std::string> seeds = {"20727", "21212"};  // a skull lunch bag, retrospot cases
  const auto alike = index.NamedLike(seeds, {"20728"}, 3);
  REQUIRE(alike.size() == 3);
  // The skull cake cases are like both seeds (SKULL with one, PACK CAKE CASES with the other).
  CHECK(alike[0].sku == "21213");
  CHECK(alike[0].closest_seed == "21212");
  for (const auto& a : alike) CHECK(a.sku != "20728");  // left out
  CHECK(index.NamedLike(seeds, {}, 0).empty());
  CHECK(index.NamedLike(std::vector<std::string>{"unknown"}, {}, 5).empty());
}

TEST_CASE("a renamed item moves to its new family, and an older write is ignored",
          "[recommendation][names]") {
  NameIndex index;
  Stock(index);
  const std::vector<std::string> seeds = {"20725"};
  index.Put("22423", "LUNCH BOX CAKESTAND", kThen + absl::Seconds(1));
  CHECK(Skus(index.NamedLike(seeds, {}, 10)).end() !=
        std::find(Skus(index.NamedLike(seeds, {}, 10)).begin(),
                  Skus(index.NamedLike(seeds, {}, 10)).end(), "22423"));
  // The write before the rename, reaching the index late, changes nothing.
  index.Put("22423", "REGENCY CAKESTAND 3 TIER", kThen);
  const auto late = Skus(index.NamedLike(seeds, {}, 10));
  CHECK(std::find(late.begin(), late.end(), "22423") != late.end());
  index.Put("22423", "REGENCY CAKESTAND 3 TIER", kThen + absl::Seconds(2));
  const auto back = Skus(index.NamedLike(seeds, {}, 10));
  CHECK(std::find(back.begin(), back.end(), "22423") == back.end());
  CHECK(index.size() == 10);
}

TEST_CASE("the items named alike do not depend on the order the catalog came in",
          "[recommendation][names]") {
  NameIndex forward, backward;
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 60; ++i) {
    items.emplace_back(
        absl::StrCat("sku-", i),
        absl::StrCat(i % 3 ? "LUNCH BAG " : "CAKE CASES ",
                     i % 4 ? "RED RETROSPOT" : "BLUE POLKADOT", i % 5 ? "" : " SKULL"));
  }
  for (const auto& [sku, name] : items) forward.Put(sku, name, kThen);
  for (auto it = items.rbegin(); it != items.rend(); ++it)
    backward.Put(it->first, it->second, kThen);
  const std::vector<std::string> seeds = {"sku-5", "sku-12", "sku-1"};
  const auto a = forward.NamedLike(seeds, {}, 20);
  const auto b = backward.NamedLike(seeds, {}, 20);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].sku == b[i].sku);
    CHECK(a[i].similarity == b[i].similarity);  // to the last bit
    CHECK(a[i].closest_seed == b[i].closest_seed);
  }
}

TEST_CASE("the bytes the index holds, kept as it changes, are what walking it counts",
          "[recommendation][names]") {
  NameIndex index;
  CHECK(index.bytes() == index.CountBytes());
  for (int i = 0; i < 3000; ++i) {
    // Long SKUs and words too, whose strings are on the heap.
    index.Put(absl::StrCat(i % 7 ? "sku-" : "a-rather-long-stock-keeping-unit-", i),
              absl::StrCat("LUNCH BAG ", i % 5 ? "RED " : "EXTRAORDINARILYLONGWORD ", "N",
                           std::string(1, static_cast<char>('A' + i % 26)),
                           std::string(1, static_cast<char>('A' + i / 26 % 26))),
              kThen);
  }
  CHECK(index.bytes() == index.CountBytes());
  const size_t before = index.bytes();
  // Renamed into other words, and a late write ignored.
  for (int i = 0; i < 3000; i += 3) {
    index.Put(absl::StrCat(i % 7 ? "sku-" : "a-rather-long-stock-keeping-unit-", i),
              absl::StrCat("CAKE CASES PRINT", std::string(1, static_cast<char>('A' + i % 26))),
              kThen + absl::Seconds(1));
  }
  index.Put("sku-1", "SOMETHING OLDER", kThen - absl::Seconds(1));
  CHECK(index.bytes() == index.CountBytes());
  CHECK(index.bytes() >= before);  // nothing is given back: lists keep their capacity
  CHECK(index.bytes() > 3000 * 50);
}

TEST_CASE("a word naming more items than the limit ties nothing together",
          "[recommendation][names]") {
  NameIndex index;
  // One more "MUG" than the limit, and a pair that also shares a rare word.
  for (size_t i = 0; i <= NameIndex::kMaxItemsPerWord; ++i) {
    index.Put(absl::StrCat("mug-", i), absl::StrCat("MUG ", i), kThen);
  }
  index.Put("a", "MUG OWL", kThen);
  index.Put("b", "MUG OWL", kThen);
  const std::vector<std::string> seeds = {"mug-0"};
  CHECK(index.NamedLike(seeds, {}, 10).empty());
  const std::vector<std::string> owl = {"a"};
  CHECK(Skus(index.NamedLike(owl, {}, 10)) == std::vector<std::string>{"b"});
}

}  // namespace
}  // namespace crm::recommendation
