// Compensation beyond returns (issue 24) end to end over real gRPC and RocksDB, with
// customer-profile and loyalty beside complaint-ticket: a parcel lost in delivery is made good with
// a goodwill refund or a reshipment, within the giving agent's limit at once, above it once a
// supervisor approves. Agents call as the gateway admits them (their token names them), with the
// shipped approval rules: level 1 up to 50.00 and no reshipments, level 2 up to 500.00, supervisors
// are level 3.
#include <string>

#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "services/complaint_ticket/complaint_ticket_component.h"
#include "services/loyalty/loyalty_component.h"
#include "tests/support/caller.h"
#include "tests/support/outbox_events.h"
#include "tests/support/rpc_call.h"
#include "tests/support/shop_calls.h"
#include "tests/support/ticket_world.h"

namespace crm::complaint_ticket {
namespace {

using Stub = v1::ComplaintTicketService::Stub;
using testing::CallOk;
using testing::RequireError;
using testing::StatusOf;

constexpr char kLostParcel[] = "parcel lost in delivery";

struct World : testing::TicketWorld {
  World() : TicketWorld(/*agent_capacity=*/10) {
    Agent("junior", 1);
    Agent("junior-2", 1);
    Agent("senior", 2);
    Agent("supervisor", 3);
    customer = Customer("lost-parcel@example.com");
  }
  // The customer's complaint about order o-lost, which never arrived.
  v1::Ticket LostParcel(const std::string& request_id) {
    v1::OpenTicketRequest r = testing::TicketRequest(
        customer, request_id, v1::TICKET_CHANNEL_WEB, v1::TICKET_CATEGORY_DELIVERY,
        "My parcel never arrived; the tracking stopped a week ago.");
    r.set_order_id("o-lost");
    return CallOk(system.get(), &Stub::OpenTicket, r);
  }
  static v1::ResolveTicketRequest Resolve(const v1::Ticket& t, const v1::Compensation& c,
                                          const std::string& request_id) {
    auto r = testing::ForCustomer<v1::ResolveTicketRequest>(t.customer_id());
    r.set_ticket_id(t.ticket_id());
    r.set_summary("The carrier lost the parcel.");
    r.set_request_id(request_id);
    *r.add_compensations() = c;
    return r;
  }
  static v1::DecideCompensationRequest Decide(const v1::Ticket& t, bool approve,
                                              const std::string& request_id) {
    auto r = testing::ForCustomer<v1::DecideCompensationRequest>(t.customer_id());
    r.set_ticket_id(t.ticket_id());
    r.set_compensation_id("c1");
    r.set_approve(approve);
    r.set_reason(approve ? "carrier confirmed the loss" : "a reshipment is not possible");
    r.set_request_id(request_id);
    return r;
  }
  // A new lost-parcel ticket (opened with `key`) resolved by `agent` with `c`.
  v1::Ticket ResolvedBy(const std::string& agent, const v1::Compensation& c, const std::string& key,
                        v1::Ticket* opened = nullptr) {
    const v1::Ticket t = LostParcel("open-" + key);
    if (opened != nullptr) *opened = t;
    return CallOk(As(v1::ROLE_AGENT, agent).get(), &Stub::ResolveTicket,
                  Resolve(t, c, "resolve-" + key));
  }
  // The CompensationGranted events complaint-ticket wrote.
  std::vector<v1::CompensationGranted> Granted() {
    std::vector<v1::CompensationGranted> out;
    for (const auto& e : testing::OutboxEvents(tickets.store()))
      if (e.has_compensation_granted()) out.push_back(e.compensation_granted());
    return out;
  }

