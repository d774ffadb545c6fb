#include "services/loyalty/loyalty_rules.h"

#include "catch2/catch.hpp"
#include "google/protobuf/text_format.h"
#include "libs/api/validate.h"
#include "services/loyalty/membership.h"
#include "tests/support/source_files.h"

namespace crm::loyalty {
namespace {

const absl::TimeZone kBeijing = absl::FixedTimeZone(8 * 3600);
absl::Time Beijing(int y, int m, int d, int h = 12) {
  return absl::FromCivil(absl::CivilSecond(y, m, d, h, 0, 0), kBeijing);
}

TEST_CASE("tiers start exactly at their growth thresholds", "[loyalty][rules]") {
  const auto rules = DefaultRules();
  const std::vector<std::pair<int64_t, v1::Tier>> cases = {
      {0, v1::TIER_REGISTERED}, {1, v1::TIER_BRONZE},     {1999, v1::TIER_BRONZE},
      {2000, v1::TIER_SILVER},  {9999, v1::TIER_SILVER},  {10000, v1::TIER_GOLD},
      {29999, v1::TIER_GOLD},   {30000, v1::TIER_DIAMOND}};
  for (const auto& [growth, tier] : cases) {
    INFO(growth);
    CHECK(TierRuleFor(rules, growth).tier() == tier);
  }
  CHECK(NextTierRule(rules, v1::TIER_GOLD)->tier() == v1::TIER_DIAMOND);
  CHECK(NextTierRule(rules, v1::TIER_DIAMOND) == nullptr);
}

TEST_CASE("growth and points follow the category rates and the tier multiplier, spelled out",
          "[loyalty][rules]") {
  auto rules = DefaultRules();
  (*rules.mutable_growth()->mutable_category_rate_hundredths())["phones"] = 150;
  (*rules.mutable_points()->mutable_category_rate_hundredths())["books"] = 300;
  std::string rule;
  CHECK(GrowthForPurchase(rules, "phones", 39900, &rule) == 598);  // 399.00 x 1.5
  CHECK(rule == "phones: 1.50 growth per unit x 399.00 = 598");
  CHECK(GrowthForPurchase(rules, "toys", 12345, nullptr) == 123);  // default 1.00, floor
  CHECK(PointsForPurchase(rules, "books", 5000, 100, nullptr) == 150);
  CHECK(PointsForPurchase(rules, "books", 5000, 150, &rule) == 225);
  CHECK(rule == "books: 3.00 points per unit x 50.00 x tier 150% = 225");
}

TEST_CASE("points expire at the end of the year after they were earned, Beijing time",
          "[loyalty][rules]") {
  CHECK(PointsExpiry(Beijing(2025, 3, 1)) ==
        absl::FromCivil(absl::CivilSecond(2026, 12, 31, 23, 59, 59), kBeijing));
  // 2025-12-31 20:00 UTC is already 2026 in Beijing.
  CHECK(PointsExpiry(
            absl::FromCivil(absl::CivilSecond(2025, 12, 31, 20, 0, 0), absl::UTCTimeZone())) ==
        absl::FromCivil(absl::CivilSecond(2027, 12, 31, 23, 59, 59), kBeijing));
}

TEST_CASE("credit levels start at Taobao's thresholds: hearts, diamonds, crowns",
          "[loyalty][credit]") {
  const auto rules = DefaultRules();
  const std::vector<std::tuple<int64_t, int, std::string>> cases = {
      {-5, 0, "no level yet"},  {3, 0, "no level yet"},    {4, 1, "1 heart"},
      {10, 1, "1 heart"},       {11, 2, "2 hearts"},       {250, 5, "5 hearts"},
      {251, 6, "1 diamond"},    {10000, 10, "5 diamonds"}, {10001, 11, "1 crown"},
      {200000, 14, "4 crowns"}, {200001, 15, "5 crowns"}};
  for (const auto& [score, level, name] : cases) {
    INFO(score);
    CHECK(CreditLevel(rules, score) == level);
    CHECK(CreditLevelName(CreditLevel(rules, score)) == name);
  }
}

TEST_CASE("the rules file parses, and a bad one is refused naming its line", "[loyalty][rules]") {
  std::string text;
  REQUIRE(google::protobuf::TextFormat::PrintToString(DefaultRules(), &text));
  auto parsed = ParseRules(text);
  REQUIRE(parsed.ok());
  CHECK(parsed->tiers_size() == 5);

  const auto syntax = ParseRules(
      "tiers {\n  tier: TIER_REGISTERED\n  name: \"Registered\"\n  min_growth: lots\n}\n");
  REQUIRE_FALSE(syntax.ok());
  CHECK(syntax.status().message().find("line 4") != absl::string_view::npos);

  auto bad = DefaultRules();
  bad.mutable_tiers(2)->set_min_growth(1);  // silver below bronze
  REQUIRE(google::protobuf::TextFormat::PrintToString(bad, &text));
  const auto semantic = ParseRules(text);
  REQUIRE_FALSE(semantic.ok());
  INFO(semantic.status().message());
  CHECK(semantic.status().message().find("tiers[2]") != absl::string_view::npos);
  CHECK(semantic.status().message().find("line ") != absl::string_view::npos);
  auto few = DefaultRules();
  few.mutable_credit()->mutable_level_thresholds()->RemoveLast();
  CHECK_FALSE(ValidateRules(few).ok());
}

TEST_CASE("growth counts over a rolling window of days", "[loyalty][growth]") {
  internal::LoyaltyAccount a;
  const absl::Time t0 = Beijing(2026, 1, 10);
  AddGrowth(a, GrowthDay(t0), 500);
  AddGrowth(a, GrowthDay(t0 + absl::Hours(24 * 100)), 300);
  CHECK(RollingGrowth(a, t0, 365) == 500);
  CHECK(RollingGrowth(a, t0 + absl::Hours(24 * 100), 365) == 800);
  CHECK(RollingGrowth(a, t0 + absl::Hours(24 * 364), 365) == 800);
  CHECK(RollingGrowth(a, t0 + absl::Hours(24 * 365), 365) == 300);  // the first day left the window
  DropGrowthOutsideWindow(a, t0 + absl::Hours(24 * 365), 365);
  CHECK(a.growth_by_day_size() == 1);
}

TEST_CASE("a downgrade is projected for the day growth leaves the window", "[loyalty][growth]") {
  const auto rules = DefaultRules();
  internal::LoyaltyAccount a;
  const absl::Time t0 = Beijing(2026, 1, 10);
  AddGrowth(a, GrowthDay(t0), 1500);
  AddGrowth(a, GrowthDay(t0 + absl::Hours(24 * 30)), 600);  // silver: 2100
  const auto down = ProjectDowngrade(a, rules, t0 + absl::Hours(24 * 40));
  REQUIRE(down.has_value());
  CHECK(down->tier == v1::TIER_BRONZE);
  CHECK(down->when == StartOfGrowthDay(GrowthDay(t0) + 365));
}

TEST_CASE("points: spent and expired oldest first, balance never negative", "[loyalty][ledger]") {
  internal::LoyaltyAccount a;
  a.set_next_sequence(1);
  Lots lots;
  EarnPoints(a, lots, 100, v1::POINTS_SOURCE_PURCHASE, "order:o1", "o1", "", "",
             Beijing(2025, 5, 1));
  EarnPoints(a, lots, 50, v1::POINTS_SOURCE_REVIEW, "review:r1", "", "", "", Beijing(2026, 2, 1));
  CHECK(a.points_balance() == 150);
  CHECK(absl::IsFailedPrecondition(
      SpendPoints(a, lots, 151, "redeem:x", "", Beijing(2026, 3, 1)).status()));
  CHECK(a.points_balance() == 150);
  REQUIRE(SpendPoints(a, lots, 80, "redeem:y", "", Beijing(2026, 3, 1)).ok());
  CHECK(lots[0].remaining() == 20);  // from the 2025 lot, which expires first
  const auto expired = ExpirePoints(a, lots, Beijing(2027, 1, 2));
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].points() == -20);
  CHECK(ExpirePoints(a, lots, Beijing(2027, 1, 3)).empty());  // nothing twice
  CHECK(a.points_balance() == 50);
}

