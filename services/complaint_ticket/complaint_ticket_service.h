// crm.v1.ComplaintTicketService over gRPC's callback API, and the ticket side of events (low
// reviews and failed or late deliveries open tickets before the customer complains; refunds confirm
// refund compensations; erasure anonymises). Handlers validate, apply the severity, SLA and routing
// rules inside one ticket transaction, and call loyalty (points, coupons, customer value) and
// order-tracking (refunds) for compensation, idempotently. An SLA sweep runs every minute.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "libs/auth/caller.h"
#include "libs/clock/clock.h"
#include "libs/events/consumer.h"
#include "libs/events/producer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/periodic.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/complaint_ticket/complaint_ticket_store.h"
#include "services/complaint_ticket/severity.h"

namespace crm::complaint_ticket {

// Request limits: the characters of a ticket's text and of each message on it (and of a text to
// assess); the points one compensation grants.
inline constexpr int kMaxTextChars = 5000;
inline constexpr int kMaxCompensationPoints = 1000000;

// A ticket an event opens on its own (a low review, a failed or late delivery), under a key made
// from the event so that a redelivered event opens none.
struct AutomaticTicket {
  std::string key;
  v1::TicketChannel channel;
  v1::TicketCategory category;
  std::string order_id;
  std::string subject;
  std::string text;
};

// The agent a call acts as: the token's own agent, or the one an admin or the system names.
struct AgentCall {
  auth::Caller caller;
  std::string agent_id;
};

struct TicketMetrics {
  explicit TicketMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Gauge>& open;        // {priority}
  prometheus::Family<prometheus::Counter>& opened;    // {channel}
  prometheus::Family<prometheus::Counter>& breaches;  // {kind}
  prometheus::Counter& escalations;
  prometheus::Histogram& first_response_seconds;
  prometheus::Histogram& resolution_seconds;
  prometheus::Family<prometheus::Counter>& csat;  // {score}
};

class ComplaintTicketService final : public v1::ComplaintTicketService::CallbackService {
 public:
  ComplaintTicketService(ComplaintTicketStore* store, internal::SeverityLexicon lexicon,
                         std::optional<SeverityModel> severity_model, Clock* clock,
                         rpc::Executor* writes, rpc::Backends* backends,
                         prometheus::Registry& registry);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* OpenTicket(Ctx*, const v1::OpenTicketRequest*, v1::Ticket*) override;
  Reactor* GetTicket(Ctx*, const v1::GetTicketRequest*, v1::Ticket*) override;
  Reactor* ListTickets(Ctx*, const v1::ListTicketsRequest*, v1::ListTicketsResponse*) override;
  Reactor* ListAtRiskTickets(Ctx*, const v1::ListAtRiskTicketsRequest*,
                             v1::ListAtRiskTicketsResponse*) override;
  Reactor* SearchTickets(Ctx*, const v1::SearchTicketsRequest*,
                         v1::SearchTicketsResponse*) override;
  Reactor* PutCannedReply(Ctx*, const v1::PutCannedReplyRequest*, v1::CannedReply*) override;
  Reactor* DeleteCannedReply(Ctx*, const v1::DeleteCannedReplyRequest*,
                             v1::DeleteCannedReplyResponse*) override;
  Reactor* ListCannedReplies(Ctx*, const v1::ListCannedRepliesRequest*,
                             v1::ListCannedRepliesResponse*) override;
  Reactor* MergeTickets(Ctx*, const v1::MergeTicketsRequest*, v1::Ticket*) override;
  Reactor* UpdateTicketTags(Ctx*, const v1::UpdateTicketTagsRequest*, v1::Ticket*) override;
  Reactor* ReplyToTicket(Ctx*, const v1::ReplyToTicketRequest*, v1::Ticket*) override;
  Reactor* AddInternalNote(Ctx*, const v1::AddInternalNoteRequest*, v1::Ticket*) override;
  Reactor* PromiseCallback(Ctx*, const v1::PromiseCallbackRequest*, v1::Ticket*) override;
  Reactor* CompleteCallback(Ctx*, const v1::CompleteCallbackRequest*, v1::Ticket*) override;
  Reactor* ResolveTicket(Ctx*, const v1::ResolveTicketRequest*, v1::Ticket*) override;
  Reactor* ConfirmCompensation(Ctx*, const v1::ConfirmCompensationRequest*, v1::Ticket*) override;
  Reactor* DecideCompensation(Ctx*, const v1::DecideCompensationRequest*, v1::Ticket*) override;
  Reactor* SubmitSatisfaction(Ctx*, const v1::SubmitSatisfactionRequest*, v1::Ticket*) override;
  Reactor* AssessSeverity(Ctx*, const v1::AssessSeverityRequest*, v1::Severity*) override;
  Reactor* RegisterAgent(Ctx*, const v1::RegisterAgentRequest*, v1::Agent*) override;
  Reactor* SetAgentAvailability(Ctx*, const v1::SetAgentAvailabilityRequest*, v1::Agent*) override;
  Reactor* ListAgents(Ctx*, const v1::ListAgentsRequest*, v1::ListAgentsResponse*) override;
  Reactor* RunSlaSweep(Ctx*, const v1::RunSlaSweepRequest*, v1::RunSlaSweepResponse*) override;

