#include "services/complaint_ticket/complaint_ticket_service.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/peer.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/idempotency.h"
#include "libs/text/message_template.h"
#include "services/complaint_ticket/canned_replies.h"
#include "services/complaint_ticket/goodwill.h"
#include "services/complaint_ticket/routing.h"
#include "services/complaint_ticket/sla.h"
#include "services/complaint_ticket/ticket_index.h"
#include "services/complaint_ticket/ticket_merge.h"
#include "services/complaint_ticket/ticket_search.h"

namespace crm::complaint_ticket {
namespace {

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

// Agents' internal notes are never shown to the customer (TicketMessage.internal), whichever method
// answers them the ticket. Fails closed: a call whose caller cannot be read is treated as theirs.
bool HidesInternalNotes(const grpc::ServerContextBase& ctx) {
  const absl::StatusOr<auth::Caller> caller = rpc::CallerOf(ctx);
  return !caller.ok() || rpc::IsCustomer(*caller);
}
// Tags are staff labels too ("abusive", "vip"): a customer's answers leave them out with the notes.
void HideInternalNotes(v1::Ticket& ticket) {
  auto* messages = ticket.mutable_messages();
  messages->erase(std::remove_if(messages->begin(), messages->end(),
                                 [](const v1::TicketMessage& m) { return m.internal(); }),
                  messages->end());
  ticket.clear_tags();
}

// Search queries: at most this many characters and distinct terms.
constexpr int kMaxQueryChars = 200;
constexpr size_t kMaxQueryTerms = 10;
constexpr rpc::PageSizes kTicketPages = {20, 100};

// What a listing's page tokens are bound to: the customer, and the filter and query when given (an
// unfiltered listing keeps the scope it always had).
template <typename Request>
std::string ListingScope(absl::string_view listing, const Request& req) {
  Request bound = req;
  bound.clear_page_size();
  bound.clear_page_token();
  bound.clear_customer_id();
  if (bound.ByteSizeLong() == 0) return absl::StrCat(listing, "/", req.customer_id());
  return absl::StrCat(listing, "/", req.customer_id(), "/", store::RequestFingerprint(bound));
}

// The tags a change names, checked and in lower case.
absl::StatusOr<std::vector<std::string>> TagsNamed(
    absl::string_view field, const google::protobuf::RepeatedPtrField<std::string>& tags) {
  if (tags.size() > kMaxTags) return Invalid(field, absl::StrCat("at most ", kMaxTags));
  std::vector<std::string> out;
  for (int i = 0; i < tags.size(); ++i) {
    CRM_ASSIGN_OR_RETURN(std::string tag, NormalizeTag(absl::StrCat(field, "[", i, "]"), tags[i]));
    out.push_back(std::move(tag));
  }
  return out;
}

bool IsFinal(const v1::Ticket& t) {
  return t.status() == v1::TICKET_STATUS_RESOLVED || t.status() == v1::TICKET_STATUS_CLOSED;
}

bool CountsOpen(const v1::Ticket& t) {
  return t.status() == v1::TICKET_STATUS_OPEN || t.status() == v1::TICKET_STATUS_IN_PROGRESS;
}

std::string Lower(const std::string& enum_name, size_t prefix) {
  return absl::AsciiStrToLower(enum_name.substr(prefix));
}

v1::TicketMessage Message(v1::Ticket& t, v1::MessageAuthor author, const std::string& agent_id,
                          const std::string& text, bool internal, absl::Time now) {
  v1::TicketMessage m;
  m.set_message_id(absl::StrCat("m", t.messages_size() + 1));
  api::SetTimestamp(now, m.mutable_time());
  m.set_author(author);
  m.set_agent_id(agent_id);
  m.set_text(text);
  m.set_internal(internal);
  return m;
}

absl::Status ValidateCompensation(const std::string& f, const v1::Compensation& c,
                                  const v1::Ticket* ticket) {
  switch (c.kind()) {
    case v1::COMPENSATION_KIND_POINTS:
      if (c.points() <= 0 || c.points() > kMaxCompensationPoints)
        return Invalid(f + ".points", absl::StrCat("must be 1-", kMaxCompensationPoints));
      break;
    case v1::COMPENSATION_KIND_COUPON:
      if (c.coupon_value().amount_minor() <= 0)
        return Invalid(f + ".coupon_value.amount_minor", "must be positive");
      CRM_RETURN_IF_ERROR(
          api::CurrencyCode(f + ".coupon_value.currency", c.coupon_value().currency()));
      break;
    case v1::COMPENSATION_KIND_APOLOGY_LETTER:
      CRM_RETURN_IF_ERROR(api::RequiredText(f + ".text", c.text(), 5000));
      break;
    case v1::COMPENSATION_KIND_EXCHANGE:
      CRM_RETURN_IF_ERROR(api::RequiredText(f + ".text", c.text(), 1000));
      if (ticket != nullptr && ticket->order_id().empty())
        return Invalid(f, "an exchange needs the ticket's order");
      break;
    case v1::COMPENSATION_KIND_REFUND:
      if (c.refund_items().empty()) return Invalid(f + ".refund_items", "name the items to refund");
      for (int i = 0; i < c.refund_items_size(); ++i) {
        if (auto s = api::RequiredId(absl::StrCat(f, ".refund_items[", i, "].item_id"),
                                     c.refund_items(i).item_id());
            !s.ok()) {
          return s;
        }
        if (c.refund_items(i).quantity() <= 0)
          return Invalid(absl::StrCat(f, ".refund_items[", i, "].quantity"), "must be at least 1");
      }
      if (ticket != nullptr && ticket->order_id().empty())
        return Invalid(f, "a refund needs the ticket's order");
      break;
    case v1::COMPENSATION_KIND_GOODWILL_REFUND:
    case v1::COMPENSATION_KIND_RESHIPMENT: return ValidateGoodwill(f, c, ticket);
    default:
      return Invalid(f + ".kind",
                     "must be POINTS, COUPON, APOLOGY_LETTER, EXCHANGE, REFUND, GOODWILL_REFUND or "
                     "RESHIPMENT");
  }
  return absl::OkStatus();
}

absl::Status ValidateCompensations(const google::protobuf::RepeatedPtrField<v1::Compensation>& cs,
                                   const v1::Ticket* ticket) {
  for (int i = 0; i < cs.size(); ++i) {
    CRM_RETURN_IF_ERROR(
        ValidateCompensation(absl::StrCat("compensations[", i, "]"), cs[i], ticket));
  }
  return absl::OkStatus();
}

bool Automatic(v1::CompensationKind k) {
  return k == v1::COMPENSATION_KIND_POINTS || k == v1::COMPENSATION_KIND_COUPON ||
         k == v1::COMPENSATION_KIND_REFUND;
}

absl::StatusOr<AgentCall> ActingAgentOf(const grpc::ServerContextBase& ctx,
                                        const std::string& claimed) {
  CRM_ASSIGN_OR_RETURN(auth::Caller caller, rpc::CallerOf(ctx));
  CRM_ASSIGN_OR_RETURN(std::string agent_id, rpc::ActingAgent(caller, "agent_id", claimed));
  CRM_RETURN_IF_ERROR(api::RequiredId("agent_id", agent_id));
  return AgentCall{std::move(caller), std::move(agent_id)};
}

// The ticket a call names, and the agent acting on it.
absl::StatusOr<AgentCall> AgentOnTicket(const grpc::ServerContextBase& ctx,
                                        const std::string& customer_id,
                                        const std::string& ticket_id, const std::string& claimed) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", customer_id));
  CRM_RETURN_IF_ERROR(api::RequiredId("ticket_id", ticket_id));
  return ActingAgentOf(ctx, claimed);
}

absl::Status ValidateOpen(const v1::OpenTicketRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  if (req.channel() == v1::TICKET_CHANNEL_UNSPECIFIED ||
      req.channel() == v1::TICKET_CHANNEL_PROACTIVE || !v1::TicketChannel_IsValid(req.channel())) {
    return Invalid("channel", "must be WEB, EMAIL, PHONE, CHAT, REVIEW or MARKETPLACE_DISPUTE");
  }
  if (req.category() == v1::TICKET_CATEGORY_UNSPECIFIED ||
      !v1::TicketCategory_IsValid(req.category())) {
    return Invalid("category", "must be DELIVERY, QUALITY, REFUND, SERVICE_ATTITUDE or OTHER");
  }
  if (!req.order_id().empty()) CRM_RETURN_IF_ERROR(api::RequiredId("order_id", req.order_id()));
  CRM_RETURN_IF_ERROR(api::OptionalText("subject", req.subject(), 200));
  return api::RequiredText("text", req.text(), kMaxTextChars);
}

// Who writes a reply comes from the token: a customer replies as the customer, an agent as
// themself. Admins and the system's own processes name the author.
absl::StatusOr<v1::MessageAuthor> ReplyAuthor(const auth::Caller& caller,
                                              v1::MessageAuthor author) {
  if (rpc::IsCustomer(caller) || rpc::IsAgent(caller)) {
    const v1::MessageAuthor own =
        rpc::IsCustomer(caller) ? v1::MESSAGE_AUTHOR_CUSTOMER : v1::MESSAGE_AUTHOR_AGENT;
    if (author != v1::MESSAGE_AUTHOR_UNSPECIFIED && author != own) {
      return absl::PermissionDeniedError(
          absl::StrCat("author: a ", rpc::IsCustomer(caller) ? "customer" : "agent",
                       " replies only as ", rpc::IsCustomer(caller) ? "the customer" : "themself"));
    }
    author = own;
  }
  if (author != v1::MESSAGE_AUTHOR_CUSTOMER && author != v1::MESSAGE_AUTHOR_AGENT) {
    return Invalid("author", "must be CUSTOMER or AGENT");
  }
  return author;
}

// An agent's reply names the agent and the date of the next step; a customer's names no agent.
absl::Status CheckReplyAgent(const v1::ReplyToTicketRequest& req, bool agent,
                             const std::string& agent_id, absl::Time now) {
  if (!agent && !agent_id.empty())
    return Invalid("agent_id", "only an agent's reply names an agent");
  if (!agent) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(api::RequiredId("agent_id", agent_id));
  if (!req.has_next_step_time()) {
    return Invalid("next_step_time",
                   "an agent's reply must name the date of the next step, not \"later\"");
  }
  CRM_ASSIGN_OR_RETURN(const absl::Time next, api::ToTime("next_step_time", req.next_step_time()));
  return CheckNextStepTime(next, now);
}

// Who replies, as the token allows.
struct Replier {
  auth::Caller caller;
  v1::MessageAuthor author;
  std::string agent_id;
};

absl::StatusOr<Replier> ValidateReply(const grpc::ServerContextBase& ctx,
                                      const v1::ReplyToTicketRequest& req, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("ticket_id", req.ticket_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_ASSIGN_OR_RETURN(auth::Caller caller, rpc::CallerOf(ctx));
  CRM_ASSIGN_OR_RETURN(const v1::MessageAuthor author, ReplyAuthor(caller, req.author()));
  if (req.canned_reply_id().empty()) {
    CRM_RETURN_IF_ERROR(api::RequiredText("text", req.text(), kMaxTextChars));
    if (!req.variables().empty())
      return Invalid("variables", "only a reply from a canned reply has variables");
  } else {
    CRM_RETURN_IF_ERROR(api::RequiredId("canned_reply_id", req.canned_reply_id()));
    if (author != v1::MESSAGE_AUTHOR_AGENT)
      return absl::PermissionDeniedError("canned_reply_id: only agents answer with canned replies");
    if (!req.text().empty()) return Invalid("text", "leave it empty: the canned reply is the text");
    if (req.variables_size() > 20) return Invalid("variables", "at most 20");
  }
  CRM_ASSIGN_OR_RETURN(std::string agent_id, rpc::ActingAgent(caller, "agent_id", req.agent_id()));
  CRM_RETURN_IF_ERROR(CheckReplyAgent(req, author == v1::MESSAGE_AUTHOR_AGENT, agent_id, now));
  return Replier{std::move(caller), author, std::move(agent_id)};
}

// The reply as the ticket's next message. An agent's reply is a response: it sets the next update's
// deadline, starts the work and takes the ticket when nobody has.
absl::Status AddReply(TicketSession& session, const v1::ReplyToTicketRequest& req,
                      const std::string& text, v1::MessageAuthor author,
                      const std::string& agent_id, absl::Time now) {
  v1::Ticket& t = session.ticket();
  if (t.status() == v1::TICKET_STATUS_CLOSED) {
    return absl::FailedPreconditionError("ticket_id: the ticket is closed; open a new one");
  }
  v1::TicketMessage m = Message(t, author, agent_id, text, false, now);
  if (author == v1::MESSAGE_AUTHOR_AGENT) {
    *m.mutable_next_step_time() = req.next_step_time();
    if (!t.sla().has_first_response_time())
      api::SetTimestamp(now, t.mutable_sla()->mutable_first_response_time());
    *t.mutable_sla()->mutable_next_update_due() = req.next_step_time();
    if (t.status() == v1::TICKET_STATUS_OPEN) t.set_status(v1::TICKET_STATUS_IN_PROGRESS);
    if (t.assigned_agent_id().empty()) t.set_assigned_agent_id(agent_id);
    session.RememberAgent(agent_id);
  }
  *t.add_messages() = std::move(m);
  return absl::OkStatus();
}

absl::Status ValidateCallback(const v1::PromiseCallbackRequest& req, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(api::OptionalText("note", req.note(), 500));
  if (!req.has_callback_time()) return Invalid("callback_time", "the promised time is required");
  CRM_ASSIGN_OR_RETURN(const absl::Time when, api::ToTime("callback_time", req.callback_time()));
  if (!CheckNextStepTime(when, now).ok()) {
    return Invalid("callback_time", "must be in the future and within 14 days");
  }
  return absl::OkStatus();
}

// The promised call, and a message telling the customer when it comes.
absl::Status AddCallback(TicketSession& session, const v1::PromiseCallbackRequest& req,
                         const std::string& agent_id, absl::Time now) {
  v1::Ticket& t = session.ticket();
  if (t.status() == v1::TICKET_STATUS_CLOSED) {
    return absl::FailedPreconditionError("ticket_id: the ticket is closed");
  }
  auto* c = t.add_callbacks();
  c->set_callback_id(absl::StrCat("cb", t.callbacks_size()));
  c->set_agent_id(agent_id);
  *c->mutable_promised_time() = req.callback_time();
  c->set_note(req.note());
  c->set_status(v1::CALLBACK_STATUS_PROMISED);
  *t.add_messages() = Message(
      t, v1::MESSAGE_AUTHOR_SYSTEM, agent_id,
      absl::StrCat("we will call you back at ",
                   absl::FormatTime("%Y-%m-%d %H:%M UTC", api::FromTimestamp(req.callback_time()),
                                    absl::UTCTimeZone())),
      false, now);
  return absl::OkStatus();
}

absl::Status ValidateResolution(const v1::ResolveTicketRequest& req) {
  if (!api::RequiredText("summary", req.summary(), 2000).ok()) {
    return Invalid("summary", "a ticket is resolved with what was found and done");
  }
  if (req.compensations_size() > 10) return Invalid("compensations", "at most 10");
  return ValidateCompensations(req.compensations(), nullptr);
}

// A compensation as the resolution records it: numbered, and pending until carried out.
v1::Compensation NewCompensation(v1::Compensation c, int index, absl::Time now) {
  c.set_compensation_id(absl::StrCat("c", index + 1));
  // An apology letter is written with the resolution: it is done when it is recorded.
  const bool done_now = c.kind() == v1::COMPENSATION_KIND_APOLOGY_LETTER;
  c.set_status(done_now ? v1::COMPENSATION_STATUS_CONFIRMED : v1::COMPENSATION_STATUS_PENDING);
  if (done_now) api::SetTimestamp(now, c.mutable_confirmed_time());
  return c;
}

// The return that pays a refund compensation out, under the compensation's own request id.
v1::RequestReturnRequest RefundRequest(const v1::Ticket& ticket, const v1::Compensation& c,
                                       const std::string& request_id) {
  v1::RequestReturnRequest r;
  r.set_customer_id(ticket.customer_id());
  r.set_order_id(ticket.order_id());
  r.set_request_id(request_id);
  for (const auto& item : c.refund_items()) {
    auto* ri = r.add_items();
    ri->set_item_id(item.item_id());
    ri->set_quantity(item.quantity());
  }
  r.set_reason(absl::StrCat("refund granted by complaint ", ticket.ticket_id()));
  // The platform owns the problem (seed 002 §3.4): the customer is never at fault for a complaint
  // refund.
  r.set_fault(v1::FAULT_MERCHANT);
  return r;
}

// Whether the ticket waits for the refund of this return.
bool AwaitsRefund(const v1::Ticket& t, const std::string& return_id) {
  bool matches = false;
  for (const auto& c : t.resolution().compensations()) {
    matches = matches || (c.kind() == v1::COMPENSATION_KIND_REFUND && c.reference() == return_id &&
                          c.status() == v1::COMPENSATION_STATUS_PENDING);
  }
  return matches;
}

// The ticket an event opens on its own, before the customer complains: a low review, a failed
// delivery, a late one. Keyed by the event, so a redelivered event opens none.
std::optional<AutomaticTicket> AutomaticTicketFor(const v1::Event& event) {
  if (event.has_review_submitted() && event.review_submitted().rating() <= 3) {
    const auto& r = event.review_submitted();
    const std::string text =
        r.text().empty() ? absl::StrCat("Rated ", r.sku(), " ", r.rating(), " stars out of 5")
                         : absl::StrCat(r.text(), " (", r.rating(), " stars)");
    return AutomaticTicket{absl::StrCat("review:", r.review_id()),
                           v1::TICKET_CHANNEL_REVIEW,
                           v1::TICKET_CATEGORY_QUALITY,
                           r.order_id(),
                           absl::StrCat(r.rating(), "-star review of ", r.sku()),
                           text};
  }
  if (event.has_delivery_failed()) {
    const auto& d = event.delivery_failed();
    return AutomaticTicket{
        absl::StrCat("delivery-failed:", d.order_id(), ":", d.package_id(), ":", d.attempt()),
        v1::TICKET_CHANNEL_PROACTIVE,
        v1::TICKET_CATEGORY_DELIVERY,
        d.order_id(),
        "Delivery failed",
        absl::StrCat("Delivery attempt ", d.attempt(), " of package ", d.package_id(), " failed: ",
                     d.reason(), ". We contact the customer before they have to contact us.")};
  }
  if (event.has_order_delivered() && event.order_delivered().timeliness() == v1::TIMELINESS_LATE) {
    const auto& d = event.order_delivered();
    return AutomaticTicket{
        absl::StrCat("late:", d.order_id()),
        v1::TICKET_CHANNEL_PROACTIVE,
        v1::TICKET_CATEGORY_DELIVERY,
        d.order_id(),
        "Late delivery",
        absl::StrCat("Order ", d.order_id(), " arrived ", d.minutes_late(),
                     " minutes after the agreed delivery window. Apologise and offer a gesture.")};
  }
  return std::nullopt;
}

absl::Status ValidateSurvey(const grpc::ServerContextBase& ctx,
                            const v1::SubmitSatisfactionRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("ticket_id", req.ticket_id()));
  if (req.csat() < 1 || req.csat() > 5)
    return Invalid("csat", "must be 1 (very dissatisfied) to 5 (very satisfied)");
  CRM_RETURN_IF_ERROR(api::OptionalText("comment", req.comment(), 1000));
  // The survey is the customer's own voice: only the ticket's customer answers it.
  CRM_ASSIGN_OR_RETURN(const auth::Caller caller, rpc::CallerOf(ctx));
  if (!caller.internal &&
      (caller.role != v1::ROLE_CUSTOMER || caller.customer_id != req.customer_id())) {
    return absl::PermissionDeniedError(
        "csat: only the ticket's own customer rates how it was handled");
  }
  return absl::OkStatus();
}

// The survey's answer closes a resolved ticket; the same answer again changes nothing.
absl::Status RecordSatisfaction(TicketSession& session, const v1::SubmitSatisfactionRequest& req,
                                absl::Time now) {
  v1::Ticket& t = session.ticket();
  if (t.status() == v1::TICKET_STATUS_CLOSED && t.satisfaction().csat() == req.csat()) {
    session.MarkUnchanged();
    return absl::OkStatus();
  }
  if (t.status() != v1::TICKET_STATUS_RESOLVED) {
    return absl::FailedPreconditionError(
        absl::StrCat("ticket_id: the survey comes after resolution; the ticket is ",
                     Lower(v1::TicketStatus_Name(t.status()), 14)));
  }
  t.mutable_satisfaction()->set_csat(req.csat());
  t.mutable_satisfaction()->set_comment(req.comment());
  api::SetTimestamp(now, t.mutable_satisfaction()->mutable_time());
  t.set_status(v1::TICKET_STATUS_CLOSED);
  v1::Event e;
  e.mutable_satisfaction_rated()->set_ticket_id(t.ticket_id());
  e.mutable_satisfaction_rated()->set_csat(req.csat());
  session.Emit(std::move(e));
  return absl::OkStatus();
}

}  // namespace

