#include "services/customer_profile/affinity.h"

#include <algorithm>
#include <cmath>

#include "libs/api/validate.h"

namespace crm::customer_profile {
namespace {

double DecayFactor(absl::Duration elapsed) {
  if (elapsed <= absl::ZeroDuration()) return 1.0;
  return std::exp2(-absl::FDivDuration(elapsed, kAffinityHalfLife));
}

}  // namespace

double InterestWeight(const v1::BehaviorEvent& e) {
  switch (e.type()) {
    case v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK:
      return 1.0;
    case v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW:
      if (e.dwell_seconds() < 5) return 0.2;
      if (e.dwell_seconds() < 30) return 1.0;
      return 2.0 + std::min(3.0, (e.dwell_seconds() - 30) / 60.0);
    case v1::BEHAVIOR_EVENT_TYPE_ADD_TO_CART:
      return 3.0;
    case v1::BEHAVIOR_EVENT_TYPE_SEARCH:
      return 0.5;
    default:
      return 0.0;
  }
}

void Accumulate(v1::CategoryAffinity& a, const v1::BehaviorEvent& e, absl::Time event_time) {
  const double w = InterestWeight(e);
  const bool has_last = a.has_last_activity_time();
  const absl::Time last = has_last ? api::FromTimestamp(a.last_activity_time()) : event_time;
  if (!has_last || event_time >= last) {
    a.set_score(a.score() * DecayFactor(event_time - last) + w);
    api::SetTimestamp(event_time, a.mutable_last_activity_time());
  } else {
    a.set_score(a.score() + w * DecayFactor(last - event_time));
  }
  if (e.type() == v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK) a.set_clicks(a.clicks() + 1);
  if (e.type() == v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW) {
    a.set_views(a.views() + 1);
    a.set_total_dwell_seconds(a.total_dwell_seconds() + e.dwell_seconds());
  }
}

v1::CategoryAffinity AffinityAsOf(const v1::CategoryAffinity& stored, absl::Time now) {
  v1::CategoryAffinity a = stored;
  if (a.has_last_activity_time()) {
    a.set_score(a.score() * DecayFactor(now - api::FromTimestamp(a.last_activity_time())));
  }
  const bool close = a.views() > 0 && a.total_dwell_seconds() >= kLookedCloselyDwellSeconds * a.views();
  a.set_engagement(close ? v1::ENGAGEMENT_LOOKED_CLOSELY : v1::ENGAGEMENT_FLIPPED_THROUGH);
  return a;
}

}  // namespace crm::customer_profile