  absl::Status HandleEvent(store::Transaction& txn, const v1::Event& event);
  // The events HandleEvent acts on; producers send this service no others.
  static events::Subscription EventsHandled() {
    using E = events::Subscription::EventType;
    return {E::kReviewSubmitted, E::kDeliveryFailed, E::kOrderDelivered, E::kOrderRefunded,
            E::kCustomerErased};
  }
  absl::Status Sweep(v1::RunSlaSweepResponse* out);
  void CountOpen();
  // Called inside the transaction of each ticket a customer's OpenTicket opens (the knowledge
  // base settles the customer's suggestions there). Set before serving.
  using TicketOpenedHook = std::function<absl::Status(
      store::Transaction& txn, absl::string_view customer_id, absl::Time now)>;
  void OnTicketOpened(TicketOpenedHook hook) { ticket_opened_ = std::move(hook); }

 private:
  // Gives the ticket an agent: `preferred` (last or named agent) when it can take it, else the
  // least loaded at the ticket's level; unassigned when nobody can.
  absl::Status Route(TicketSession& s, const std::string& preferred);
  // Fills a new ticket: ids, severity, SLA, routing, first message, TicketOpened event.
  absl::Status BuildTicket(TicketSession& s, v1::TicketChannel channel, v1::TicketCategory category,
                           const std::string& order_id, const std::string& subject,
                           const std::string& text, CustomerValue value, bool automatic,
                           const std::string& preferred, absl::Time now);
  // Loyalty's view of the customer (tier, enterprise, named agent); unknown when loyalty cannot
  // answer.
  void CustomerStanding(const std::string& customer_id, CustomerValue* value,
                        std::string* named_agent);
  // OpenTicket's work: checks the customer, weighs their standing and opens the ticket once per
  // request id.
  absl::Status Open(const v1::OpenTicketRequest& req, const std::string& request_id, absl::Time now,
                    v1::Ticket* resp);
  // ResolveTicket's change inside the ticket's session: the resolution, its compensations, the
  // agent's message; resolved at once when nothing is left to carry out.
  absl::Status RecordResolution(TicketSession& session, const v1::ResolveTicketRequest& req,
                                const std::string& agent_id, absl::Time now);
  // RecordResolution's step for goodwill refunds and reshipments: each carried out within the
  // agent's limit (their level, as the agent record says), else left awaiting approval.
  absl::Status GiveGoodwillOf(TicketSession& session, const std::string& agent_id, absl::Time now);
  // ConfirmCompensation's change: an agent confirms a compensation they carry out themselves.
  absl::Status ConfirmByAgent(TicketSession& session, const std::string& compensation_id,
                              const std::string& agent_id, absl::Time now);
  // HandleEvent's steps, inside the event's transaction: open an automatic ticket (once per key),
  // or confirm the refund compensations a paid-out return settles.
  absl::Status OpenAutomatic(store::Transaction& txn, const std::string& customer_id,
                             const AutomaticTicket& ticket, absl::Time now);
  absl::Status ConfirmRefund(store::Transaction& txn, const std::string& customer_id,
                             const std::string& return_id, absl::Time now);
  // An agent's change to the ticket `req` names, once per its request id (scoped to the agent's
  // caller and `method`): on the write executor, once the agent is known to be registered, made at
  // `now`; finishes the call with its status.
  template <typename Request>
  Reactor* ChangeAsAgent(
      Ctx* ctx, const Request& req, const AgentCall& agent, absl::string_view method,
      absl::Time now, v1::Ticket* resp,
      absl::AnyInvocable<absl::Status(TicketSession&, const std::string& agent_id)> change);
  // store_->UpdateTicket, then Committed(before, after) when the change ran and committed.
  absl::Status UpdateAndCount(const std::string& customer_id, const std::string& ticket_id,
                              const std::string& request_id, uint64_t fingerprint, absl::Time now,
                              absl::FunctionRef<absl::Status(TicketSession&)> change,
                              v1::Ticket* out);
  absl::Status CheckCustomer(const std::string& customer_id);
  // Admins, and agents at the SLA rules' supervisor level, manage canned replies: who it is
  // (rpc::Actor), or PERMISSION_DENIED.
  absl::StatusOr<std::string> CannedReplyManager(const auth::Caller& caller);
  // An agent's reply from a canned reply: its text with the variables filled.
  absl::StatusOr<std::string> CannedText(const v1::ReplyToTicketRequest& req,
                                         const std::string& agent_id);
  absl::Status CheckAgent(const std::string& agent_id);
  // Carries out the ticket's pending automatic compensations (points, coupons, refunds); returns
  // how many were attempted.
  absl::StatusOr<int> ExecuteCompensations(const std::string& customer_id,
                                           const std::string& ticket_id);
  // Sweep's steps: the tickets whose deadline has come; one ticket's breaches and escalation
  // (logged, not returned, when it cannot be updated); routing tickets nobody could take.
  absl::StatusOr<std::set<std::pair<std::string, std::string>>> DueTickets(absl::Time now);
  void SweepTicket(const std::string& customer_id, const std::string& ticket_id, absl::Time now,
                   v1::RunSlaSweepResponse* out);
  absl::Status ApplySlaFindings(TicketSession& session, absl::Time now);
  absl::Status RetryUnassigned(absl::Time now);
  // compensation id -> (reference the other service gave it, or the error it answered).
  using CompensationOutcomes = std::map<std::string, std::pair<std::string, std::string>>;
  // Asks loyalty (points, coupon) or order-tracking (refund) for one compensation: its reference.
  absl::StatusOr<std::string> GrantCompensation(const v1::Ticket& ticket,
                                                const v1::Compensation& c);
  // Writes what the grants answered into the ticket, confirming what is done.
  absl::Status RecordCompensations(const std::string& customer_id, const std::string& ticket_id,
                                   const CompensationOutcomes& outcomes);
  // Marks compensations confirmed and, when all are, resolves the ticket. Inside a session.
  void ConfirmAndMaybeResolve(TicketSession& s, absl::Time now);
  void Committed(const v1::Ticket& before, const v1::Ticket& after);
  // Committed(before, after) once `txn` commits: for bodies that Store::Transact may run again
  // after a conflict.
  void CountOnCommit(store::Transaction& txn, v1::Ticket before, v1::Ticket after);

  ComplaintTicketStore* const store_;
  const internal::SeverityLexicon lexicon_;
  const std::optional<SeverityModel> severity_model_;  // none: the lexicon alone
  const SeverityModel* SeverityModelInUse() const {
    return severity_model_ ? &*severity_model_ : nullptr;
  }
  Clock* const clock_;
  rpc::Executor* const writes_;
  rpc::Backends* const backends_;
  TicketMetrics metrics_;
  TicketOpenedHook ticket_opened_;
};

}  // namespace crm::complaint_ticket
