#include "libs/events/routes.h"

namespace crm::events {

bool SinkWants(absl::string_view sink, const v1::Event& e) {
  using P = v1::Event::PayloadCase;
  const P p = e.payload_case();
  if (sink == "loyalty") {
    return p == P::kOrderDelivered || p == P::kOrderRefunded || p == P::kReviewSubmitted ||
           p == P::kCustomerErased;
  }
  if (sink == "complaint-ticket") {
    return p == P::kReviewSubmitted || p == P::kDeliveryFailed || p == P::kOrderDelivered ||
           p == P::kOrderRefunded || p == P::kCustomerErased;
  }
  if (sink == "recommendation") {
    return p == P::kOrderDelivered || p == P::kOrderRefunded || p == P::kBehaviorRecorded ||
           p == P::kCustomerErased;
  }
  if (sink == "order-tracking") return p == P::kCustomerErased;
  if (sink == "customer-profile") {
    return p == P::kOrderPlaced || p == P::kOrderDelivered || p == P::kOrderRefunded ||
           p == P::kDeliveryFailed || p == P::kReviewSubmitted || p == P::kOrderCancelled ||
           p == P::kTicketOpened || p == P::kTicketResolved || p == P::kSatisfactionRated ||
           p == P::kSlaBreached;
  }
  return true;
}

}  // namespace crm::events
