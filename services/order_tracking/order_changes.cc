#include "services/order_tracking/order_changes.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "services/order_tracking/order_lifecycle.h"

namespace crm::order_tracking {

using api::Invalid;
using R = v1::TrackingEventResult;

v1::OrderHistoryEntry HistoryEntry(std::string description, std::string actor, absl::Time when,
                                   std::string package_id) {
  v1::OrderHistoryEntry h;
  h.set_description(std::move(description));
  h.set_actor(std::move(actor));
  h.set_package_id(std::move(package_id));
  api::SetTimestamp(when, h.mutable_time());
  return h;
}

void MoveAndDescribe(v1::Order& order, v1::Package& p, const v1::AdvancePackageRequest& move,
                     absl::Time when, const std::string& actor, OrderChange& c) {
  const bool was_delivered = order.status() == v1::ORDER_STATUS_DELIVERED;
  const bool was_processed_without_payment =
      order.payment_method() == v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY && !order.has_paid_time();
  ApplyPackageMove(order, p, move, when);
  if (move.status() == v1::PACKAGE_STATUS_HANDED_TO_CARRIER)
    c.tracking_numbers.emplace_back(p.tracking_number(), p.package_id());
  std::string what =
      absl::StrCat("package ", p.package_id(), " ", PackageStatusName(move.status()));
  if (move.status() == v1::PACKAGE_STATUS_DELIVERY_FAILED)
    absl::StrAppend(&what, ": ", move.failure_reason());
  if (move.status() == v1::PACKAGE_STATUS_DELIVERED) {
    absl::StrAppend(&what, " (",
                    absl::AsciiStrToLower(v1::Timeliness_Name(p.timeliness()).substr(11)), ")");
  }
  c.history.push_back(HistoryEntry(what, actor, when, p.package_id()));
  c.summary = what;
  // The state machine never returns to HANDED_TO_CARRIER and a repeated move or carrier event
  // changes nothing, so each package is SHIPPED once; every OUT_FOR_DELIVERY is a new attempt.
  if (move.status() == v1::PACKAGE_STATUS_HANDED_TO_CARRIER) {
    c.events.push_back(ShipmentUpdatedEvent(order, p, v1::SHIPMENT_STAGE_SHIPPED, when));
  }
  if (move.status() == v1::PACKAGE_STATUS_OUT_FOR_DELIVERY) {
    c.events.push_back(ShipmentUpdatedEvent(order, p, v1::SHIPMENT_STAGE_OUT_FOR_DELIVERY, when));
  }
  if (move.has_eta() && MarkDelayed(order, p, when)) {
    c.events.push_back(ShipmentUpdatedEvent(order, p, v1::SHIPMENT_STAGE_DELAYED, when));
  }
  if (move.status() == v1::PACKAGE_STATUS_DELIVERY_FAILED) {
    c.events.push_back(DeliveryFailedEvent(order, p));
  }
  if (!was_delivered && order.status() == v1::ORDER_STATUS_DELIVERED) {
    if (was_processed_without_payment) *order.mutable_paid_time() = order.delivered_time();
    c.events.push_back(OrderDeliveredEvent(order));
    c.history.push_back(HistoryEntry("order delivered", actor, when));
  }
}

absl::Status ValidateTrackingEvents(const v1::AddTrackingEventsRequest& req, absl::Time now) {
  if (req.events().empty()) return Invalid("events", "send at least one tracking event");
  if (req.events_size() > kMaxTrackingEventsPerCall)
    return Invalid("events", absl::StrCat("at most ", kMaxTrackingEventsPerCall, " per call"));
  for (int i = 0; i < req.events_size(); ++i) {
    const auto& e = req.events(i);
    const std::string f = absl::StrCat("events[", i, "]");
    CRM_RETURN_IF_ERROR(api::RequiredId(f + ".carrier_event_id", e.carrier_event_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId(f + ".tracking_number", e.tracking_number()));
    if (!v1::PackageStatus_IsValid(e.status()))
      return Invalid(f + ".status", "is not a package status");
    if (!e.has_event_time())
      return Invalid(f + ".event_time", "is required: when the carrier saw it");
    CRM_ASSIGN_OR_RETURN(auto t, api::ToTime(f + ".event_time", e.event_time()));
    if (t > now + kClockSkew) return Invalid(f + ".event_time", "is in the future");
    if (e.has_location()) {
      const auto& l = e.location();
      if (l.latitude() < -90 || l.latitude() > 90 || l.longitude() < -180 || l.longitude() > 180)
        return Invalid(f + ".location", "latitude must be -90..90 and longitude -180..180");
    }
    if (e.status() == v1::PACKAGE_STATUS_UNSPECIFIED && !e.has_location() && !e.has_eta())
      return Invalid(f, "carries neither a status, a location nor an ETA");
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{".station", &e.station()},
          {".courier_name", &e.courier_name()},
          {".note", &e.note()}}) {
      CRM_RETURN_IF_ERROR(api::OptionalText(f + name, *value, 300));
    }
  }
  return absl::OkStatus();
}

