#include "libs/behavior/interest.h"

#include <algorithm>
#include <cmath>

#include "libs/api/validate.h"

namespace crm::behavior {
namespace {

double DecayFactor(absl::Duration elapsed) {
  if (elapsed <= absl::ZeroDuration()) return 1.0;
  return std::exp2(-absl::FDivDuration(elapsed, kInterestHalfLife));
}

}  // namespace

Action ActionOf(v1::BehaviorEventType type) {
  switch (type) {
    case v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK: return Action::kCategoryClick;
    case v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW: return Action::kItemView;
    case v1::BEHAVIOR_EVENT_TYPE_SEARCH: return Action::kSearch;
    case v1::BEHAVIOR_EVENT_TYPE_ADD_TO_CART: return Action::kAddToCart;
    default: return Action::kOther;
  }
}

Action ActionOf(absl::string_view name) {
  if (name == "category_click") return Action::kCategoryClick;
  if (name == "item_view") return Action::kItemView;
  if (name == "search") return Action::kSearch;
  if (name == "add_to_cart") return Action::kAddToCart;
  if (name == "purchase") return Action::kPurchase;
  return Action::kOther;
}

absl::string_view ActionName(Action action) {
  switch (action) {
    case Action::kCategoryClick: return "category_click";
    case Action::kItemView: return "item_view";
    case Action::kSearch: return "search";
    case Action::kAddToCart: return "add_to_cart";
    case Action::kPurchase: return "purchase";
    default: return "other";
  }
}

double InterestWeight(Action action, int dwell_seconds) {
  switch (action) {
    case Action::kCategoryClick: return 1.0;
    case Action::kItemView:
      if (dwell_seconds < 5) return 0.2;
      if (dwell_seconds < 30) return 1.0;
      return 2.0 + std::min(3.0, (dwell_seconds - 30) / 60.0);
    case Action::kAddToCart: return 3.0;
    case Action::kPurchase: return 5.0;
    case Action::kSearch: return 0.5;
    default: return 0.0;
  }
}

void Accumulate(v1::CategoryAffinity& a, Action action, int dwell_seconds, absl::Time when) {
  const double w = InterestWeight(action, dwell_seconds);
  const bool has_last = a.has_last_activity_time();
  const absl::Time last = has_last ? api::FromTimestamp(a.last_activity_time()) : when;
  if (!has_last || when >= last) {
    a.set_score(a.score() * DecayFactor(when - last) + w);
    api::SetTimestamp(when, a.mutable_last_activity_time());
  } else {
    a.set_score(a.score() + w * DecayFactor(last - when));
  }
  if (action == Action::kCategoryClick) a.set_clicks(a.clicks() + 1);
  if (action == Action::kItemView) {
    a.set_views(a.views() + 1);
    a.set_total_dwell_seconds(a.total_dwell_seconds() + dwell_seconds);
  }
}

v1::CategoryAffinity AffinityAsOf(const v1::CategoryAffinity& stored, absl::Time now) {
  v1::CategoryAffinity a = stored;
  if (a.has_last_activity_time()) {
    a.set_score(a.score() * DecayFactor(now - api::FromTimestamp(a.last_activity_time())));
  }
  const bool close =
      a.views() > 0 && a.total_dwell_seconds() >= kLookedCloselyDwellSeconds * a.views();
  a.set_engagement(close ? v1::ENGAGEMENT_LOOKED_CLOSELY : v1::ENGAGEMENT_FLIPPED_THROUGH);
  return a;
}

}  // namespace crm::behavior