TicketMetrics::TicketMetrics(prometheus::Registry& r)
    : open(metrics::GaugeFamily(r, "crm_tickets_open", "Open tickets, by priority (p1, p2, p3).")),
      opened(metrics::CounterFamily(r, "crm_tickets_opened_total", "Tickets opened, by channel.")),
      breaches(metrics::CounterFamily(
          r, "crm_sla_breaches_total",
          "Promises broken, by kind (first_response, next_update, resolution, callback).")),
      escalations(metrics::Counter(
          r, "crm_ticket_escalations_total",
          "Tickets escalated to the next level because a deadline was near or passed.")),
      first_response_seconds(
          metrics::HistogramFamily(r, "crm_ticket_first_response_seconds",
                                   "Time from opening to the first agent reply.")
              .Add({}, prometheus::Histogram::BucketBoundaries{900, 1800, 3600, 7200, 14400, 28800,
                                                               43200, 86400, 172800, 345600})),
      resolution_seconds(
          metrics::HistogramFamily(r, "crm_ticket_resolution_seconds",
                                   "Time from opening to resolution (compensation confirmed).")
              .Add({}, prometheus::Histogram::BucketBoundaries{3600, 14400, 43200, 86400, 172800,
                                                               259200, 432000, 604800, 1209600,
                                                               2592000})),
      csat(metrics::CounterFamily(r, "crm_ticket_csat_total",
                                  "Satisfaction survey answers, by score 1-5.")) {}

