#include "services/loyalty/membership.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "services/loyalty/loyalty_rules.h"

namespace crm::loyalty {
namespace {

v1::LedgerEntry Entry(internal::LoyaltyAccount& account, v1::PointsEntryType type, int64_t points,
                      v1::PointsSource source, const std::string& source_id,
                      const std::string& order_id, const std::string& rule,
                      const std::string& description, absl::Time now) {
  v1::LedgerEntry e;
  e.set_entry_id(absl::StrCat("L", TakeSequence(account)));
  api::SetTimestamp(now, e.mutable_time());
  e.set_type(type);
  e.set_points(points);
  e.set_balance_after(account.points_balance());
  e.set_source(source);
  e.set_source_id(source_id);
  e.set_order_id(order_id);
  e.set_rule(rule);
  e.set_description(description);
  return e;
}

// Takes up to `points` from the lots, the one expiring at `first` (if any) before the ones that
// expire first. Returns what it took.
int64_t TakeFromLots(Lots& lots, int64_t points, std::optional<absl::Time> first) {
  int64_t taken = 0;
  auto take = [&](internal::PointsLot& lot) {
    const int64_t t = std::min(lot.remaining(), points - taken);
    lot.set_remaining(lot.remaining() - t);
    taken += t;
  };
  if (first.has_value()) {
    for (auto& lot : lots) {
      if (api::FromTimestamp(lot.expire_time()) == *first) take(lot);
    }
  }
  for (auto& lot : lots) {
    if (taken == points) break;
    take(lot);
  }
  return taken;
}

void SortLots(Lots& lots) {
  std::stable_sort(lots.begin(), lots.end(), [](const auto& a, const auto& b) {
    if (a.expire_time().seconds() != b.expire_time().seconds())
      return a.expire_time().seconds() < b.expire_time().seconds();
    return a.sequence() < b.sequence();
  });
}

}  // namespace

int64_t TakeSequence(internal::LoyaltyAccount& account) {
  const int64_t seq = account.next_sequence();
  account.set_next_sequence(seq + 1);
  return seq;
}

int64_t PointsOwed(const internal::LoyaltyAccount& account) {
  int64_t owed = 0;
  for (const auto& [order, points] : account.points_owed_by_order()) owed += points;
  return owed;
}

std::vector<v1::LedgerEntry> EarnPoints(internal::LoyaltyAccount& account, Lots& lots,
                                        int64_t points, v1::PointsSource source,
                                        const std::string& source_id, const std::string& order_id,
                                        const std::string& rule, const std::string& description,
                                        absl::Time now) {
  std::vector<v1::LedgerEntry> entries;
  const absl::Time expiry = PointsExpiry(now);
  internal::PointsLot* lot = nullptr;
  for (auto& l : lots) {
    if (api::FromTimestamp(l.expire_time()) == expiry) lot = &l;
  }
  if (lot == nullptr) {
    lots.emplace_back();
    lot = &lots.back();
    api::SetTimestamp(expiry, lot->mutable_expire_time());
    lot->set_sequence(account.next_sequence());
  }
  lot->set_earned(lot->earned() + points);
  lot->set_remaining(lot->remaining() + points);
  account.set_points_balance(account.points_balance() + points);
  v1::LedgerEntry earn = Entry(account, v1::POINTS_ENTRY_TYPE_EARN, points, source, source_id,
                               order_id, rule, description, now);
  *earn.mutable_expire_time() = lot->expire_time();
  entries.push_back(std::move(earn));
  int64_t unsettled = points;  // what this earning may still settle
  // Settle what refunds could not take back earlier, oldest debt first (map order is by order id;
  // any fixed order will do, the total is what matters).
  auto& owed = *account.mutable_points_owed_by_order();
  std::vector<std::string> settled;
  for (auto& [owing_order, amount] : owed) {
    if (unsettled == 0) break;
    const int64_t s = std::min(amount, unsettled);
    lot->set_remaining(lot->remaining() - s);
    unsettled -= s;
    amount -= s;
    account.set_points_balance(account.points_balance() - s);
    entries.push_back(Entry(account, v1::POINTS_ENTRY_TYPE_SETTLE, -s, v1::POINTS_SOURCE_REFUND,
                            absl::StrCat("settle:", owing_order, ":", source_id), owing_order, "",
                            "points owed after a refund, settled from new earnings", now));
    if (amount == 0) settled.push_back(owing_order);
  }
  for (const auto& o : settled) owed.erase(o);
  SortLots(lots);
  return entries;
}

absl::StatusOr<v1::LedgerEntry> SpendPoints(internal::LoyaltyAccount& account, Lots& lots,
                                            int64_t points, const std::string& source_id,
                                            const std::string& description, absl::Time now) {
  if (points > account.points_balance()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "points: the balance is ", account.points_balance(), ", not enough to redeem ", points));
  }
  TakeFromLots(lots, points, std::nullopt);
  account.set_points_balance(account.points_balance() - points);
  return Entry(account, v1::POINTS_ENTRY_TYPE_REDEEM, -points, v1::POINTS_SOURCE_REDEMPTION,
               source_id, "", "", description, now);
}

