// Compensation beyond returns (issue 24): goodwill refunds (money with a reason, e.g. for a parcel
// lost in delivery, where no item comes back to be returned) and reshipments (the order's items
// sent again). An agent gives one within their level's limit (the SLA rules'
// compensation_approval) and it is carried out at once; above it, it waits until a supervisor or an
// admin approves or rejects it. Every step is written to the ticket's compensation_audit.
// Order-tracking refunds money only through returns and has no reshipment, so carrying one out is
// recorded on the ticket and announced as a CompensationGranted event (for loyalty,
// customer-profile and whoever pays or ships it). Pure: time and rules are passed in.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "crm/v1/events.pb.h"
#include "services/complaint_ticket/sla_rules.h"

namespace crm::complaint_ticket {

bool IsGoodwill(v1::CompensationKind kind);

// A goodwill refund or reshipment as requested, `field` naming it ("compensations[0]"): a reason,
// an amount > 0 with its currency or the items to send again, and an order on the ticket (when
// `ticket` is known) for a reshipment.
absl::Status ValidateGoodwill(const std::string& field, const v1::Compensation& c,
                              const v1::Ticket* ticket);

// An agent of `agent_level` gives `c` (one of the ticket's compensations, already numbered): within
// their limit it is carried out now, else it awaits approval. Audited; the events to emit.
std::vector<v1::Event> GiveGoodwill(v1::Ticket& ticket, v1::Compensation& c,
                                    const std::string& agent_id, int agent_level,
                                    const SlaRules& rules, absl::Time now);

// Who decides on a compensation awaiting approval: an admin, or an agent and their level.
struct Decider {
  std::string actor;  // "admin:ops-1", or the agent id
  bool admin = false;
  int level = 0;
};

// Approves (and carries out) or rejects the ticket's compensation `compensation_id`. NOT_FOUND for
// no such compensation; FAILED_PRECONDITION when it is not awaiting approval; PERMISSION_DENIED for
// an agent below the supervisor level or deciding on their own. The events to emit.
absl::StatusOr<std::vector<v1::Event>> DecideGoodwill(v1::Ticket& ticket,
                                                      const std::string& compensation_id,
                                                      const Decider& decider, bool approve,
                                                      const std::string& reason,
                                                      const SlaRules& rules, absl::Time now);

}  // namespace crm::complaint_ticket
