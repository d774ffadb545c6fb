#include "services/loyalty/loyalty_rules.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/text_format.h"
#include "libs/api/text_format.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::loyalty {
namespace {

const absl::TimeZone& Beijing() {
  static const absl::TimeZone tz = absl::FixedTimeZone(8 * 3600);
  return tz;
}

v1::TierRule Tier(v1::Tier tier, const char* name, int64_t min_growth, int64_t free_shipping_minor,
                  int32_t return_days, v1::AfterSalesPriority priority, bool install, bool hotline,
                  int32_t multiplier) {
  v1::TierRule t;
  t.set_tier(tier);
  t.set_name(name);
  t.set_min_growth(min_growth);
  auto* b = t.mutable_benefits();
  b->set_free_shipping_threshold_minor(free_shipping_minor);
  b->set_return_window_extension_days(return_days);
  b->set_after_sales_priority(priority);
  b->set_installation_service(install);
  b->set_vip_hotline(hotline);
  b->set_points_multiplier_percent(multiplier);
  return t;
}

int64_t RateFor(const google::protobuf::Map<std::string, int64_t>& rates, int64_t default_rate,
                const std::string& category) {
  auto it = rates.find(category);
  return it == rates.end() ? default_rate : it->second;
}

// ValidateRules' parts: the tiers from lowest to highest, the growth and points rates, the credit
// levels.
absl::Status ValidateTiers(const v1::LoyaltyRules& r) {
  if (r.tiers_size() == 0) return absl::InvalidArgumentError("tiers: at least one tier is needed");
  for (int i = 0; i < r.tiers_size(); ++i) {
    const auto& t = r.tiers(i);
    const std::string f = absl::StrCat("tiers[", i, "]");
    if (t.tier() == v1::TIER_UNSPECIFIED)
      return absl::InvalidArgumentError(f + ".tier: must be set");
    if (i == 0 && t.min_growth() != 0)
      return absl::InvalidArgumentError(f + ".min_growth: the first tier starts at 0");
    if (i > 0 &&
        (t.min_growth() <= r.tiers(i - 1).min_growth() || t.tier() <= r.tiers(i - 1).tier())) {
      return absl::InvalidArgumentError(
          f + ": tiers must be listed from lowest to highest with growing min_growth");
    }
    if (t.name().empty()) return absl::InvalidArgumentError(f + ".name: must not be empty");
    if (t.benefits().points_multiplier_percent() <= 0) {
      return absl::InvalidArgumentError(
          f + ".benefits.points_multiplier_percent: must be positive (100 = no change)");
    }
    if (t.benefits().free_shipping_threshold_minor() < 0 ||
        t.benefits().return_window_extension_days() < 0) {
      return absl::InvalidArgumentError(
          f + ".benefits: thresholds and extensions must not be negative");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRates(const v1::LoyaltyRules& r) {
  if (r.growth().window_days() < 1 || r.growth().window_days() > 3660) {
    return absl::InvalidArgumentError("growth.window_days: must be 1-3660");
  }
  for (const auto* rates :
       {&r.growth().category_rate_hundredths(), &r.points().category_rate_hundredths()}) {
    for (const auto& [category, rate] : *rates) {
      if (rate < 0)
        return absl::InvalidArgumentError(
            absl::StrCat("rate of category \"", category, "\": must not be negative"));
    }
  }
  if (r.growth().default_rate_hundredths() < 0 || r.points().default_rate_hundredths() < 0 ||
      r.growth().per_review() < 0 || r.growth().per_referral() < 0 || r.points().per_review() < 0 ||
      r.points().per_referral() < 0) {
    return absl::InvalidArgumentError(
        "growth/points: rates and per-action amounts must not be negative");
  }
  return absl::OkStatus();
}

absl::Status ValidateCredit(const v1::LoyaltyRules& r) {
  if (r.credit().level_thresholds_size() != 15) {
    return absl::InvalidArgumentError(
        "credit.level_thresholds: exactly 15 thresholds (hearts, diamonds, crowns)");
  }
  for (int i = 1; i < 15; ++i) {
    if (r.credit().level_thresholds(i) <= r.credit().level_thresholds(i - 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("credit.level_thresholds[", i, "]: thresholds must grow"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string TierName(v1::Tier tier) {
  switch (tier) {
    case v1::TIER_REGISTERED: return "Registered";
    case v1::TIER_BRONZE: return "Bronze";
    case v1::TIER_SILVER: return "Silver";
    case v1::TIER_GOLD: return "Gold";
    case v1::TIER_DIAMOND: return "Diamond";
    default: return "Unknown";
  }
}

v1::LoyaltyRules DefaultRules() {
  v1::LoyaltyRules r;
  using P = v1::AfterSalesPriority;
  *r.add_tiers() = Tier(v1::TIER_REGISTERED, "Registered", 0, 9900, 0,
                        P::AFTER_SALES_PRIORITY_STANDARD, false, false, 100);
  *r.add_tiers() = Tier(v1::TIER_BRONZE, "Bronze", 1, 7900, 0, P::AFTER_SALES_PRIORITY_STANDARD,
                        false, false, 100);
  *r.add_tiers() = Tier(v1::TIER_SILVER, "Silver", 2000, 5900, 3, P::AFTER_SALES_PRIORITY_PRIORITY,
                        false, false, 120);
  *r.add_tiers() = Tier(v1::TIER_GOLD, "Gold", 10000, 3900, 7, P::AFTER_SALES_PRIORITY_PRIORITY,
                        true, true, 150);
  *r.add_tiers() = Tier(v1::TIER_DIAMOND, "Diamond", 30000, 0, 15,
                        P::AFTER_SALES_PRIORITY_DEDICATED, true, true, 200);
  auto* g = r.mutable_growth();
  g->set_default_rate_hundredths(100);
  g->set_per_review(20);
  g->set_per_referral(100);
  g->set_window_days(365);
  auto* p = r.mutable_points();
  p->set_default_rate_hundredths(100);
  p->set_per_review(50);
  p->set_per_referral(200);
  p->set_expiry_rule(
      "points expire at 23:59:59 (Beijing time) on 31 December of the year after they were earned");
  for (int64_t t :
       {4, 11, 41, 91, 151, 251, 501, 1001, 2001, 5001, 10001, 20001, 50001, 100001, 200001}) {
    r.mutable_credit()->add_level_thresholds(t);
  }
  auto* e = r.mutable_enterprise();
  e->set_response_minutes(30);
  e->set_delivery_days(6);
  e->set_covered_cities(60);
  e->set_description(
      "a named agent answers within 30 minutes; delivery within 6 days in 60 cities; zero backlog");
  return r;
}

absl::Status ValidateRules(const v1::LoyaltyRules& r) {
  CRM_RETURN_IF_ERROR(ValidateTiers(r));
  CRM_RETURN_IF_ERROR(ValidateRates(r));
  return ValidateCredit(r);
}

absl::StatusOr<v1::LoyaltyRules> ParseRules(absl::string_view text) {
  v1::LoyaltyRules rules;
  google::protobuf::TextFormat::ParseInfoTree locations;
  CRM_RETURN_IF_ERROR(api::ParseTextProto("rules file", text, &rules, &locations));
  // A section the file leaves out keeps its built-in value; an unset multiplier means "no change".
  const v1::LoyaltyRules defaults = DefaultRules();
  if (rules.tiers().empty()) *rules.mutable_tiers() = defaults.tiers();
  if (!rules.has_growth()) *rules.mutable_growth() = defaults.growth();
  if (!rules.has_points()) *rules.mutable_points() = defaults.points();
  if (!rules.has_credit()) *rules.mutable_credit() = defaults.credit();
  if (!rules.has_enterprise()) *rules.mutable_enterprise() = defaults.enterprise();
  for (auto& t : *rules.mutable_tiers()) {
    if (t.benefits().points_multiplier_percent() == 0)
      t.mutable_benefits()->set_points_multiplier_percent(100);
  }
  absl::Status s = ValidateRules(rules);
  if (s.ok()) return rules;
  // Point at the line of the field the message names: "tiers[2]..." -> the third `tiers` block.
  int line = -1;
  const std::string msg(s.message());
  const auto* d = v1::LoyaltyRules::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (msg.rfind(f->name(), 0) != 0) continue;
    int index = 0;
    if (f->is_repeated() && msg.size() > f->name().size() && msg[f->name().size()] == '[') {
      index = std::atoi(msg.c_str() + f->name().size() + 1);
    }
    auto loc = locations.GetLocation(f, f->is_repeated() ? index : -1);
    if (loc.line >= 0) line = loc.line + 1;
  }
  return absl::InvalidArgumentError(line > 0 ? absl::StrCat("rules file: line ", line, ": ", msg)
                                             : absl::StrCat("rules file: ", msg));
}

const v1::TierRule& TierRuleFor(const v1::LoyaltyRules& rules, int64_t growth) {
  const v1::TierRule* best = &rules.tiers(0);
  for (const auto& t : rules.tiers()) {
    if (growth >= t.min_growth()) best = &t;
  }
  return *best;
}

const v1::TierRule* RuleOfTier(const v1::LoyaltyRules& rules, v1::Tier tier) {
  for (const auto& t : rules.tiers()) {
    if (t.tier() == tier) return &t;
  }
  return nullptr;
}

const v1::TierRule* NextTierRule(const v1::LoyaltyRules& rules, v1::Tier tier) {
  for (int i = 0; i + 1 < rules.tiers_size(); ++i) {
    if (rules.tiers(i).tier() == tier) return &rules.tiers(i + 1);
  }
  return nullptr;
}

int64_t GrowthForPurchase(const v1::LoyaltyRules& rules, const std::string& category,
                          int64_t amount_minor, std::string* rule) {
  const int64_t rate = RateFor(rules.growth().category_rate_hundredths(),
                               rules.growth().default_rate_hundredths(), category);
  const int64_t growth = static_cast<int64_t>(static_cast<__int128>(amount_minor) * rate / 10000);
  if (rule != nullptr) {
    *rule = absl::StrFormat("%s: %d.%02d growth per unit x %d.%02d = %d", category, rate / 100,
                            rate % 100, amount_minor / 100, amount_minor % 100, growth);
  }
  return growth;
}

int64_t PointsForPurchase(const v1::LoyaltyRules& rules, const std::string& category,
                          int64_t amount_minor, int32_t multiplier_percent, std::string* rule) {
  const int64_t rate = RateFor(rules.points().category_rate_hundredths(),
                               rules.points().default_rate_hundredths(), category);
  const int64_t points = static_cast<int64_t>(static_cast<__int128>(amount_minor) * rate *
                                              multiplier_percent / 1000000);
  if (rule != nullptr) {
    *rule = absl::StrFormat("%s: %d.%02d points per unit x %d.%02d x tier %d%% = %d", category,
                            rate / 100, rate % 100, amount_minor / 100, amount_minor % 100,
                            multiplier_percent, points);
  }
  return points;
}

absl::Time PointsExpiry(absl::Time earned) {
  const absl::CivilYear year = absl::ToCivilYear(earned, Beijing());
  return absl::FromCivil(absl::CivilSecond(year.year() + 2, 1, 1, 0, 0, 0), Beijing()) -
         absl::Seconds(1);
}

int64_t GrowthDay(absl::Time t) {
  return absl::ToCivilDay(t, Beijing()) - absl::CivilDay(1970, 1, 1);
}

absl::Time StartOfGrowthDay(int64_t day) {
  return absl::FromCivil(absl::CivilDay(1970, 1, 1) + day, Beijing());
}

int32_t CreditLevel(const v1::LoyaltyRules& rules, int64_t score) {
  int32_t level = 0;
  for (int i = 0; i < rules.credit().level_thresholds_size(); ++i) {
    if (score >= rules.credit().level_thresholds(i)) level = i + 1;
  }
  return level;
}

std::string CreditLevelName(int32_t level) {
  if (level <= 0) return "no level yet";
  static const char* kKinds[] = {"heart", "diamond", "crown"};
  const int kind = (level - 1) / 5;
  const int count = (level - 1) % 5 + 1;
  return absl::StrCat(count, " ", kKinds[std::min(kind, 2)], count > 1 ? "s" : "");
}

absl::StatusOr<v1::LoyaltyRules> ReadRulesFile(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(auto contents, text::ReadFile(path));
  auto rules = ParseRules(contents);
  if (!rules.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", rules.status().message()));
  return rules;
}

}  // namespace crm::loyalty