TEST_CASE("a refund takes back what its order earned, what was spent is owed and settled later",
          "[loyalty][ledger]") {
  internal::LoyaltyAccount a;
  a.set_next_sequence(1);
  Lots lots;
  const absl::Time t = Beijing(2026, 3, 1);
  EarnPoints(a, lots, 100, v1::POINTS_SOURCE_PURCHASE, "order:o1", "o1", "", "", t);
  REQUIRE(SpendPoints(a, lots, 70, "redeem:a", "", t).ok());
  const auto rev = ReversePoints(a, lots, 100, t, "o1", "refund:r1", t);
  CHECK(rev[0].points() == -30);
  CHECK(a.points_balance() == 0);
  CHECK(PointsOwed(a) == 70);
  const auto earn = EarnPoints(a, lots, 50, v1::POINTS_SOURCE_REVIEW, "review:1", "", "", "", t);
  REQUIRE(earn.size() == 2);
  CHECK(earn[1].type() == v1::POINTS_ENTRY_TYPE_SETTLE);
  CHECK(earn[1].points() == -50);
  CHECK(earn[1].order_id() == "o1");
  CHECK(PointsOwed(a) == 20);
  CHECK(a.points_balance() == 0);
}

TEST_CASE("partial refunds take back shares, and the last units the remainder, so all adds up",
          "[loyalty][ledger]") {
  internal::ItemGrant g;
  g.set_quantity(3);
  g.set_growth(100);
  g.set_points(10);
  const auto a = ReverseItem(g, 1);
  const auto b = ReverseItem(g, 1);
  const auto c = ReverseItem(g, 1);
  CHECK(a.growth == 33);
  CHECK(b.growth == 33);
  CHECK(c.growth == 34);
  CHECK(a.points + b.points + c.points == 10);
  CHECK(ReverseItem(g, 1).growth == 0);  // nothing left to take back
}

TEST_CASE("the shipped rules file parses and says what the built-in rules say",
          "[loyalty][rules]") {
  const auto text = testing::ReadSourceFile("deploy/config/loyalty-rules.textproto");
  REQUIRE(text.ok());
  auto rules = ParseRules(*text);
  INFO(rules.status().ToString());
  REQUIRE(rules.ok());
  CHECK(rules->SerializeAsString() == DefaultRules().SerializeAsString());
}

}  // namespace
}  // namespace crm::loyalty
