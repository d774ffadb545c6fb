// recommendation's process: the data-service shape (libs/events/data_service.h) around
// RecommendationService. Its wiring (recommendation_component.cc) builds the store, best-seller
// cache, recommender, service, event consumer and the neighbour refresh; its flag:
// --bestseller_cache_s.
#pragma once

#include "absl/flags/declare.h"
#include "libs/events/data_service.h"
#include "services/recommendation/recommendation_service.h"

// How long the best-seller lists are cached (tests set 0).
ABSL_DECLARE_FLAG(int, bestseller_cache_s);

namespace crm::recommendation {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec RecommendationSpec();
using RecommendationComponent = events::DataService<RecommendationService, RecommendationSpec>;

}  // namespace crm::recommendation