ComplaintTicketService::ComplaintTicketService(ComplaintTicketStore* store,
                                               internal::SeverityLexicon lexicon,
                                               std::optional<SeverityModel> severity_model,
                                               Clock* clock, rpc::Executor* writes,
                                               rpc::Backends* backends,
                                               prometheus::Registry& registry)
    : store_(store),
      lexicon_(std::move(lexicon)),
      severity_model_(std::move(severity_model)),
      clock_(clock),
      writes_(writes),
      backends_(backends),
      metrics_(registry) {}

void ComplaintTicketService::CountOpen() {
  auto counts = store_->OpenByPriority();
  if (!counts.ok()) return;
  for (v1::Priority p : {v1::PRIORITY_P1, v1::PRIORITY_P2, v1::PRIORITY_P3}) {
    metrics_.open.Add({{"priority", Lower(v1::Priority_Name(p), 9)}})
        .Set(static_cast<double>((*counts)[p]));
  }
}

void ComplaintTicketService::CountOnCommit(store::Transaction& txn, v1::Ticket before,
                                           v1::Ticket after) {
  // The consumer's transaction may run its body again after a conflict: count a change once it has
  // committed, never per attempt.
  txn.OnFinish([this, before = std::move(before), after = std::move(after)](bool committed) {
    if (committed) Committed(before, after);
  });
}

void ComplaintTicketService::Committed(const v1::Ticket& before, const v1::Ticket& after) {
  if (CountsOpen(before) && !before.ticket_id().empty()) {
    metrics_.open.Add({{"priority", Lower(v1::Priority_Name(before.priority()), 9)}}).Decrement();
  }
  if (CountsOpen(after))
    metrics_.open.Add({{"priority", Lower(v1::Priority_Name(after.priority()), 9)}}).Increment();
  if (before.ticket_id().empty())
    metrics_.opened.Add({{"channel", Lower(v1::TicketChannel_Name(after.channel()), 15)}})
        .Increment();
  for (int i = before.sla().breaches_size(); i < after.sla().breaches_size(); ++i) {
    metrics_.breaches.Add({{"kind", SlaKindName(after.sla().breaches(i).kind())}}).Increment();
  }
  if (after.escalations() > before.escalations())
    metrics_.escalations.Increment(after.escalations() - before.escalations());
  const absl::Time created = api::FromTimestamp(after.create_time());
  if (!before.sla().has_first_response_time() && after.sla().has_first_response_time()) {
    metrics_.first_response_seconds.Observe(
        absl::ToDoubleSeconds(api::FromTimestamp(after.sla().first_response_time()) - created));
  }
  if (!IsFinal(before) && IsFinal(after) && after.resolution().has_resolved_time()) {
    metrics_.resolution_seconds.Observe(
        absl::ToDoubleSeconds(api::FromTimestamp(after.resolution().resolved_time()) - created));
  }
  if (!before.has_satisfaction() && after.has_satisfaction()) {
    metrics_.csat.Add({{"score", std::to_string(after.satisfaction().csat())}}).Increment();
  }
}

absl::Status ComplaintTicketService::CheckCustomer(const std::string& customer_id) {
  return rpc::FetchCustomer(*backends_, customer_id).status();
}

void ComplaintTicketService::CustomerStanding(const std::string& customer_id, CustomerValue* value,
                                              std::string* named_agent) {
  v1::GetMembershipRequest req;
  req.set_customer_id(customer_id);
  auto m = rpc::Peer<v1::LoyaltyService>(backends_).Call(customer_id, "tell the customer's tier",
                                                         &v1::LoyaltyService::Stub::GetMembership,
                                                         req, absl::Seconds(2));
  // A complaint is never refused because loyalty is away: the value is then simply unknown.
  if (!m.ok()) return;
  value->tier = static_cast<int>(m->tier());
  value->enterprise = m->enterprise();
  *named_agent = m->named_agent_id();
}

absl::Status ComplaintTicketService::CheckAgent(const std::string& agent_id) {
  CRM_ASSIGN_OR_RETURN(auto agents, store_->Agents());
  for (const auto& a : agents) {
    if (a.agent_id() == agent_id) return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("agent_id: no agent \"", agent_id, "\""));
}

absl::Status ComplaintTicketService::Route(TicketSession& s, const std::string& preferred) {
  CRM_ASSIGN_OR_RETURN(auto agents, s.Agents());
  v1::Ticket& t = s.ticket();
  std::vector<v1::Agent> candidates = agents;
  for (;;) {
    auto choice = ChooseAgent(candidates, t.handling_level(), t.category(), preferred);
    if (!choice.has_value()) {
      t.clear_assigned_agent_id();  // waits in the queue; the sweep assigns it when someone frees
                                    // up
      return absl::OkStatus();
    }
    if (*choice == t.assigned_agent_id()) return absl::OkStatus();
    // Re-check under the agent's lock: another ticket may have taken the last place meanwhile.
    auto locked = s.LockAgent(*choice);
    if (!locked.ok()) return locked.status();
    if (CanTake(*locked, t.category())) {
      t.set_assigned_agent_id(*choice);
      return absl::OkStatus();
    }
    for (auto& c : candidates) {
      if (c.agent_id() == *choice) c.set_available(false);
    }
  }
}

