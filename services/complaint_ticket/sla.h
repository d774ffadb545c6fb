// The promises a ticket makes and when they fall due (seed 002 §3): a first response, the next
// update an agent's reply committed to (every reply names a date, never "later"), promised
// callbacks, and the resolution. Deadlines near their end or past it escalate the ticket to the
// next level long before a month passes. Durations, at-risk windows and escalation come from the
// SLA rules (sla_rules.h) a ticket is held to, in business time of its calendar. Time is passed in.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "services/complaint_ticket/sla_rules.h"

namespace crm::complaint_ticket {

// A promised callback is missed this long after its time.
inline constexpr absl::Duration kCallbackGrace = absl::Minutes(15);
// Agents may not commit to a next step further out than this.
inline constexpr absl::Duration kLongestPromise = absl::Hours(24 * 14);

// Sets the first-response and resolution deadlines of a new ticket: its policy's durations of
// business time after `now` on its calendar (RulesOf: the rules in force when it was opened).
void StartSla(v1::Ticket& ticket, absl::Time now);

struct Deadline {
  v1::SlaKind kind;
  absl::Time due;
  std::string callback_id;  // for callbacks
};

// The promises still open: first response (until the first agent reply), the next update an agent
// committed to, each promised callback (with its grace), and the resolution (until resolved).
std::vector<Deadline> OpenDeadlines(const v1::Ticket& ticket);

// Near its end: at most max(at_risk_fraction x its policy period, at_risk_at_least) of business
// time left (the ticket's escalation rule); a promised callback from its promised time.
bool AtRisk(const v1::Ticket& ticket, const Deadline& deadline, absl::Time now);
// When the deadline becomes at risk (what the at-risk list and the sweep are ordered and bounded
// by).
absl::Time RiskFrom(const v1::Ticket& ticket, const Deadline& deadline);

// An agent reply's committed date must be a real future date, within two weeks.
absl::Status CheckNextStepTime(absl::Time next_step, absl::Time now);

// What a sweep found for one ticket: new breaches (recorded in the ticket) and whether to escalate.
struct SlaFindings {
  std::vector<v1::SlaBreach> breaches;
  bool escalate = false;
  std::string escalation_reason;
};
// Records breaches of passed deadlines (each once; a missed callback is marked MISSED) and decides
// on an escalation when a deadline is at risk or passed (as the priority's escalation rule says)
// and has not escalated before.
SlaFindings EvaluateSla(v1::Ticket& ticket, absl::Time now);

std::string SlaKindName(v1::SlaKind kind);

}  // namespace crm::complaint_ticket
