#include "services/complaint_ticket/goodwill.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"

namespace crm::complaint_ticket {
namespace {

using api::Invalid;

std::string KindName(v1::CompensationKind kind) {
  return absl::AsciiStrToLower(v1::CompensationKind_Name(kind).substr(18));
}

void Audit(v1::Ticket& t, const v1::Compensation& c, const std::string& actor,
           const std::string& action, const std::string& note, absl::Time now) {
  auto* e = t.add_compensation_audit();
  api::SetTimestamp(now, e->mutable_time());
  e->set_actor(actor);
  e->set_action(action);
  e->set_compensation_id(c.compensation_id());
  e->set_kind(c.kind());
  if (c.has_amount()) *e->mutable_amount() = c.amount();
  *e->mutable_items() = c.reship_items();
  e->set_note(note);
}

bool WithinLimit(const v1::Compensation& c, const CompensationLimit& limit) {
  if (c.kind() == v1::COMPENSATION_KIND_RESHIPMENT) return limit.reshipment;
  return c.amount().amount_minor() <= limit.goodwill_refund_up_to_minor;
}

// Carries it out: confirmed on the ticket, audited, announced.
v1::Event CarryOut(v1::Ticket& t, v1::Compensation& c, const std::string& actor, absl::Time now) {
  c.set_status(v1::COMPENSATION_STATUS_CONFIRMED);
  c.set_reference(absl::StrCat(KindName(c.kind()), ":", t.ticket_id(), "/", c.compensation_id()));
  api::SetTimestamp(now, c.mutable_confirmed_time());
  Audit(t, c, actor, "carried_out", c.reason(), now);
  v1::Event e;
  auto* g = e.mutable_compensation_granted();
  g->set_ticket_id(t.ticket_id());
  g->set_compensation_id(c.compensation_id());
  g->set_kind(KindName(c.kind()));
  if (c.has_amount()) *g->mutable_amount() = c.amount();
  g->set_order_id(t.order_id());
  for (const auto& item : c.reship_items()) {
    auto* i = g->add_items();
    i->set_item_id(item.item_id());
    i->set_quantity(item.quantity());
  }
  g->set_reason(c.reason());
  if (c.approval().status() == v1::APPROVAL_STATUS_APPROVED)
    g->set_approved_by(c.approval().decided_by());
  return e;
}

}  // namespace

bool IsGoodwill(v1::CompensationKind kind) {
  return kind == v1::COMPENSATION_KIND_GOODWILL_REFUND || kind == v1::COMPENSATION_KIND_RESHIPMENT;
}

absl::Status ValidateGoodwill(const std::string& f, const v1::Compensation& c,
                              const v1::Ticket* ticket) {
  if (c.kind() == v1::COMPENSATION_KIND_GOODWILL_REFUND) {
    if (c.amount().amount_minor() <= 0)
      return Invalid(f + ".amount.amount_minor", "must be positive");
    CRM_RETURN_IF_ERROR(api::CurrencyCode(f + ".amount.currency", c.amount().currency()));
  } else {
    if (c.reship_items().empty())
      return Invalid(f + ".reship_items", "name the order's items to send again");
    for (int i = 0; i < c.reship_items_size(); ++i) {
      const std::string item = absl::StrCat(f, ".reship_items[", i, "]");
      CRM_RETURN_IF_ERROR(api::RequiredId(item + ".item_id", c.reship_items(i).item_id()));
      if (c.reship_items(i).quantity() <= 0)
        return Invalid(item + ".quantity", "must be at least 1");
    }
    if (ticket != nullptr && ticket->order_id().empty())
      return Invalid(f, "a reshipment needs the ticket's order");
  }
  if (!api::RequiredText(f + ".reason", c.reason(), 1000).ok())
    return Invalid(f + ".reason", "say why (1-1000 characters), e.g. \"parcel lost in delivery\"");
  return absl::OkStatus();
}

std::vector<v1::Event> GiveGoodwill(v1::Ticket& t, v1::Compensation& c, const std::string& agent_id,
                                    int agent_level, const SlaRules& rules, absl::Time now) {
  auto* approval = c.mutable_approval();
  approval->set_requested_by(agent_id);
  approval->set_requested_level(agent_level);
  Audit(t, c, agent_id, "given", c.reason(), now);
  if (!WithinLimit(c, rules.LimitFor(agent_level))) {
    approval->set_status(v1::APPROVAL_STATUS_AWAITING);
    c.set_status(v1::COMPENSATION_STATUS_PENDING);
    Audit(t, c, agent_id, "awaiting_approval",
          absl::StrCat("above the limit of level ", agent_level), now);
    return {};
  }
  approval->set_status(v1::APPROVAL_STATUS_NOT_NEEDED);
  return {CarryOut(t, c, agent_id, now)};
}

absl::StatusOr<std::vector<v1::Event>> DecideGoodwill(v1::Ticket& t,
                                                      const std::string& compensation_id,
                                                      const Decider& decider, bool approve,
                                                      const std::string& reason,
                                                      const SlaRules& rules, absl::Time now) {
  for (auto& c : *t.mutable_resolution()->mutable_compensations()) {
    if (c.compensation_id() != compensation_id) continue;
    if (!IsGoodwill(c.kind()) || c.approval().status() != v1::APPROVAL_STATUS_AWAITING) {
      return absl::FailedPreconditionError(
          absl::StrCat("compensation_id: \"", compensation_id, "\" is not awaiting approval"));
    }
    if (!decider.admin) {
      if (decider.level < rules.supervisor_level()) {
        return absl::PermissionDeniedError(
            absl::StrCat("agent_id: a level ", decider.level,
                         " agent cannot approve compensation; supervisors are level ",
                         rules.supervisor_level(), " and above"));
      }
      if (decider.actor == c.approval().requested_by()) {
        return absl::PermissionDeniedError(
            "agent_id: an agent cannot decide on compensation they gave themself");
      }
    }
    auto* approval = c.mutable_approval();
    approval->set_status(approve ? v1::APPROVAL_STATUS_APPROVED : v1::APPROVAL_STATUS_REJECTED);
    approval->set_decided_by(decider.actor);
    approval->set_reason(reason);
    api::SetTimestamp(now, approval->mutable_decided_time());
    Audit(t, c, decider.actor, approve ? "approved" : "rejected", reason, now);
    if (!approve) {
      c.set_status(v1::COMPENSATION_STATUS_REJECTED);
      return std::vector<v1::Event>{};
    }
    return std::vector<v1::Event>{CarryOut(t, c, decider.actor, now)};
  }
  return absl::NotFoundError(
      absl::StrCat("compensation_id: no compensation \"", compensation_id, "\" on this ticket"));
}

}  // namespace crm::complaint_ticket