absl::Status ComplaintTicketService::BuildTicket(
    TicketSession& s, v1::TicketChannel channel, v1::TicketCategory category,
    const std::string& order_id, const std::string& subject, const std::string& text,
    CustomerValue value, bool automatic, const std::string& preferred, absl::Time now) {
  v1::Ticket& t = s.ticket();
  // Ids sort by opening time, so a customer's tickets list in order.
  t.set_ticket_id(absl::StrCat("t", absl::FormatTime("%Y%m%d%H%M%S", now, absl::UTCTimeZone()), "-",
                               sharding::NewId("")));
  t.set_channel(channel);
  t.set_category(category);
  t.set_order_id(order_id);
  t.set_subject(subject);
  t.set_text(text);
  t.set_status(v1::TICKET_STATUS_OPEN);
  // The service's own words on an automatic ticket ("Delivery attempt 1 failed ...") are not a
  // customer's: the model, fitted on customers' messages, does not judge them.
  *t.mutable_severity() = complaint_ticket::AssessSeverity(
      lexicon_, text, category, value, automatic ? nullptr : SeverityModelInUse());
  t.set_handling_level(t.severity().handling_level());
  t.set_priority(t.severity().priority());
  t.set_enterprise(value.enterprise);
  t.set_automatic(automatic);
  api::SetTimestamp(now, t.mutable_create_time());
  StartSla(t, now);
  *t.add_messages() = Message(
      t, automatic ? v1::MESSAGE_AUTHOR_SYSTEM : v1::MESSAGE_AUTHOR_CUSTOMER, "", text, false, now);
  CRM_RETURN_IF_ERROR(Route(s, preferred));
  v1::Event e;
  auto* o = e.mutable_ticket_opened();
  o->set_ticket_id(t.ticket_id());
  o->set_category(Lower(v1::TicketCategory_Name(category), 16));
  o->set_handling_level(t.handling_level());
  o->set_severity_score(t.severity().score());
  o->set_automatic(automatic);
  o->set_order_id(order_id);
  s.Emit(std::move(e));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ComplaintTicketService::OpenTicket(Ctx* ctx,
                                                             const v1::OpenTicketRequest* req,
                                                             v1::Ticket* resp) {
  if (auto s = ValidateOpen(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(),
      [this, req, resp, now, hide = HidesInternalNotes(*ctx)](const std::string& request_id) {
        CRM_RETURN_IF_ERROR(Open(*req, request_id, now, resp));
        if (hide) HideInternalNotes(*resp);
        return absl::OkStatus();
      });
}

absl::Status ComplaintTicketService::Open(const v1::OpenTicketRequest& req,
                                          const std::string& request_id, absl::Time now,
                                          v1::Ticket* resp) {
  CRM_RETURN_IF_ERROR(CheckCustomer(req.customer_id()));
  CustomerValue value;
  std::string named_agent;
  CustomerStanding(req.customer_id(), &value, &named_agent);
  bool created = false;  // false when this is a retry answered from the first call's record
  CRM_RETURN_IF_ERROR(store_->OpenTicket(
      req.customer_id(), request_id, store::RequestFingerprint(req), now,
      [&](TicketSession& session) -> absl::Status {
        created = true;
        CRM_ASSIGN_OR_RETURN(auto last, session.LastAgent());
        // An enterprise account's named agent first, else the agent who handled the customer
        // last.
        const std::string preferred = !named_agent.empty() ? named_agent : last;
        CRM_RETURN_IF_ERROR(BuildTicket(session, req.channel(), req.category(), req.order_id(),
                                        req.subject(), req.text(), value, false, preferred, now));
        return ticket_opened_ ? ticket_opened_(session.txn(), req.customer_id(), now)
                              : absl::OkStatus();
      },
      resp));
  if (created) Committed(v1::Ticket(), *resp);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ComplaintTicketService::GetTicket(Ctx* ctx,
                                                            const v1::GetTicketRequest* req,
                                                            v1::Ticket* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("ticket_id", req->ticket_id()); !s.ok()) return Finish(ctx, s);
  absl::StatusOr<v1::Ticket> ticket = store_->Get(req->customer_id(), req->ticket_id());
  if (ticket.ok() && HidesInternalNotes(*ctx)) HideInternalNotes(*ticket);
  return rpc::FinishWith(ctx, std::move(ticket), resp);
}

grpc::ServerUnaryReactor* ComplaintTicketService::ListTickets(Ctx* ctx,
                                                              const v1::ListTicketsRequest* req,
                                                              v1::ListTicketsResponse* resp) {
  const bool customer = HidesInternalNotes(*ctx);
  absl::Status read;
  if (IsEmpty(req->filter())) {
    read = rpc::ReadCustomerPage(*req, "tickets", kTicketPages,
                                 std::bind_front(&ComplaintTicketStore::List, store_),
                                 resp->mutable_tickets(), resp->mutable_next_page_token());
  } else {
    read = [&]() -> absl::Status {
      CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
      CRM_RETURN_IF_ERROR(ValidateFilter("filter", req->filter(), customer));
      CRM_ASSIGN_OR_RETURN(const rpc::PageRequest page,
                           rpc::PageOf(req->page_size(), req->page_token(),
                                       ListingScope("tickets", *req), kTicketPages));
      return rpc::ReadPage(
          page,
          [&](absl::string_view after, int limit, std::vector<v1::Ticket>* out, std::string* last,
              bool* more) {
            return store_->FindTickets(PrefixesToRead(req->filter(), req->customer_id()),
                                       req->filter(), req->customer_id(), clock_->Now(), after,
                                       limit, out, last, more);
          },
          resp->mutable_tickets(), resp->mutable_next_page_token());
    }();
  }
  if (read.ok() && customer) {
    for (v1::Ticket& ticket : *resp->mutable_tickets()) HideInternalNotes(ticket);
  }
  return Finish(ctx, read);
}

grpc::ServerUnaryReactor* ComplaintTicketService::SearchTickets(Ctx* ctx,
                                                                const v1::SearchTicketsRequest* req,
                                                                v1::SearchTicketsResponse* resp) {
  const absl::StatusOr<auth::Caller> caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  // A customer searches their own tickets only, and never by what only agents see.
  const bool customer = rpc::IsCustomer(*caller);
  const absl::Status read = [&]() -> absl::Status {
    if (customer || !req->customer_id().empty())
      CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
    if (customer && req->customer_id() != caller->customer_id) {
      return absl::PermissionDeniedError("customer_id: a customer searches only their own tickets");
    }
    CRM_RETURN_IF_ERROR(ValidateFilter("filter", req->filter(), customer));
    CRM_RETURN_IF_ERROR(api::OptionalText("query", req->query(), kMaxQueryChars));
    const std::vector<std::string> terms = QueryTerms(req->query(), kMaxQueryTerms);
    if (terms.empty() && !absl::StripAsciiWhitespace(req->query()).empty())
      return Invalid("query", "holds no word to search for");
    CRM_ASSIGN_OR_RETURN(const rpc::PageRequest page,
                         rpc::PageOf(req->page_size(), req->page_token(),
                                     ListingScope("ticket-search", *req), kTicketPages));
    const absl::Time now = clock_->Now();
    return rpc::ReadPage(
        page,
        [&](absl::string_view after, int limit, std::vector<v1::Ticket>* out, std::string* last,
            bool* more) {
          if (terms.empty()) {
            return store_->FindTickets(PrefixesToRead(req->filter(), req->customer_id()),
                                       req->filter(), req->customer_id(), now, after, limit, out,
                                       last, more);
          }
          return store_->SearchTickets(terms, !customer, req->filter(), req->customer_id(), now,
                                       after, limit, out, last, more);
        },
        resp->mutable_tickets(), resp->mutable_next_page_token());
  }();
  if (read.ok() && customer) {
    for (v1::Ticket& ticket : *resp->mutable_tickets()) HideInternalNotes(ticket);
  }
  return Finish(ctx, read);
}

absl::StatusOr<std::string> ComplaintTicketService::CannedText(const v1::ReplyToTicketRequest& req,
                                                               const std::string& agent_id) {
  CRM_ASSIGN_OR_RETURN(const v1::CannedReply reply, store_->GetCannedReply(req.canned_reply_id()));
  CRM_ASSIGN_OR_RETURN(const v1::Ticket ticket, store_->Get(req.customer_id(), req.ticket_id()));
  CRM_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                       text::TemplateVariables("canned_reply_id", reply.text()));
  std::map<std::string, std::string> from_ticket = {{"order_id", ticket.order_id()},
                                                    {"ticket_id", ticket.ticket_id()}};
  auto needs = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end() &&
           !req.variables().contains(name);
  };
  // Only what the template needs and the reply does not give is looked up.
  if (needs("customer_name")) {
    CRM_ASSIGN_OR_RETURN(const v1::Customer customer,
                         rpc::FetchCustomer(*backends_, req.customer_id()));
    from_ticket["customer_name"] = customer.name();
  }
  if (needs("agent_name")) {
    CRM_ASSIGN_OR_RETURN(const auto agents, store_->Agents());
    for (const auto& a : agents) {
      if (a.agent_id() == agent_id) from_ticket["agent_name"] = a.name();
    }
  }
  return RenderCannedReply(reply, req.variables(), from_ticket);
}

absl::StatusOr<std::string> ComplaintTicketService::CannedReplyManager(const auth::Caller& caller) {
  if (!rpc::IsAgent(caller)) return rpc::Actor(caller);
  CRM_ASSIGN_OR_RETURN(const auto agents, store_->Agents());
  const int supervisor = SlaRulesInForce::Process().Latest()->supervisor_level();
  for (const auto& a : agents) {
    if (a.agent_id() != caller.subject) continue;
    if (a.level() < supervisor) {
      return absl::PermissionDeniedError(absl::StrCat(
          "agent_id: a level ", a.level(),
          " agent cannot manage canned replies; supervisors are level ", supervisor, " and above"));
    }
    return rpc::Actor(caller);
  }
  return absl::NotFoundError(absl::StrCat("agent_id: no agent \"", caller.subject, "\""));
}

grpc::ServerUnaryReactor* ComplaintTicketService::PutCannedReply(
    Ctx* ctx, const v1::PutCannedReplyRequest* req, v1::CannedReply* resp) {
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateCannedReply("canned_reply", req->canned_reply()); !s.ok())
    return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(const std::string actor, CannedReplyManager(caller));
        v1::CannedReply reply = req->canned_reply();
        reply.set_updated_by(actor);
        reply.clear_update_time();
        return store_->PutCannedReply(
            reply, rpc::ScopedRequestId(caller, req->request_id(), "PutCannedReply"),
            store::RequestFingerprint(*req), now, resp);
      });
}