  std::string customer;
};

v1::Compensation GoodwillRefund(int64_t amount_minor) {
  v1::Compensation c;
  c.set_kind(v1::COMPENSATION_KIND_GOODWILL_REFUND);
  c.mutable_amount()->set_amount_minor(amount_minor);
  c.mutable_amount()->set_currency("CNY");
  c.set_reason(kLostParcel);
  return c;
}

v1::Compensation Reshipment() {
  v1::Compensation c;
  c.set_kind(v1::COMPENSATION_KIND_RESHIPMENT);
  auto* item = c.add_reship_items();
  item->set_item_id("i1");
  item->set_quantity(2);
  c.set_reason(kLostParcel);
  return c;
}

std::vector<std::string> Actions(const v1::Ticket& t) {
  std::vector<std::string> out;
  for (const auto& a : t.compensation_audit()) out.push_back(a.actor() + " " + a.action());
  return out;
}

TEST_CASE("lost parcel: a goodwill refund within the agent's limit is carried out at once",
          "[tickets][compensation]") {
  World w;
  const v1::Ticket done = w.ResolvedBy("junior", GoodwillRefund(3000), "1");
  CHECK(done.status() == v1::TICKET_STATUS_RESOLVED);
  const v1::Compensation& c = done.resolution().compensations(0);
  CHECK(c.status() == v1::COMPENSATION_STATUS_CONFIRMED);
  CHECK(c.amount().amount_minor() == 3000);
  CHECK(c.approval().status() == v1::APPROVAL_STATUS_NOT_NEEDED);
  CHECK(c.approval().requested_by() == "junior");
  CHECK(c.approval().requested_level() == 1);
  CHECK(Actions(done) == std::vector<std::string>{"junior given", "junior carried_out"});
  CHECK(done.compensation_audit(1).amount().amount_minor() == 3000);
  CHECK(done.compensation_audit(1).note() == kLostParcel);
  const auto granted = w.Granted();
  REQUIRE(granted.size() == 1);
  CHECK(granted[0].kind() == "goodwill_refund");
  CHECK(granted[0].amount().amount_minor() == 3000);
  CHECK(granted[0].order_id() == "o-lost");
  CHECK(granted[0].approved_by().empty());
}

TEST_CASE(
    "lost parcel: a goodwill refund above the limit waits, a level-1 agent cannot approve it, a "
    "supervisor does and it is carried out once however often the approval is retried",
    "[tickets][compensation]") {
  World w;
  v1::Ticket t;
  const v1::Ticket waiting = w.ResolvedBy("junior", GoodwillRefund(20000), "2", &t);
  CHECK(waiting.status() == v1::TICKET_STATUS_AWAITING_COMPENSATION);
  CHECK(waiting.resolution().compensations(0).status() == v1::COMPENSATION_STATUS_PENDING);
  CHECK(waiting.resolution().compensations(0).approval().status() == v1::APPROVAL_STATUS_AWAITING);
  CHECK(w.Granted().empty());

  // Another level-1 agent may not approve, nor claim to be the supervisor: the token says who.
  RequireError(StatusOf(w.As(v1::ROLE_AGENT, "junior-2").get(), &Stub::DecideCompensation,
                        World::Decide(t, true, "junior-approves")),
               grpc::StatusCode::PERMISSION_DENIED, "agent_id: a level 1 agent cannot approve");
  auto claimed = World::Decide(t, true, "junior-claims");
  claimed.set_agent_id("supervisor");
  RequireError(StatusOf(w.As(v1::ROLE_AGENT, "junior-2").get(), &Stub::DecideCompensation, claimed),
               grpc::StatusCode::PERMISSION_DENIED, "agent_id: an agent acts only as themself");
  // Customers may not approve: the service refuses their role, as the gateway does.
  RequireError(StatusOf(w.As(v1::ROLE_CUSTOMER, w.customer).get(), &Stub::DecideCompensation,
                        World::Decide(t, true, "customer-approves")),
               grpc::StatusCode::PERMISSION_DENIED, "role customer may not call");

  auto supervisor = w.As(v1::ROLE_AGENT, "supervisor");
  const v1::Ticket approved =
      CallOk(supervisor.get(), &Stub::DecideCompensation, World::Decide(t, true, "approve-1"));
  CHECK(approved.status() == v1::TICKET_STATUS_RESOLVED);
  const v1::Compensation& c = approved.resolution().compensations(0);
  CHECK(c.status() == v1::COMPENSATION_STATUS_CONFIRMED);
  CHECK(c.approval().status() == v1::APPROVAL_STATUS_APPROVED);
  CHECK(c.approval().decided_by() == "supervisor");
  CHECK(c.approval().reason() == "carrier confirmed the loss");
  CHECK(Actions(approved) == std::vector<std::string>{"junior given", "junior awaiting_approval",
                                                      "supervisor approved",
                                                      "supervisor carried_out"});

  // The same approval again answers the same; it is carried out once.
  const v1::Ticket again =
      CallOk(supervisor.get(), &Stub::DecideCompensation, World::Decide(t, true, "approve-1"));
  CHECK(again.compensation_audit_size() == 4);
  RequireError(
      StatusOf(supervisor.get(), &Stub::DecideCompensation, World::Decide(t, true, "approve-2")),
      grpc::StatusCode::FAILED_PRECONDITION, "compensation_id: \"c1\" is not awaiting");
  const auto granted = w.Granted();
  REQUIRE(granted.size() == 1);
  CHECK(granted[0].amount().amount_minor() == 20000);
  CHECK(granted[0].approved_by() == "supervisor");
}

TEST_CASE(
    "lost parcel: a reshipment is recorded and audited, a level-1 agent's waits and an admin may "
    "reject it",
    "[tickets][compensation]") {
  World w;
  const v1::Ticket reshipped = w.ResolvedBy("senior", Reshipment(), "3");
  CHECK(reshipped.status() == v1::TICKET_STATUS_RESOLVED);
  const v1::Compensation& c = reshipped.resolution().compensations(0);
  CHECK(c.status() == v1::COMPENSATION_STATUS_CONFIRMED);
  REQUIRE(c.reship_items_size() == 1);
  CHECK(c.reship_items(0).quantity() == 2);
  CHECK(Actions(reshipped) == std::vector<std::string>{"senior given", "senior carried_out"});
  CHECK(reshipped.compensation_audit(1).items(0).item_id() == "i1");
  REQUIRE(w.Granted().size() == 1);
  CHECK(w.Granted()[0].kind() == "reshipment");
  CHECK(w.Granted()[0].items(0).quantity() == 2);

  v1::Ticket junior_ticket;
  const v1::Ticket waiting = w.ResolvedBy("junior", Reshipment(), "4", &junior_ticket);
  CHECK(waiting.status() == v1::TICKET_STATUS_AWAITING_COMPENSATION);
  const v1::Ticket rejected = CallOk(w.As(v1::ROLE_ADMIN, "ops-1").get(), &Stub::DecideCompensation,
                                     World::Decide(junior_ticket, false, "reject-1"));
  CHECK(rejected.status() == v1::TICKET_STATUS_RESOLVED);
  CHECK(rejected.resolution().compensations(0).status() == v1::COMPENSATION_STATUS_REJECTED);
  CHECK(rejected.resolution().compensations(0).approval().decided_by() == "admin:ops-1");
  CHECK(Actions(rejected) == std::vector<std::string>{"junior given", "junior awaiting_approval",
                                                      "admin:ops-1 rejected"});
  CHECK(w.Granted().size() == 1);
}

TEST_CASE("compensation: bad input is refused naming the field", "[tickets][compensation]") {
  World w;
  const v1::Ticket t = w.LostParcel("lost-5");
  auto junior = w.As(v1::ROLE_AGENT, "junior");
  auto refused = [&](v1::Compensation c, const std::string& field) {
    INFO(field);
    RequireError(StatusOf(junior.get(), &Stub::ResolveTicket, World::Resolve(t, c, "bad")),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  refused(GoodwillRefund(0), "compensations[0].amount.amount_minor");
  v1::Compensation no_currency = GoodwillRefund(100);
  no_currency.mutable_amount()->clear_currency();
  refused(no_currency, "compensations[0].amount.currency");
  v1::Compensation no_reason = GoodwillRefund(100);
  no_reason.clear_reason();
  refused(no_reason, "compensations[0].reason");
  v1::Compensation no_items = Reshipment();
  no_items.clear_reship_items();
  refused(no_items, "compensations[0].reship_items");
  v1::Compensation no_quantity = Reshipment();
  no_quantity.mutable_reship_items(0)->set_quantity(0);
  refused(no_quantity, "compensations[0].reship_items[0].quantity");

  auto supervisor = w.As(v1::ROLE_AGENT, "supervisor");
  auto decide_refused = [&](v1::DecideCompensationRequest r, const std::string& field) {
    INFO(field);
    RequireError(StatusOf(supervisor.get(), &Stub::DecideCompensation, r),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  auto no_request = World::Decide(t, true, "");
  decide_refused(no_request, "request_id");
  auto no_ticket = World::Decide(t, true, "d1");
  no_ticket.clear_ticket_id();
  decide_refused(no_ticket, "ticket_id");
  auto no_compensation = World::Decide(t, true, "d2");
  no_compensation.clear_compensation_id();
  decide_refused(no_compensation, "compensation_id");
  auto no_why = World::Decide(t, true, "d3");
  no_why.clear_reason();
  decide_refused(no_why, "reason");
  // Nothing awaits approval on a ticket still open.
  RequireError(StatusOf(supervisor.get(), &Stub::DecideCompensation, World::Decide(t, true, "d4")),
               grpc::StatusCode::NOT_FOUND, "compensation_id: no compensation \"c1\"");
}

}  // namespace
}  // namespace crm::complaint_ticket
