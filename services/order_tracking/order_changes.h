// How outside news changes an order, as pure steps a handler runs inside the store's transaction:
// a package move with its history entry and events, and a carrier's tracking event (applied, late
// and kept only in the history, or refused as an impossible move). No storage, no gRPC; the caller
// owns the order and the change it fills.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"
#include "services/order_tracking/order_tracking_store.h"

namespace crm::order_tracking {

// Carrier events one AddTrackingEvents call may carry.
inline constexpr int kMaxTrackingEventsPerCall = 1000;
// How far ahead of this service's clock a reported time may be before it counts as "in the future".
inline constexpr absl::Duration kClockSkew = absl::Minutes(5);

// One line of an order's history.
v1::OrderHistoryEntry HistoryEntry(std::string description, std::string actor, absl::Time when,
                                   std::string package_id = "");

// Applies a checked package move, with its history entry and events, to an order inside a change.
void MoveAndDescribe(v1::Order& order, v1::Package& p, const v1::AdvancePackageRequest& move,
                     absl::Time when, const std::string& actor, OrderChange& c);

// AddTrackingEvents' request: 1..kMaxTrackingEventsPerCall events, each with ids, a known status,
// a past event time, a valid location and something to say. INVALID_ARGUMENT naming
// "events[i].<field>".
absl::Status ValidateTrackingEvents(const v1::AddTrackingEventsRequest& req, absl::Time now);

// A carrier's event for package `p` of `order`: moves the package when the news is newer and the
// move allowed (APPLIED), keeps late news only in the history (STALE), refuses an impossible move
// (REJECTED, with `detail` saying why). Fills `c` either way.
v1::TrackingEventResult::Outcome ApplyCarrierNews(const v1::TrackingEvent& e, v1::Order& order,
                                                  v1::Package& p, OrderChange& c,
                                                  std::string* detail);

}  // namespace crm::order_tracking