namespace {

// Position, ETA and station from an applied event (telling the customer when the ETA first passes
// the promised window), and a history line unless the move wrote one.
void NoteCarrierUpdate(const v1::TrackingEvent& e, absl::Time when, const std::string& actor,
                       const v1::Order& order, v1::Package& p, OrderChange& c) {
  if (e.has_location()) {
    *p.mutable_last_location() = e.location();
    *p.mutable_last_location()->mutable_time() = e.event_time();
  }
  if (e.has_eta()) {
    *p.mutable_eta() = e.eta();
    if (MarkDelayed(order, p, when))
      c.events.push_back(ShipmentUpdatedEvent(order, p, v1::SHIPMENT_STAGE_DELAYED, when));
  }
  if (!e.station().empty()) p.set_station(e.station());
  if (when > api::FromTimestamp(p.last_event_time()))
    api::SetTimestamp(when, p.mutable_last_event_time());
  if (!c.history.empty()) return;
  v1::OrderHistoryEntry h = HistoryEntry(e.has_location() ? "courier location" : "carrier update",
                                         actor, when, p.package_id());
  if (e.has_location()) *h.mutable_location() = e.location();
  c.history.push_back(std::move(h));
  c.summary = e.has_location() ? "location" : (e.has_eta() ? "eta" : "carrier update");
}

}  // namespace

R::Outcome ApplyCarrierNews(const v1::TrackingEvent& e, v1::Order& order, v1::Package& p,
                            OrderChange& c, std::string* detail) {
  const absl::Time when = api::FromTimestamp(e.event_time());
  const bool older = p.has_last_event_time() && when < api::FromTimestamp(p.last_event_time());
  const std::string actor = absl::StrCat("carrier:", p.carrier());
  R::Outcome outcome = R::OUTCOME_APPLIED;
  if (e.status() != v1::PACKAGE_STATUS_UNSPECIFIED && e.status() != p.status()) {
    if (older || Stage(e.status()) < Stage(p.status()) || IsFinal(p.status())) {
      outcome = R::OUTCOME_STALE;  // late news: kept in the history, the package does not move back
    } else if (!CheckPackageMove(p.status(), e.status()).ok()) {
      outcome = R::OUTCOME_REJECTED;
      *detail = absl::StrCat("a package cannot go from ", PackageStatusName(p.status()), " to ",
                             PackageStatusName(e.status()));
    } else {
      v1::AdvancePackageRequest move;
      move.set_status(e.status());
      move.set_station(e.station());
      move.set_courier_name(e.courier_name());
      move.set_failure_reason(e.note().empty() ? "reported by carrier" : e.note());
      if (e.has_eta()) *move.mutable_eta() = e.eta();
      MoveAndDescribe(order, p, move, when, actor, c);
    }
  } else if (older) {
    outcome = R::OUTCOME_STALE;
  }
  if (outcome == R::OUTCOME_APPLIED) {
    NoteCarrierUpdate(e, when, actor, order, p, c);
  } else {
    c.history.push_back(
        HistoryEntry(absl::StrCat(outcome == R::OUTCOME_STALE ? "late carrier event ignored: "
                                                              : "carrier event rejected: ",
                                  PackageStatusName(e.status())),
                     actor, when, p.package_id()));
    c.summary = "carrier event not applied";
  }
  return outcome;
}

}  // namespace crm::order_tracking
