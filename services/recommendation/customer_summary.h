// Keeping a customer's summary (crm.internal.CustomerSummary) bounded and current as purchases,
// views and returns arrive: the most recent distinct items, the latest basket, and per category the
// latest purchase times and a decayed buying habit. Pure functions.
#pragma once

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/internal/recommendation_storage.pb.h"

namespace crm::recommendation {

inline constexpr int kRecentItems = 60;
inline constexpr int kPurchaseTimesKept = 8;
inline constexpr absl::Duration kHabitHalfLife = absl::Hours(24 * 180);

// The item was bought (or viewed, with this dwell) at `when`: it moves to the front of the recent
// items.
void NoteBought(internal::CustomerSummary& summary, const std::string& sku,
                const std::string& category, absl::Time when);
void NoteViewed(internal::CustomerSummary& summary, const std::string& sku,
                const std::string& category, absl::Time when, int dwell_seconds);
// A returned item is no longer a reason to recommend anything.
void ForgetRecent(internal::CustomerSummary& summary, const std::string& sku);
// One more purchase in the category at `when`.
void NotePurchaseIn(internal::CustomerSummary& summary, const std::string& category,
                    absl::Time when);
// The buying habit in a category as of `now`.
double HabitAsOf(const internal::CategoryPurchases& category, absl::Time now);
// When the item was last touched (bought or viewed).
absl::Time LastTouched(const internal::RecentItem& item);

// Calls `visit(sku, last_bought)` for each recent item of the serialized summary that was bought
// (has last_bought), in stored order, reading the bytes as they are: what customers alike reads of
// fifty summaries a call, where parsing them whole was a fifth of a home call's CPU. `sku` points
// into `summary`. False when the bytes are not a summary.
bool ForEachRecentPurchase(
    absl::string_view summary,
    absl::FunctionRef<void(absl::string_view sku, absl::Time last_bought)> visit);

}  // namespace crm::recommendation