grpc::ServerUnaryReactor* ComplaintTicketService::DeleteCannedReply(
    Ctx* ctx, const v1::DeleteCannedReplyRequest* req, v1::DeleteCannedReplyResponse*) {
  if (auto s = api::RequiredId("canned_reply_id", req->canned_reply_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, now](const auth::Caller& caller) -> absl::Status {
        CRM_RETURN_IF_ERROR(CannedReplyManager(caller).status());
        return store_->DeleteCannedReply(
            req->canned_reply_id(),
            rpc::ScopedRequestId(caller, req->request_id(), "DeleteCannedReply"),
            store::RequestFingerprint(*req), now);
      });
}

grpc::ServerUnaryReactor* ComplaintTicketService::ListCannedReplies(
    Ctx* ctx, const v1::ListCannedRepliesRequest*, v1::ListCannedRepliesResponse* resp) {
  absl::StatusOr<std::vector<v1::CannedReply>> replies = store_->CannedReplies();
  if (replies.ok()) {
    for (v1::CannedReply& r : *replies) {
      auto* listed = resp->add_canned_replies();
      auto names = text::TemplateVariables("text", r.text());
      if (names.ok()) {
        for (std::string& n : *names) listed->add_variables(std::move(n));
      }
      *listed->mutable_canned_reply() = std::move(r);
    }
  }
  return Finish(ctx, replies.status());
}

grpc::ServerUnaryReactor* ComplaintTicketService::MergeTickets(Ctx* ctx,
                                                               const v1::MergeTicketsRequest* req,
                                                               v1::Ticket* resp) {
  auto validated = [&]() -> absl::StatusOr<AgentCall> {
    CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("source_ticket_id", req->source_ticket_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("target_ticket_id", req->target_ticket_id()));
    if (req->source_ticket_id() == req->target_ticket_id())
      return Invalid("target_ticket_id", "a ticket does not merge into itself");
    CRM_RETURN_IF_ERROR(api::RequiredRequestId(req->request_id()));
    CRM_ASSIGN_OR_RETURN(auth::Caller caller, rpc::CallerOf(*ctx));
    // An agent merges as themself (the token's subject); an admin as the admin.
    CRM_ASSIGN_OR_RETURN(std::string agent_id, rpc::ActingAgent(caller, "agent_id", ""));
    return AgentCall{std::move(caller), std::move(agent_id)};
  }();
  if (!validated.ok()) return Finish(ctx, validated.status());
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx, [this, req, resp, now, by = *std::move(validated)]() -> absl::Status {
        if (!by.agent_id.empty()) CRM_RETURN_IF_ERROR(CheckAgent(by.agent_id));
        const bool agent = !by.agent_id.empty();
        const std::string actor = agent ? by.agent_id : rpc::Actor(by.caller);
        v1::Ticket source_before, source_after, target_before;
        CRM_RETURN_IF_ERROR(store_->MergeTickets(
            req->customer_id(), req->source_ticket_id(), req->target_ticket_id(),
            rpc::ScopedRequestId(by.caller, req->request_id(), "MergeTickets"),
            store::RequestFingerprint(*req), now,
            [&](TicketSession& source, TicketSession& target) -> absl::Status {
              source_before = source.ticket();
              target_before = target.ticket();
              CRM_RETURN_IF_ERROR(MergeInto(source.ticket(), target.ticket(), actor, agent, now));
              source_after = source.ticket();
              return absl::OkStatus();
            },
            resp));
        // Nothing ran, and nothing is counted, for a retry answered from the first call's record.
        if (!source_before.ticket_id().empty()) {
          Committed(source_before, source_after);
          Committed(target_before, *resp);
        }
        return absl::OkStatus();
      });
}

namespace {

// Adds `add` to and removes `remove` from the ticket's tags; the note for the agents who read it
// next
// ("tags added: a, b; removed: c"), empty when nothing changed.
absl::StatusOr<std::string> Retag(v1::Ticket& t, const std::vector<std::string>& add,
                                  const std::vector<std::string>& remove) {
  std::set<std::string> tags(t.tags().begin(), t.tags().end());
  std::vector<std::string> added, removed;
  for (const std::string& tag : add) {
    if (tags.insert(tag).second) added.push_back(tag);
  }
  for (const std::string& tag : remove) {
    if (tags.erase(tag) > 0) removed.push_back(tag);
  }
  if (added.empty() && removed.empty()) return std::string();
  if (static_cast<int>(tags.size()) > kMaxTags)
    return Invalid("add_tags",
                   absl::StrCat("a ticket holds at most ", kMaxTags, " tags; remove some first"));
  t.clear_tags();
  for (const std::string& tag : tags) t.add_tags(tag);
  std::string note = "tags";
  if (!added.empty()) absl::StrAppend(&note, " added: ", absl::StrJoin(added, ", "));
  if (!removed.empty())
    absl::StrAppend(&note, added.empty() ? "" : ";", " removed: ", absl::StrJoin(removed, ", "));
  return note;
}

}  // namespace

grpc::ServerUnaryReactor* ComplaintTicketService::UpdateTicketTags(
    Ctx* ctx, const v1::UpdateTicketTagsRequest* req, v1::Ticket* resp) {
  struct Change {
    auth::Caller caller;
    std::string agent_id;
    std::vector<std::string> add, remove;
  };
  auto validated = [&]() -> absl::StatusOr<Change> {
    CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("ticket_id", req->ticket_id()));
    CRM_RETURN_IF_ERROR(api::RequiredRequestId(req->request_id()));
    Change c;
    CRM_ASSIGN_OR_RETURN(c.add, TagsNamed("add_tags", req->add_tags()));
    CRM_ASSIGN_OR_RETURN(c.remove, TagsNamed("remove_tags", req->remove_tags()));
    if (c.add.empty() && c.remove.empty()) return Invalid("add_tags", "name tags to add or remove");
    CRM_ASSIGN_OR_RETURN(c.caller, rpc::CallerOf(*ctx));
    // An agent tags as themself (the token's subject); an admin as the admin.
    CRM_ASSIGN_OR_RETURN(c.agent_id, rpc::ActingAgent(c.caller, "agent_id", ""));
    return c;
  }();
  if (!validated.ok()) return Finish(ctx, validated.status());
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx, [this, req, resp, now, c = *std::move(validated)]() -> absl::Status {
        if (!c.agent_id.empty()) CRM_RETURN_IF_ERROR(CheckAgent(c.agent_id));
        return UpdateAndCount(
            req->customer_id(), req->ticket_id(),
            rpc::ScopedRequestId(c.caller, req->request_id(), "UpdateTicketTags"),
            store::RequestFingerprint(*req), now,
            [&](TicketSession& session) -> absl::Status {
              v1::Ticket& t = session.ticket();
              CRM_ASSIGN_OR_RETURN(const std::string note, Retag(t, c.add, c.remove));
              if (note.empty()) {
                session.MarkUnchanged();
                return absl::OkStatus();
              }
              // Who labelled the ticket how, for the agents who read it next.
              *t.add_messages() = Message(
                  t, c.agent_id.empty() ? v1::MESSAGE_AUTHOR_SYSTEM : v1::MESSAGE_AUTHOR_AGENT,
                  c.agent_id.empty() ? rpc::Actor(c.caller) : c.agent_id, note, true, now);
              return absl::OkStatus();
            },
            resp);
      });
}

grpc::ServerUnaryReactor* ComplaintTicketService::ListAtRiskTickets(
    Ctx* ctx, const v1::ListAtRiskTicketsRequest* req, v1::ListAtRiskTicketsResponse* resp) {
  auto page = rpc::PageOf(req->page_size(), req->page_token(), "at-risk", {50, 500});
  if (!page.ok()) return Finish(ctx, page.status());
  const int size = page->size;
  const absl::Time now = clock_->Now();
  std::string cursor = page->after;
  bool more = true;
  while (more && resp->tickets_size() < size) {
    std::vector<ComplaintTicketStore::DueEntry> due;
    if (auto s = store_->Due(now, cursor, size, &due, &more); !s.ok()) return Finish(ctx, s);
    for (const auto& d : due) {
      cursor = d.key;
      auto t = store_->Get(d.customer_id, d.ticket_id);
      // A row whose deadline the ticket no longer has is stale: the sweep drops it.
      if (!t.ok() || !ComplaintTicketStore::StillOpen(d, *t)) continue;
      const bool breached = now > d.due;
      auto* item = resp->add_tickets();
      *item->mutable_ticket() = std::move(*t);
      item->set_kind(d.kind);
      api::SetTimestamp(d.due, item->mutable_due_time());
      item->set_breached(breached);
      if (resp->tickets_size() == size) break;
    }
  }
  if (more) resp->set_next_page_token(api::EncodePageToken(page->scope, cursor));
  return Finish(ctx, absl::OkStatus());
}

template <typename Request>
grpc::ServerUnaryReactor* ComplaintTicketService::ChangeAsAgent(
    Ctx* ctx, const Request& req, const AgentCall& agent, absl::string_view method, absl::Time now,
    v1::Ticket* resp,
    absl::AnyInvocable<absl::Status(TicketSession&, const std::string& agent_id)> change) {
  return FinishOn(*writes_, ctx,
                  [this, &req, resp, now, agent_id = agent.agent_id,
                   request_id = rpc::ScopedRequestId(agent.caller, req.request_id(), method),
                   change = std::move(change)]() mutable -> absl::Status {
                    CRM_RETURN_IF_ERROR(CheckAgent(agent_id));
                    return store_->UpdateTicket(
                        req.customer_id(), req.ticket_id(), request_id,
                        store::RequestFingerprint(req), now,
                        [&](TicketSession& session) { return change(session, agent_id); }, resp);
                  });
}