std::vector<v1::LedgerEntry> ReversePoints(internal::LoyaltyAccount& account, Lots& lots,
                                           int64_t points, absl::Time earned,
                                           const std::string& order_id,
                                           const std::string& source_id, absl::Time now) {
  std::vector<v1::LedgerEntry> entries;
  if (points <= 0) return entries;
  const int64_t taken = TakeFromLots(lots, points, PointsExpiry(earned));
  account.set_points_balance(account.points_balance() - taken);
  const int64_t owed = points - taken;
  if (owed > 0) (*account.mutable_points_owed_by_order())[order_id] += owed;
  entries.push_back(Entry(
      account, v1::POINTS_ENTRY_TYPE_REVERSE, -taken, v1::POINTS_SOURCE_REFUND, source_id, order_id,
      absl::StrCat("a refund takes back the ", points, " points its items earned"),
      owed > 0 ? absl::StrCat(owed, " of them were already spent and are owed from later earnings")
               : "",
      now));
  return entries;
}

std::vector<v1::LedgerEntry> ExpirePoints(internal::LoyaltyAccount& account, Lots& lots,
                                          absl::Time now) {
  std::vector<v1::LedgerEntry> entries;
  for (auto& lot : lots) {
    if (lot.remaining() == 0 || api::FromTimestamp(lot.expire_time()) > now) continue;
    const int64_t expired = lot.remaining();
    lot.set_remaining(0);
    account.set_points_balance(account.points_balance() - expired);
    entries.push_back(
        Entry(account, v1::POINTS_ENTRY_TYPE_EXPIRE, -expired, v1::POINTS_SOURCE_EXPIRY,
              absl::StrCat("expire:", lot.expire_time().seconds()), "",
              "points expire at the end of the year after they were earned", "", now));
  }
  return entries;
}

ItemReversal ReverseItem(internal::ItemGrant& g, int32_t quantity) {
  ItemReversal r;
  const int32_t left = g.quantity() - g.quantity_reversed();
  quantity = std::min(quantity, left);
  if (quantity <= 0) return r;
  if (quantity == left) {
    r.growth = g.growth() - g.growth_reversed();
    r.points = g.points() - g.points_reversed();
  } else {
    r.growth = g.growth() * quantity / g.quantity();
    r.points = g.points() * quantity / g.quantity();
  }
  g.set_quantity_reversed(g.quantity_reversed() + quantity);
  g.set_growth_reversed(g.growth_reversed() + r.growth);
  g.set_points_reversed(g.points_reversed() + r.points);
  return r;
}

void AddGrowth(internal::LoyaltyAccount& account, int64_t day, int64_t growth) {
  auto& days = *account.mutable_growth_by_day();
  days[day] += growth;
  if (days[day] == 0) days.erase(day);
}

int64_t RollingGrowth(const internal::LoyaltyAccount& account, absl::Time now, int window_days) {
  const int64_t today = GrowthDay(now);
  int64_t sum = 0;
  for (const auto& [day, growth] : account.growth_by_day()) {
    if (day > today - window_days && day <= today) sum += growth;
  }
  return std::max<int64_t>(0, sum);
}

