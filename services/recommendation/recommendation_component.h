// recommendation's process: the data-service shape (libs/events/data_service.h) around
// RecommendationService. Its wiring (recommendation_component.cc) builds the store, best-seller
// cache, recommender, reminder sweep, service, event consumer, event producer (ReminderDue), the
// neighbour refresh and the reminder sweep's schedule; its flags: --bestseller_cache_s,
// --reminder_sweep_interval_s, --customers_alike, --items_named_alike, --neighbour_rebuilds.
#pragma once

#include "absl/flags/declare.h"
#include "libs/events/data_service.h"
#include "services/recommendation/recommendation_service.h"

// How long the best-seller lists are cached (tests set 0).
ABSL_DECLARE_FLAG(int, bestseller_cache_s);
// How often the reminder sweep runs, in seconds (0: never).
ABSL_DECLARE_FLAG(int, reminder_sweep_interval_s);
// Whether home, e-mail and push blend in what customers alike bought.
ABSL_DECLARE_FLAG(bool, customers_alike);
ABSL_DECLARE_FLAG(bool, items_named_alike);
// Whether the neighbour lists are rebuilt whole once enough item pairs changed.
ABSL_DECLARE_FLAG(bool, neighbour_rebuilds);

namespace crm::recommendation {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec RecommendationSpec();
using RecommendationComponent = events::DataService<RecommendationService, RecommendationSpec>;

}  // namespace crm::recommendation