grpc::ServerUnaryReactor* ComplaintTicketService::ReplyToTicket(Ctx* ctx,
                                                                const v1::ReplyToTicketRequest* req,
                                                                v1::Ticket* resp) {
  const absl::Time now = clock_->Now();
  auto by = ValidateReply(*ctx, *req, now);
  if (!by.ok()) return Finish(ctx, by.status());
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, author = by->author, agent_id = by->agent_id,
       hide = rpc::IsCustomer(by->caller),
       request_id =
           rpc::ScopedRequestId(by->caller, req->request_id(), "ReplyToTicket")]() -> absl::Status {
        if (author == v1::MESSAGE_AUTHOR_AGENT) CRM_RETURN_IF_ERROR(CheckAgent(agent_id));
        std::string text = req->text();
        if (!req->canned_reply_id().empty()) {
          CRM_ASSIGN_OR_RETURN(text, CannedText(*req, agent_id));
          if (!api::RequiredText("text", text, kMaxTextChars).ok())
            return Invalid("variables", "the filled canned reply must be 1-5000 characters");
        }
        CRM_RETURN_IF_ERROR(UpdateAndCount(
            req->customer_id(), req->ticket_id(), request_id, store::RequestFingerprint(*req), now,
            [&](TicketSession& session) {
              return AddReply(session, *req, text, author, agent_id, now);
            },
            resp));
        if (hide) HideInternalNotes(*resp);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* ComplaintTicketService::AddInternalNote(
    Ctx* ctx, const v1::AddInternalNoteRequest* req, v1::Ticket* resp) {
  auto agent = AgentOnTicket(*ctx, req->customer_id(), req->ticket_id(), req->agent_id());
  if (!agent.ok()) return Finish(ctx, agent.status());
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredText("text", req->text(), kMaxTextChars); !s.ok())
    return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return ChangeAsAgent(ctx, *req, *agent, "AddInternalNote", now, resp,
                       [req, now](TicketSession& session, const std::string& agent_id) {
                         v1::Ticket& t = session.ticket();
                         *t.add_messages() =
                             Message(t, v1::MESSAGE_AUTHOR_AGENT, agent_id, req->text(), true, now);
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* ComplaintTicketService::PromiseCallback(
    Ctx* ctx, const v1::PromiseCallbackRequest* req, v1::Ticket* resp) {
  auto agent = AgentOnTicket(*ctx, req->customer_id(), req->ticket_id(), req->agent_id());
  if (!agent.ok()) return Finish(ctx, agent.status());
  const absl::Time now = clock_->Now();
  if (auto s = ValidateCallback(*req, now); !s.ok()) return Finish(ctx, s);
  return ChangeAsAgent(ctx, *req, *agent, "PromiseCallback", now, resp,
                       [req, now](TicketSession& session, const std::string& agent_id) {
                         return AddCallback(session, *req, agent_id, now);
                       });
}

grpc::ServerUnaryReactor* ComplaintTicketService::CompleteCallback(
    Ctx* ctx, const v1::CompleteCallbackRequest* req, v1::Ticket* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("ticket_id", req->ticket_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("callback_id", req->callback_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now]() -> absl::Status {
    return store_->UpdateTicket(
        req->customer_id(), req->ticket_id(), "", 0, now,
        [&](TicketSession& session) -> absl::Status {
          for (auto& c : *session.ticket().mutable_callbacks()) {
            if (c.callback_id() != req->callback_id()) continue;
            if (c.status() == v1::CALLBACK_STATUS_DONE) {
              session.MarkUnchanged();
              return absl::OkStatus();
            }
            // A late call is still made, but the breach stays on record.
            c.set_status(v1::CALLBACK_STATUS_DONE);
            api::SetTimestamp(now, c.mutable_done_time());
            return absl::OkStatus();
          }
          return absl::NotFoundError(
              absl::StrCat("callback_id: no callback \"", req->callback_id(), "\""));
        },
        resp);
  });
}

void ComplaintTicketService::ConfirmAndMaybeResolve(TicketSession& s, absl::Time now) {
  v1::Ticket& t = s.ticket();
  if (t.status() != v1::TICKET_STATUS_AWAITING_COMPENSATION) return;
  for (const auto& c : t.resolution().compensations()) {
    if (c.status() == v1::COMPENSATION_STATUS_PENDING) return;
  }
  t.set_status(v1::TICKET_STATUS_RESOLVED);
  api::SetTimestamp(now, t.mutable_resolution()->mutable_resolved_time());
  *t.add_messages() = Message(
      t, v1::MESSAGE_AUTHOR_SYSTEM, "",
      "Your case is resolved. How satisfied are you with how we handled it (1-5)?", false, now);
  v1::Event e;
  auto* r = e.mutable_ticket_resolved();
  r->set_ticket_id(t.ticket_id());
  r->set_hours_to_resolve(absl::ToDoubleHours(now - api::FromTimestamp(t.create_time())));
  for (const auto& c : t.resolution().compensations()) {
    if (c.status() == v1::COMPENSATION_STATUS_CONFIRMED)
      r->add_compensations(Lower(v1::CompensationKind_Name(c.kind()), 18));
  }
  s.Emit(std::move(e));
}

grpc::ServerUnaryReactor* ComplaintTicketService::ResolveTicket(Ctx* ctx,
                                                                const v1::ResolveTicketRequest* req,
                                                                v1::Ticket* resp) {
  auto agent = AgentOnTicket(*ctx, req->customer_id(), req->ticket_id(), req->agent_id());
  if (!agent.ok()) return Finish(ctx, agent.status());
  if (auto s = ValidateResolution(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, agent_id = agent->agent_id,
       request_id = req->request_id().empty()
                        ? std::string()
                        : rpc::ScopedRequestId(agent->caller, req->request_id(),
                                               "ResolveTicket")]() -> absl::Status {
        CRM_RETURN_IF_ERROR(CheckAgent(agent_id));
        CRM_RETURN_IF_ERROR(UpdateAndCount(
            req->customer_id(), req->ticket_id(), request_id,
            request_id.empty() ? 0 : store::RequestFingerprint(*req), now,
            [&](TicketSession& session) { return RecordResolution(session, *req, agent_id, now); },
            resp));
        // Points, coupons and refunds go out now; what fails is retried by the sweep.
        CRM_RETURN_IF_ERROR(ExecuteCompensations(req->customer_id(), req->ticket_id()));
        CRM_ASSIGN_OR_RETURN(*resp, store_->Get(req->customer_id(), req->ticket_id()));
        return absl::OkStatus();
      });
}

absl::Status ComplaintTicketService::RecordResolution(TicketSession& session,
                                                      const v1::ResolveTicketRequest& req,
                                                      const std::string& agent_id, absl::Time now) {
  v1::Ticket& t = session.ticket();
  if (t.status() != v1::TICKET_STATUS_OPEN && t.status() != v1::TICKET_STATUS_IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ticket_id: the ticket is already ", Lower(v1::TicketStatus_Name(t.status()), 14)));
  }
  CRM_RETURN_IF_ERROR(ValidateCompensations(req.compensations(), &t));
  auto* r = t.mutable_resolution();
  r->set_summary(req.summary());
  r->set_agent_id(agent_id);
  for (int i = 0; i < req.compensations_size(); ++i) {
    *r->add_compensations() = NewCompensation(req.compensations(i), i, now);
  }
  CRM_RETURN_IF_ERROR(GiveGoodwillOf(session, agent_id, now));
  if (!t.sla().has_first_response_time())
    api::SetTimestamp(now, t.mutable_sla()->mutable_first_response_time());
  t.set_status(v1::TICKET_STATUS_AWAITING_COMPENSATION);
  *t.add_messages() = Message(t, v1::MESSAGE_AUTHOR_AGENT, agent_id, req.summary(), false, now);
  session.RememberAgent(agent_id);
  ConfirmAndMaybeResolve(session, now);
  return absl::OkStatus();
}

absl::StatusOr<int> ComplaintTicketService::ExecuteCompensations(const std::string& customer_id,
                                                                 const std::string& ticket_id) {
  CRM_ASSIGN_OR_RETURN(auto ticket, store_->Get(customer_id, ticket_id));
  if (ticket.status() != v1::TICKET_STATUS_AWAITING_COMPENSATION) return 0;
  CompensationOutcomes outcomes;
  for (const auto& c : ticket.resolution().compensations()) {
    if (c.status() != v1::COMPENSATION_STATUS_PENDING || !Automatic(c.kind()) ||
        !c.reference().empty())
      continue;
    auto reference = GrantCompensation(ticket, c);
    outcomes[c.compensation_id()] =
        reference.ok() ? std::make_pair(*reference, std::string())
                       : std::make_pair(std::string(), std::string(reference.status().message()));
  }
  if (outcomes.empty()) return 0;
  CRM_RETURN_IF_ERROR(RecordCompensations(customer_id, ticket_id, outcomes));
  return static_cast<int>(outcomes.size());
}

absl::StatusOr<std::string> ComplaintTicketService::GrantCompensation(const v1::Ticket& ticket,
                                                                      const v1::Compensation& c) {
  const std::string& customer_id = ticket.customer_id();
  const std::string& ticket_id = ticket.ticket_id();
  // Each carries an id derived from the ticket, so a retry never grants twice.
  const std::string source = absl::StrCat("ticket:", ticket_id, ":", c.compensation_id());
  // Granting waits longer than a look-up: it writes on the other side.
  constexpr absl::Duration kGrantDeadline = absl::Seconds(5);
  const rpc::Peer<v1::LoyaltyService> loyalty(backends_);
  if (c.kind() == v1::COMPENSATION_KIND_POINTS) {
    v1::GrantPointsRequest g;
    g.set_customer_id(customer_id);
    g.set_points(c.points());
    g.set_source_id(source);
    g.set_source(v1::POINTS_SOURCE_COMPENSATION);
    g.set_description(absl::StrCat("compensation for complaint ", ticket_id));
    CRM_ASSIGN_OR_RETURN(auto entry,
                         loyalty.Call(customer_id, "grant the points",
                                      &v1::LoyaltyService::Stub::GrantPoints, g, kGrantDeadline));
    return entry.entry_id();
  }
  if (c.kind() == v1::COMPENSATION_KIND_COUPON) {
    v1::IssueCouponRequest g;
    g.set_customer_id(customer_id);
    g.set_source_id(source);
    *g.mutable_value() = c.coupon_value();
    g.set_reason(absl::StrCat("compensation for complaint ", ticket_id));
    CRM_ASSIGN_OR_RETURN(auto coupon,
                         loyalty.Call(customer_id, "issue the coupon",
                                      &v1::LoyaltyService::Stub::IssueCoupon, g, kGrantDeadline));
    return coupon.coupon_id();
  }
  CRM_ASSIGN_OR_RETURN(auto ret, rpc::Peer<v1::OrderTrackingService>(backends_).Call(
                                     customer_id, "refund the return",
                                     &v1::OrderTrackingService::Stub::RequestReturn,
                                     RefundRequest(ticket, c, source), kGrantDeadline));
  return ret.return_id();
}

absl::Status ComplaintTicketService::RecordCompensations(const std::string& customer_id,
                                                         const std::string& ticket_id,
                                                         const CompensationOutcomes& outcomes) {
  const absl::Time now = clock_->Now();
  v1::Ticket after;
  return UpdateAndCount(
      customer_id, ticket_id, "", 0, now,
      [&](TicketSession& session) -> absl::Status {
        for (auto& c : *session.ticket().mutable_resolution()->mutable_compensations()) {
          auto it = outcomes.find(c.compensation_id());
          if (it == outcomes.end() || c.status() == v1::COMPENSATION_STATUS_CONFIRMED) continue;
          const auto& [reference, error] = it->second;
          c.set_last_error(error);
          if (reference.empty()) continue;
          c.set_reference(reference);
          // Points and coupons are done once loyalty has them; a refund when order-tracking pays it
          // out.
          if (c.kind() != v1::COMPENSATION_KIND_REFUND) {
            c.set_status(v1::COMPENSATION_STATUS_CONFIRMED);
            api::SetTimestamp(now, c.mutable_confirmed_time());
          }
        }
        ConfirmAndMaybeResolve(session, now);
        return absl::OkStatus();
      },
      &after);
}

grpc::ServerUnaryReactor* ComplaintTicketService::ConfirmCompensation(
    Ctx* ctx, const v1::ConfirmCompensationRequest* req, v1::Ticket* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("ticket_id", req->ticket_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("compensation_id", req->compensation_id()); !s.ok())
    return Finish(ctx, s);
  auto agent = ActingAgentOf(*ctx, req->agent_id());
  if (!agent.ok()) return Finish(ctx, agent.status());
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx,
                  [this, req, resp, now, agent_id = agent->agent_id]() -> absl::Status {
                    CRM_RETURN_IF_ERROR(CheckAgent(agent_id));
                    return UpdateAndCount(
                        req->customer_id(), req->ticket_id(), "", 0, now,
                        [&](TicketSession& session) {
                          return ConfirmByAgent(session, req->compensation_id(), agent_id, now);
                        },
                        resp);
                  });
}

absl::Status ComplaintTicketService::GiveGoodwillOf(TicketSession& session,
                                                    const std::string& agent_id, absl::Time now) {
  v1::Ticket& t = session.ticket();
  std::optional<v1::Agent> agent;
  const auto rules = SlaRulesInForce::Process().Latest();
  for (auto& c : *t.mutable_resolution()->mutable_compensations()) {
    if (!IsGoodwill(c.kind())) continue;
    if (!agent) {
      CRM_ASSIGN_OR_RETURN(agent, session.LockAgent(agent_id));
    }
    for (v1::Event& e : GiveGoodwill(t, c, agent_id, agent->level(), *rules, now))
      session.Emit(std::move(e));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ComplaintTicketService::DecideCompensation(
    Ctx* ctx, const v1::DecideCompensationRequest* req, v1::Ticket* resp) {
  auto validated = [&]() -> absl::StatusOr<std::pair<auth::Caller, Decider>> {
    CRM_RETURN_IF_ERROR(api::RequiredRequestId(req->request_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("ticket_id", req->ticket_id()));
    CRM_RETURN_IF_ERROR(api::RequiredId("compensation_id", req->compensation_id()));
    if (!api::RequiredText("reason", req->reason(), 1000).ok())
      return Invalid("reason", "say why it is approved or rejected (1-1000 characters)");
    CRM_ASSIGN_OR_RETURN(auth::Caller caller, rpc::CallerOf(*ctx));
    Decider decider;
    // An admin decides as themself; anyone else as an agent (an agent's token names them).
    if (!caller.internal && caller.role == v1::ROLE_ADMIN && req->agent_id().empty()) {
      decider.admin = true;
      decider.actor = rpc::Actor(caller);
    } else {
      CRM_ASSIGN_OR_RETURN(decider.actor, rpc::ActingAgent(caller, "agent_id", req->agent_id()));
      CRM_RETURN_IF_ERROR(api::RequiredId("agent_id", decider.actor));
    }
    return std::make_pair(std::move(caller), std::move(decider));
  }();
  if (!validated.ok()) return Finish(ctx, validated.status());
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, decider = validated->second,
       request_id = rpc::ScopedRequestId(validated->first, req->request_id(),
                                         "DecideCompensation")]() mutable -> absl::Status {
        if (!decider.admin) CRM_RETURN_IF_ERROR(CheckAgent(decider.actor));
        return UpdateAndCount(
            req->customer_id(), req->ticket_id(), request_id, store::RequestFingerprint(*req), now,
            [&](TicketSession& session) -> absl::Status {
              if (!decider.admin) {
                CRM_ASSIGN_OR_RETURN(v1::Agent a, session.LockAgent(decider.actor));
                decider.level = a.level();
              }
              CRM_ASSIGN_OR_RETURN(
                  auto events,
                  DecideGoodwill(session.ticket(), req->compensation_id(), decider, req->approve(),
                                 req->reason(), *SlaRulesInForce::Process().Latest(), now));
              for (v1::Event& e : events) session.Emit(std::move(e));
              ConfirmAndMaybeResolve(session, now);
              return absl::OkStatus();
            },
            resp);
      });
}

absl::Status ComplaintTicketService::ConfirmByAgent(TicketSession& session,
                                                    const std::string& compensation_id,
                                                    const std::string& agent_id, absl::Time now) {
  for (auto& c : *session.ticket().mutable_resolution()->mutable_compensations()) {
    if (c.compensation_id() != compensation_id) continue;
    if (Automatic(c.kind())) {
      return absl::FailedPreconditionError(
          "compensation_id: points, coupons and refunds are confirmed by the service that "
          "carries them out");
    }
    if (IsGoodwill(c.kind())) {
      return absl::FailedPreconditionError(
          "compensation_id: goodwill refunds and reshipments are carried out when given within "
          "the agent's limit or approved (DecideCompensation)");
    }
    if (c.status() == v1::COMPENSATION_STATUS_CONFIRMED) {
      session.MarkUnchanged();
      return absl::OkStatus();
    }
    c.set_status(v1::COMPENSATION_STATUS_CONFIRMED);
    c.set_reference(absl::StrCat("agent:", agent_id));
    api::SetTimestamp(now, c.mutable_confirmed_time());
    ConfirmAndMaybeResolve(session, now);
    return absl::OkStatus();
  }
  return absl::NotFoundError(
      absl::StrCat("compensation_id: no compensation \"", compensation_id, "\""));
}

grpc::ServerUnaryReactor* ComplaintTicketService::SubmitSatisfaction(
    Ctx* ctx, const v1::SubmitSatisfactionRequest* req, v1::Ticket* resp) {
  if (auto s = ValidateSurvey(*ctx, *req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now, hide = HidesInternalNotes(*ctx)] {
    CRM_RETURN_IF_ERROR(UpdateAndCount(
        req->customer_id(), req->ticket_id(), "", 0, now,
        [&](TicketSession& session) { return RecordSatisfaction(session, *req, now); }, resp));
    if (hide) HideInternalNotes(*resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ComplaintTicketService::AssessSeverity(
    Ctx* ctx, const v1::AssessSeverityRequest* req, v1::Severity* resp) {
  if (auto s = api::RequiredText("text", req->text(), kMaxTextChars); !s.ok())
    return Finish(ctx, s);
  if (!v1::TicketCategory_IsValid(req->category()))
    return Finish(ctx, Invalid("category", "is not a category"));
  if (req->customer_tier() < 0 || req->customer_tier() > 5)
    return Finish(ctx, Invalid("customer_tier", "must be 0-5"));
  *resp = complaint_ticket::AssessSeverity(lexicon_, req->text(), req->category(),
                                           {req->customer_tier(), req->enterprise()},
                                           SeverityModelInUse());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* ComplaintTicketService::RegisterAgent(Ctx* ctx,
                                                                const v1::RegisterAgentRequest* req,
                                                                v1::Agent* resp) {
  const v1::Agent& a = req->agent();
  if (auto s = api::RequiredId("agent.agent_id", a.agent_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredText("agent.name", a.name(), 100); !s.ok()) return Finish(ctx, s);
  if (a.level() < 1 || a.level() > 3) return Finish(ctx, Invalid("agent.level", "must be 1-3"));
  if (a.capacity() < 1 || a.capacity() > 1000)
    return Finish(ctx, Invalid("agent.capacity", "must be 1-1000"));
  for (int c : a.categories()) {
    if (c == v1::TICKET_CATEGORY_UNSPECIFIED || !v1::TicketCategory_IsValid(c)) {
      return Finish(ctx, Invalid("agent.categories", "must be ticket categories"));
    }
  }
  return FinishOn(*writes_, ctx,
                  [this, req, resp] { return store_->PutAgent(req->agent(), resp); });
}

grpc::ServerUnaryReactor* ComplaintTicketService::SetAgentAvailability(
    Ctx* ctx, const v1::SetAgentAvailabilityRequest* req, v1::Agent* resp) {
  auto agent = ActingAgentOf(*ctx, req->agent_id());
  if (!agent.ok()) return Finish(ctx, agent.status());
  return FinishOn(*writes_, ctx, [this, req, resp, agent_id = agent->agent_id] {
    return store_->SetAgentAvailability(agent_id, req->available(), resp);
  });
}

grpc::ServerUnaryReactor* ComplaintTicketService::ListAgents(Ctx* ctx, const v1::ListAgentsRequest*,
                                                             v1::ListAgentsResponse* resp) {
  return rpc::FinishWith(ctx, store_->StoredAgents(), resp->mutable_agents());
}

absl::Status ComplaintTicketService::Sweep(v1::RunSlaSweepResponse* out) {
  const absl::Time now = clock_->Now();
  CRM_ASSIGN_OR_RETURN(const auto due, DueTickets(now));
  for (const auto& [cid, tid] : due) SweepTicket(cid, tid, now, out);
  out->set_tickets_visited(static_cast<int32_t>(due.size()));
  CRM_RETURN_IF_ERROR(RetryUnassigned(now));
  // Compensations another service could not grant before: try again.
  CRM_ASSIGN_OR_RETURN(auto awaiting, store_->AwaitingCompensation());
  for (const auto& [cid, tid] : awaiting) {
    auto attempted = ExecuteCompensations(cid, tid);
    if (attempted.ok()) out->set_compensations_retried(out->compensations_retried() + *attempted);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::set<std::pair<std::string, std::string>>> ComplaintTicketService::DueTickets(
    absl::Time now) {
  std::set<std::pair<std::string, std::string>> visit;
  std::string cursor;
  bool more = true;
  while (more) {
    std::vector<ComplaintTicketStore::DueEntry> due;
    CRM_RETURN_IF_ERROR(store_->Due(now, cursor, 1000, &due, &more));
    for (const auto& d : due) {
      cursor = d.key;
      auto t = store_->Get(d.customer_id, d.ticket_id);
      if (!t.ok() && !absl::IsNotFound(t.status())) return t.status();
      if (t.ok() && ComplaintTicketStore::StillOpen(d, *t)) {
        visit.emplace(d.customer_id, d.ticket_id);
        continue;
      }
      // A row whose deadline its ticket no longer has (left by an older version): dropped under the
      // ticket's lock, visited only if a change in between gave the ticket that deadline back.
      CRM_ASSIGN_OR_RETURN(const bool dropped, store_->DropIfStale(d));
      if (!dropped) visit.emplace(d.customer_id, d.ticket_id);
    }
  }
  return visit;
}

void ComplaintTicketService::SweepTicket(const std::string& customer_id,
                                         const std::string& ticket_id, absl::Time now,
                                         v1::RunSlaSweepResponse* out) {
  v1::Ticket before, after;
  absl::Status s = store_->UpdateTicket(
      customer_id, ticket_id, "", 0, now,
      [&](TicketSession& session) -> absl::Status {
        before = session.ticket();
        return ApplySlaFindings(session, now);
      },
      &after);
  if (!s.ok()) {
    log::Warning("sla sweep: ticket not updated",
                 {{"ticket_id", ticket_id}, {"error", s.ToString()}});
    return;
  }
  if (after.ticket_id().empty()) return;
  out->set_breaches(out->breaches() + after.sla().breaches_size() - before.sla().breaches_size());
  out->set_escalations(out->escalations() + after.escalations() - before.escalations());
  Committed(before, after);
}

absl::Status ComplaintTicketService::ApplySlaFindings(TicketSession& session, absl::Time now) {
  v1::Ticket& t = session.ticket();
  const SlaFindings f = EvaluateSla(t, now);
  if (f.breaches.empty() && !f.escalate) {
    session.MarkUnchanged();
    return absl::OkStatus();
  }
  for (const auto& b : f.breaches) {
    v1::Event e;
    auto* sb = e.mutable_sla_breached();
    sb->set_ticket_id(t.ticket_id());
    sb->set_kind(SlaKindName(b.kind()));
    *sb->mutable_due_time() = b.due_time();
    session.Emit(std::move(e));
  }
  if (!f.escalate) return absl::OkStatus();
  t.set_escalations(t.escalations() + 1);
  if (t.handling_level() < 3) {
    t.set_handling_level(t.handling_level() + 1);
    t.set_priority(t.handling_level() == 3 ? v1::PRIORITY_P1 : v1::PRIORITY_P2);
  }
  *t.add_messages() =
      Message(t, v1::MESSAGE_AUTHOR_SYSTEM, "",
              absl::StrCat("escalated to level ", t.handling_level(), ": ", f.escalation_reason),
              true, now);
  // A more senior agent takes over when the current one is not senior enough.
  CRM_ASSIGN_OR_RETURN(auto agents, session.Agents());
  bool senior_enough = false;
  for (const auto& a : agents) {
    if (a.agent_id() == t.assigned_agent_id() && a.level() >= t.handling_level())
      senior_enough = true;
  }
  if (!senior_enough && CountsOpen(t)) CRM_RETURN_IF_ERROR(Route(session, ""));
  return absl::OkStatus();
}

absl::Status ComplaintTicketService::RetryUnassigned(absl::Time now) {
  // Tickets nobody could take: try again now that agents may be free.
  CRM_ASSIGN_OR_RETURN(auto waiting, store_->Unassigned());
  for (const auto& [cid, tid] : waiting) {
    v1::Ticket ignored;
    // One ticket that cannot be routed now does not stop the others.
    (void)store_->UpdateTicket(
        cid, tid, "", 0, now,
        [&](TicketSession& session) -> absl::Status {
          CRM_ASSIGN_OR_RETURN(auto last, session.LastAgent());
          CRM_RETURN_IF_ERROR(Route(session, last));
          if (session.ticket().assigned_agent_id().empty()) session.MarkUnchanged();
          return absl::OkStatus();
        },
        &ignored);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ComplaintTicketService::RunSlaSweep(Ctx* ctx,
                                                              const v1::RunSlaSweepRequest*,
                                                              v1::RunSlaSweepResponse* resp) {
  return FinishOn(*writes_, ctx, [this, resp] { return Sweep(resp); });
}

absl::Status ComplaintTicketService::HandleEvent(store::Transaction& txn, const v1::Event& event) {
  const absl::Time now = clock_->Now();
  const std::string& cid = event.customer_id();
  if (event.has_customer_erased()) return store_->Anonymise(txn, cid);
  if (auto automatic = AutomaticTicketFor(event)) return OpenAutomatic(txn, cid, *automatic, now);
  if (event.has_order_refunded()) {
    return ConfirmRefund(txn, cid, event.order_refunded().return_id(), now);
  }
  return absl::OkStatus();
}

absl::Status ComplaintTicketService::OpenAutomatic(store::Transaction& txn,
                                                   const std::string& customer_id,
                                                   const AutomaticTicket& a, absl::Time now) {
  v1::Ticket opened;
  auto build = [&](TicketSession& s) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(auto last, s.LastAgent());
    CRM_RETURN_IF_ERROR(
        BuildTicket(s, a.channel, a.category, a.order_id, a.subject, a.text, {}, true, last, now));
    opened = s.ticket();
    return absl::OkStatus();
  };
  CRM_ASSIGN_OR_RETURN(const bool created,
                       store_->OpenTicketIn(txn, customer_id, a.key, now, build));
  if (created) CountOnCommit(txn, v1::Ticket(), opened);
  return absl::OkStatus();
}

absl::Status ComplaintTicketService::ConfirmRefund(store::Transaction& txn,
                                                   const std::string& customer_id,
                                                   const std::string& return_id, absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto tickets, store_->ListAll(customer_id));
  for (const auto& t : tickets) {
    if (!AwaitsRefund(t, return_id)) continue;
    CRM_RETURN_IF_ERROR(store_->UpdateTicketIn(
        txn, customer_id, t.ticket_id(), now, [&](TicketSession& session) -> absl::Status {
          const v1::Ticket before = session.ticket();
          for (auto& c : *session.ticket().mutable_resolution()->mutable_compensations()) {
            if (c.kind() == v1::COMPENSATION_KIND_REFUND && c.reference() == return_id) {
              c.set_status(v1::COMPENSATION_STATUS_CONFIRMED);
              api::SetTimestamp(now, c.mutable_confirmed_time());
            }
          }
          ConfirmAndMaybeResolve(session, now);
          CountOnCommit(txn, before, session.ticket());
          return absl::OkStatus();
        }));
  }
  return absl::OkStatus();
}

absl::Status ComplaintTicketService::UpdateAndCount(
    const std::string& customer_id, const std::string& ticket_id, const std::string& request_id,
    uint64_t fingerprint, absl::Time now, absl::FunctionRef<absl::Status(TicketSession&)> change,
    v1::Ticket* out) {
  v1::Ticket before;
  CRM_RETURN_IF_ERROR(store_->UpdateTicket(
      customer_id, ticket_id, request_id, fingerprint, now,
      [&](TicketSession& session) {
        before = session.ticket();
        return change(session);
      },
      out));
  // Nothing ran, and nothing is counted, for a retry answered from the first call's record.
  if (!before.ticket_id().empty()) Committed(before, *out);
  return absl::OkStatus();
}

}  // namespace crm::complaint_ticket
