// How a member's account changes: points earned into lots that expire, spent and expired oldest
// first, refunds taking back exactly what an order granted (what was already spent becomes owed and
// is settled from later earnings, so the balance never goes negative), growth value counted per day
// over a rolling window, tier re-evaluation, and the membership as the customer sees it. Pure
// functions over the account and its lots; the store loads and saves them in one transaction.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/internal/loyalty_storage.pb.h"
#include "crm/v1/loyalty.pb.h"

namespace crm::loyalty {

using Lots = std::vector<internal::PointsLot>;  // one per expiry date, soonest first

// Takes the account's next sequence number: ledger and growth entries and tier changes count from
// one counter, so each has its own number and their keys sort in the order they happened.
int64_t TakeSequence(internal::LoyaltyAccount& account);

// Adds points to the lot of their expiry date; when points are owed, settles them from it first.
// Returns the ledger entries (EARN, then SETTLE entries per order owed).
std::vector<v1::LedgerEntry> EarnPoints(internal::LoyaltyAccount& account, Lots& lots,
                                        int64_t points, v1::PointsSource source,
                                        const std::string& source_id, const std::string& order_id,
                                        const std::string& rule, const std::string& description,
                                        absl::Time now);

// Spends points from the lots that expire first. FAILED_PRECONDITION when the balance is short.
absl::StatusOr<v1::LedgerEntry> SpendPoints(internal::LoyaltyAccount& account, Lots& lots,
                                            int64_t points, const std::string& source_id,
                                            const std::string& description, absl::Time now);

// Takes back `points` an order earned at `earned`: first from the lot they went into, then from the
// lots that expire first; what the balance cannot cover is recorded as owed by that order.
std::vector<v1::LedgerEntry> ReversePoints(internal::LoyaltyAccount& account, Lots& lots,
                                           int64_t points, absl::Time earned,
                                           const std::string& order_id,
                                           const std::string& source_id, absl::Time now);

// Expires what is left of every lot whose expiry has passed. Running it again expires nothing more.
std::vector<v1::LedgerEntry> ExpirePoints(internal::LoyaltyAccount& account, Lots& lots,
                                          absl::Time now);

int64_t PointsOwed(const internal::LoyaltyAccount& account);

// Refunding `quantity` units of an item takes back their share of what the item granted; the last
// units take the remainder, so a full refund always takes back exactly the grant.
struct ItemReversal {
  int64_t growth = 0;
  int64_t points = 0;
};
ItemReversal ReverseItem(internal::ItemGrant& grant, int32_t quantity);

// Growth value counts on calendar days; days that left the window are dropped.
void AddGrowth(internal::LoyaltyAccount& account, int64_t day, int64_t growth);
int64_t RollingGrowth(const internal::LoyaltyAccount& account, absl::Time now, int window_days);
void DropGrowthOutsideWindow(internal::LoyaltyAccount& account, absl::Time now, int window_days);

// Sets the tier the current growth earns; returns the change (with its reason) when there is one.
std::optional<v1::TierChange> ReevaluateTier(internal::LoyaltyAccount& account,
                                             const v1::LoyaltyRules& rules, absl::Time now);

// Without new growth, when the tier drops and to what (nullopt: it never drops within the window).
struct Downgrade {
  absl::Time when;
  v1::Tier tier;
};
std::optional<Downgrade> ProjectDowngrade(const internal::LoyaltyAccount& account,
                                          const v1::LoyaltyRules& rules, absl::Time now);

v1::CreditStanding CreditOf(const internal::LoyaltyAccount& account, const v1::LoyaltyRules& rules);
v1::Membership MembershipOf(const internal::LoyaltyAccount& account, const Lots& lots,
                            const v1::LoyaltyRules& rules, absl::Time now);

}  // namespace crm::loyalty
