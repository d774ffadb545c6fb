// Category affinity from browsing: how interested a customer is in a category, from clicks and dwell
// time, decayed over time so that last month's browsing fades (seed 002 §1.1.2: "looked closely" versus
// "flipped through"). Pure functions; the store keeps one CategoryAffinity per customer and category.
#pragma once

#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"

namespace crm::customer_profile {

// Interest halves after this long without new activity.
inline constexpr absl::Duration kAffinityHalfLife = absl::Hours(24 * 14);
// Average dwell per item view at or above which a category counts as "looked closely".
inline constexpr int kLookedCloselyDwellSeconds = 20;

// What one event adds: a click 1; an item view 0.2 when flipped past (< 5 s), 1 for a normal look,
// 2 to 5 for a long look (30 s and more, growing with time); add-to-cart 3; a search naming the category 0.5.
double InterestWeight(const v1::BehaviorEvent& event);

// Folds `event` (which happened at `event_time`) into the category's stored state. Events may arrive
// out of order: an older event adds its weight already decayed to the stored time.
void Accumulate(v1::CategoryAffinity& affinity, const v1::BehaviorEvent& event, absl::Time event_time);

// The stored state as seen at `now`: score decayed, engagement classified.
v1::CategoryAffinity AffinityAsOf(const v1::CategoryAffinity& stored, absl::Time now);

}  // namespace crm::customer_profile
