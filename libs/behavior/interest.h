// Interest in a category from browsing: how much a click, a look at an item (by dwell time), a
// search or an add-to-cart says about it, accumulated with exponential decay so last month's
// browsing fades (seed 002 §1.1.2: "looked closely" versus "flipped through"). Shared by
// customer-profile (which shows it) and recommendation (which uses it). Pure functions.
#pragma once

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"

namespace crm::behavior {

// kPurchase never comes from browsing: recommendation folds delivered orders in as the strongest
// interest.
enum class Action { kCategoryClick, kItemView, kSearch, kAddToCart, kPurchase, kOther };

// Interest halves after this long without new activity.
inline constexpr absl::Duration kInterestHalfLife = absl::Hours(24 * 14);
// Average dwell per item view at or above which a category counts as "looked closely".
inline constexpr int kLookedCloselyDwellSeconds = 20;

Action ActionOf(v1::BehaviorEventType type);
// "category_click", "item_view", "search", "add_to_cart" (the names behaviour events travel with).
Action ActionOf(absl::string_view name);
absl::string_view ActionName(Action action);

// A click 1; an item view 0.2 when flipped past (< 5 s), 1 for a normal look, 2 to 5 for a long
// look (30 s and more, growing with time); add-to-cart 3; a purchase 5; a search naming the
// category 0.5.
double InterestWeight(Action action, int dwell_seconds);

// Folds one action at `when` into the category's state. Actions may arrive out of order: an older
// one adds its weight already decayed to the stored time.
void Accumulate(v1::CategoryAffinity& affinity, Action action, int dwell_seconds, absl::Time when);

// The stored state as seen at `now`: score decayed, engagement classified.
v1::CategoryAffinity AffinityAsOf(const v1::CategoryAffinity& stored, absl::Time now);

}  // namespace crm::behavior