void DropGrowthOutsideWindow(internal::LoyaltyAccount& account, absl::Time now, int window_days) {
  const int64_t today = GrowthDay(now);
  auto& days = *account.mutable_growth_by_day();
  for (auto it = days.begin(); it != days.end();) {
    if (it->first <= today - window_days) {
      it = days.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<v1::TierChange> ReevaluateTier(internal::LoyaltyAccount& account,
                                             const v1::LoyaltyRules& rules, absl::Time now) {
  const int64_t growth = RollingGrowth(account, now, rules.growth().window_days());
  const v1::TierRule& rule = TierRuleFor(rules, growth);
  if (rule.tier() == account.tier()) return std::nullopt;
  v1::TierChange change;
  change.set_from_tier(account.tier());
  change.set_to_tier(rule.tier());
  api::SetTimestamp(now, change.mutable_time());
  if (account.tier() == v1::TIER_UNSPECIFIED) {
    change.set_reason(absl::StrCat("joined at ", rule.name(), " with growth ", growth));
  } else if (rule.tier() > account.tier()) {
    change.set_reason(
        absl::StrCat("growth ", growth, " reached ", rule.name(), " (", rule.min_growth(), ")"));
  } else {
    const v1::TierRule* old = RuleOfTier(rules, account.tier());
    change.set_reason(absl::StrCat("growth ", growth, " over the last ",
                                   rules.growth().window_days(), " days is below ",
                                   old != nullptr ? old->name() : "the tier", " (",
                                   old != nullptr ? old->min_growth() : 0, ")"));
  }
  account.set_tier(rule.tier());
  api::SetTimestamp(now, account.mutable_tier_since());
  return change;
}

std::optional<Downgrade> ProjectDowngrade(const internal::LoyaltyAccount& account,
                                          const v1::LoyaltyRules& rules, absl::Time now) {
  const int window = rules.growth().window_days();
  const int64_t today = GrowthDay(now);
  int64_t growth = RollingGrowth(account, now, window);
  const v1::TierRule& current = TierRuleFor(rules, growth);
  // Each day a day's growth leaves the window; find the first day the total falls below the tier.
  std::vector<std::pair<int64_t, int64_t>> days(account.growth_by_day().begin(),
                                                account.growth_by_day().end());
  std::sort(days.begin(), days.end());
  for (const auto& [day, g] : days) {
    if (day <= today - window || day > today) continue;
    growth -= g;
    const v1::TierRule& after = TierRuleFor(rules, std::max<int64_t>(0, growth));
    if (after.tier() < current.tier())
      return Downgrade{StartOfGrowthDay(day + window), after.tier()};
  }
  return std::nullopt;
}

v1::CreditStanding CreditOf(const internal::LoyaltyAccount& a, const v1::LoyaltyRules& rules) {
  v1::CreditStanding c;
  c.set_score(a.credit_score());
  c.set_level(CreditLevel(rules, a.credit_score()));
  c.set_level_name(CreditLevelName(c.level()));
  c.set_good_count(a.good_ratings());
  c.set_neutral_count(a.neutral_ratings());
  c.set_bad_count(a.bad_ratings());
  const int64_t all = a.good_ratings() + a.neutral_ratings() + a.bad_ratings();
  c.set_good_rate_percent(
      all == 0 ? 100.0 : 100.0 * static_cast<double>(a.good_ratings()) / static_cast<double>(all));
  return c;
}

v1::Membership MembershipOf(const internal::LoyaltyAccount& a, const Lots& lots,
                            const v1::LoyaltyRules& rules, absl::Time now) {
  v1::Membership m;
  m.set_customer_id(a.customer_id());
  const int64_t growth = RollingGrowth(a, now, rules.growth().window_days());
  const v1::TierRule& tier = TierRuleFor(rules, growth);
  m.set_tier(tier.tier());
  m.set_tier_name(tier.name());
  m.set_growth_value(growth);
  *m.mutable_benefits() = tier.benefits();
  m.set_points_balance(a.points_balance());
  m.set_points_owed(PointsOwed(a));
  for (const auto& lot : lots) {
    if (lot.remaining() == 0) continue;
    if (!m.has_points_expire_time()) *m.mutable_points_expire_time() = lot.expire_time();
    if (lot.expire_time().seconds() == m.points_expire_time().seconds())
      m.set_points_expiring(m.points_expiring() + lot.remaining());
  }
  *m.mutable_credit() = CreditOf(a, rules);
  m.set_enterprise(a.enterprise());
  if (a.enterprise()) {
    *m.mutable_enterprise_terms() = rules.enterprise();
    m.set_enterprise_company(a.enterprise_company());
    m.set_named_agent_id(a.named_agent_id());
  }
  if (const v1::TierRule* next = NextTierRule(rules, tier.tier())) {
    m.set_next_tier(next->tier());
    m.set_growth_to_next_tier(next->min_growth() - growth);
  }
  if (a.has_tier_since()) *m.mutable_tier_since() = a.tier_since();
  return m;
}

}  // namespace crm::loyalty
