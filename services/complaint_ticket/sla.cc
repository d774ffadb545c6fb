#include "services/complaint_ticket/sla.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"

namespace crm::complaint_ticket {

std::string SlaKindName(v1::SlaKind kind) {
  const std::string n = v1::SlaKind_Name(kind);
  return absl::AsciiStrToLower(n.rfind("SLA_KIND_", 0) == 0 ? n.substr(9) : n);
}

void StartSla(v1::Ticket& t, absl::Time now) {
  const auto rules = RulesOf(t);
  const SlaPolicy p = rules->PolicyFor(t.priority(), t.enterprise());
  const BusinessCalendar& calendar = rules->CalendarFor(t);
  api::SetTimestamp(AddBusinessTime(now, p.first_response, calendar),
                    t.mutable_sla()->mutable_first_response_due());
  api::SetTimestamp(AddBusinessTime(now, p.resolution, calendar),
                    t.mutable_sla()->mutable_resolution_due());
}

namespace {

bool Finished(const v1::Ticket& t) {
  return t.status() == v1::TICKET_STATUS_AWAITING_COMPENSATION ||
         t.status() == v1::TICKET_STATUS_RESOLVED || t.status() == v1::TICKET_STATUS_CLOSED;
}

absl::Duration PeriodOf(const SlaPolicy& p, v1::SlaKind kind) {
  switch (kind) {
    case v1::SLA_KIND_FIRST_RESPONSE: return p.first_response;
    case v1::SLA_KIND_NEXT_UPDATE: return p.next_update;
    default: return p.resolution;
  }
}

// Whether a deadline at risk (or passed) escalates the ticket, as its priority's rule says.
bool Escalates(const v1::Ticket& t, bool at_risk, bool passed) {
  switch (RulesOf(t)->EscalationFor(t.priority()).escalate) {
    case internal::ESCALATE_WHEN_AT_RISK: return at_risk || passed;
    case internal::ESCALATE_WHEN_BREACHED: return passed;
    default: return false;
  }
}

bool AlreadyBreached(const v1::Ticket& t, const Deadline& d) {
  for (const auto& b : t.sla().breaches()) {
    if (b.kind() == d.kind && api::FromTimestamp(b.due_time()) == d.due) return true;
  }
  return false;
}

}  // namespace

std::vector<Deadline> OpenDeadlines(const v1::Ticket& t) {
  std::vector<Deadline> out;
  if (t.status() == v1::TICKET_STATUS_CLOSED) return out;
  const auto& sla = t.sla();
  if (!Finished(t)) {
    if (!sla.has_first_response_time() && sla.has_first_response_due()) {
      out.push_back(
          {v1::SLA_KIND_FIRST_RESPONSE, api::FromTimestamp(sla.first_response_due()), ""});
    }
    if (sla.has_next_update_due())
      out.push_back({v1::SLA_KIND_NEXT_UPDATE, api::FromTimestamp(sla.next_update_due()), ""});
    if (sla.has_resolution_due())
      out.push_back({v1::SLA_KIND_RESOLUTION, api::FromTimestamp(sla.resolution_due()), ""});
  }
  for (const auto& c : t.callbacks()) {
    if (c.status() == v1::CALLBACK_STATUS_PROMISED) {
      out.push_back({v1::SLA_KIND_CALLBACK, api::FromTimestamp(c.promised_time()) + kCallbackGrace,
                     c.callback_id()});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Deadline& a, const Deadline& b) { return a.due < b.due; });
  return out;
}

absl::Time RiskFrom(const v1::Ticket& t, const Deadline& d) {
  // A callback is an appointment at a clock time: at risk from that time, business hours or not.
  if (d.kind == v1::SLA_KIND_CALLBACK) return d.due - kCallbackGrace;
  const auto rules = RulesOf(t);
  const EscalationPolicy& e = rules->EscalationFor(t.priority());
  const absl::Duration period = PeriodOf(rules->PolicyFor(t.priority(), t.enterprise()), d.kind);
  return SubtractBusinessTime(d.due, std::max(e.at_risk_at_least, period * e.at_risk_fraction),
                              rules->CalendarFor(t));
}

bool AtRisk(const v1::Ticket& t, const Deadline& d, absl::Time now) {
  return now >= RiskFrom(t, d);
}

absl::Status CheckNextStepTime(absl::Time next_step, absl::Time now) {
  if (next_step <= now)
    return api::Invalid("next_step_time",
                        "must be in the future: the date the customer hears next");
  if (next_step > now + kLongestPromise) {
    return api::Invalid("next_step_time",
                        "must be within 14 days; promise a nearer date and update then");
  }
  return absl::OkStatus();
}

SlaFindings EvaluateSla(v1::Ticket& t, absl::Time now) {
  SlaFindings f;
  for (const Deadline& d : OpenDeadlines(t)) {
    const bool passed = now > d.due;
    if (passed && !AlreadyBreached(t, d)) {
      v1::SlaBreach b;
      b.set_kind(d.kind);
      api::SetTimestamp(d.due, b.mutable_due_time());
      api::SetTimestamp(now, b.mutable_detected_time());
      *t.mutable_sla()->add_breaches() = b;
      f.breaches.push_back(b);
      if (d.kind == v1::SLA_KIND_CALLBACK) {
        for (auto& c : *t.mutable_callbacks()) {
          if (c.callback_id() == d.callback_id) c.set_status(v1::CALLBACK_STATUS_MISSED);
        }
      }
    }
    if (Escalates(t, AtRisk(t, d, now), passed)) {
      const auto& escalated = t.sla().escalated();
      if (std::find(escalated.begin(), escalated.end(), d.kind) == escalated.end() && !f.escalate) {
        f.escalate = true;
        f.escalation_reason = absl::StrCat(
            SlaKindName(d.kind), passed ? " deadline passed" : " deadline near", " (due ",
            absl::FormatTime("%Y-%m-%d %H:%M UTC", d.due, absl::UTCTimeZone()), ")");
        t.mutable_sla()->add_escalated(d.kind);
      }
    }
  }
  return f;
}

}  // namespace crm::complaint_ticket
