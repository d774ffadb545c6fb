// Queues, search and tags (issue 24, item 2) end to end over real gRPC and RocksDB, with
// customer-profile and loyalty beside complaint-ticket: ListTickets narrowed by a filter,
// SearchTickets across customers for agents (queues, an agent's tickets, tags, full text in Chinese
// and English) and over their own tickets only for a customer, UpdateTicketTags, MergeTickets, and
// canned replies (PutCannedReply, ListCannedReplies, DeleteCannedReply, ReplyToTicket with one).
// Callers call as the gateway admits them: agents and customers by their tokens.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "services/complaint_ticket/complaint_ticket_component.h"
#include "services/complaint_ticket/ticket_index.h"
#include "services/loyalty/loyalty_component.h"
#include "tests/support/caller.h"
#include "tests/support/rpc_call.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/ticket_world.h"

namespace crm::complaint_ticket {
namespace {

using Stub = v1::ComplaintTicketService::Stub;
using testing::CallOk;
using testing::RequireError;
using testing::StatusOf;
using Ids = std::vector<std::string>;

constexpr absl::Time kT0 = testing::kHarnessStart;

struct World : testing::TicketWorld {
  World() : TicketWorld(/*agent_capacity=*/50) {
    // No level-3 agent: a level-3 ticket waits unassigned.
    Agent("ann", 1);
    Agent("bo", 2);
    ann = As(v1::ROLE_AGENT, "ann");
    alice = Customer("alice@example.com");
    bob = Customer("bob@example.com");
  }
  std::unique_ptr<Stub> AsCustomer(const std::string& cid) {
    return v1::ComplaintTicketService::NewStub(tickets.ChannelAs(testing::CustomerCaller(cid)));
  }
  v1::Ticket Open(const std::string& cid, const std::string& request_id, const std::string& text,
                  v1::TicketChannel channel, v1::TicketCategory category,
                  const std::string& subject = "") {
    v1::OpenTicketRequest r = testing::TicketRequest(cid, request_id, channel, category, text);
    r.set_subject(subject);
    return CallOk(system.get(), &Stub::OpenTicket, r);
  }
  void SetClock(absl::Time t) {
    profile.clock().Set(t);
    loyalty.clock().Set(t);
    tickets.clock().Set(t);
  }

  std::unique_ptr<Stub> ann;  // the level-1 agent most tests call as
  std::string alice, bob;
};

// Every page of a listing (`page(token)` answers one), its tickets' ids in order.
template <typename Response>
Ids AllPages(const std::function<Response(const std::string& token)>& page) {
  Ids ids;
  std::string token;
  for (int pages = 0; pages < 50; ++pages) {
    const Response r = page(token);
    for (const auto& t : r.tickets()) ids.push_back(t.ticket_id());
    token = r.next_page_token();
    if (token.empty()) break;
  }
  return ids;
}

v1::ListTicketsRequest ListOf(const std::string& cid, const v1::TicketFilter& filter,
                              int page_size = 0, const std::string& token = "") {
  auto r = testing::ForCustomer<v1::ListTicketsRequest>(cid);
  *r.mutable_filter() = filter;
  r.set_page_size(page_size);
  r.set_page_token(token);
  return r;
}

// The ids a ListTickets with `filter` answers `stub`, page by page.
Ids Listed(Stub* stub, const std::string& cid, const v1::TicketFilter& filter, int page_size = 0) {
  return AllPages<v1::ListTicketsResponse>([&](const std::string& token) {
    return CallOk(stub, &Stub::ListTickets, ListOf(cid, filter, page_size, token));
  });
}

v1::SearchTicketsRequest SearchOf(const std::string& cid, const std::string& query,
                                  const v1::TicketFilter& filter = {}, int page_size = 0,
                                  const std::string& token = "") {
  v1::SearchTicketsRequest r;
  r.set_customer_id(cid);
  r.set_query(query);
  *r.mutable_filter() = filter;
  r.set_page_size(page_size);
  r.set_page_token(token);
  return r;
}

Ids Found(Stub* stub, const std::string& cid, const std::string& query,
          const v1::TicketFilter& filter = {}, int page_size = 0) {
  return AllPages<v1::SearchTicketsResponse>([&](const std::string& token) {
    return CallOk(stub, &Stub::SearchTickets, SearchOf(cid, query, filter, page_size, token));
  });
}

v1::TicketFilter Filter(const std::function<void(v1::TicketFilter&)>& set) {
  v1::TicketFilter f;
  set(f);
  return f;
}

google::protobuf::Timestamp At(absl::Time t) {
  google::protobuf::Timestamp ts;
  api::SetTimestamp(t, &ts);
  return ts;
}

bool HasInternal(const v1::Ticket& t) {
  for (const auto& m : t.messages()) {
    if (m.internal()) return true;
  }
  return false;
}

// Alice's three tickets an hour apart and Bob's one after them: t1 a late parcel (level 2, bo), t2
// an invoice question (level 1, ann), t3 an angry complaint about service (level 3, P1: nobody can
// take it).
struct Queues : World {
  Queues() {
    t1 = Open(alice, "t1", "My parcel is late again and nobody tells me why.",
              v1::TICKET_CHANNEL_WEB, v1::TICKET_CATEGORY_DELIVERY)
             .ticket_id();
    SetClock(kT0 + absl::Hours(1));
    t2 = Open(alice, "t2", "Could you tell me when the invoice will be sent?",
              v1::TICKET_CHANNEL_EMAIL, v1::TICKET_CATEGORY_OTHER)
             .ticket_id();
    SetClock(kT0 + absl::Hours(2));
    t3 = Open(alice, "t3", "垃圾服务，再也不买了！！！", v1::TICKET_CHANNEL_CHAT,
              v1::TICKET_CATEGORY_SERVICE_ATTITUDE)
             .ticket_id();
    SetClock(kT0 + absl::Hours(2) + absl::Minutes(5));
    t4 = Open(bob, "t4", "My parcel is late again and nobody tells me why.", v1::TICKET_CHANNEL_WEB,
              v1::TICKET_CATEGORY_DELIVERY)
             .ticket_id();
  }
  // bo answers t1 at `now`: it is in progress from then.
  void Answer(absl::Time now) {
    SetClock(now);
    auto r = testing::ForCustomer<v1::ReplyToTicketRequest>(alice);
    r.set_ticket_id(t1);
    r.set_text("The courier will call you today.");
    r.set_request_id("answer-t1");
    api::SetTimestamp(now + absl::Hours(6), r.mutable_next_step_time());
    CallOk(As(v1::ROLE_AGENT, "bo").get(), &Stub::ReplyToTicket, r);
  }
  std::string t1, t2, t3, t4;
};

TEST_CASE(
    "queues: ListTickets narrows a customer's tickets by status, priority, channel, queue, agent, "
    "created and updated times and SLA condition, page by page",
    "[tickets][queues]") {
  Queues w;
  Stub* a = w.ann.get();
  const std::string& alice = w.alice;
  // At 2:50 the P1 ticket's one-hour first response (due 3:00) is in its last quarter.
  w.SetClock(kT0 + absl::Hours(2) + absl::Minutes(50));
  auto sla = [](v1::SlaCondition c) {
    return Filter([c](v1::TicketFilter& f) { f.add_sla_conditions(c); });
  };
  CHECK(Listed(a, alice, sla(v1::SLA_CONDITION_AT_RISK)) == Ids{w.t3});
  CHECK(Listed(a, alice, sla(v1::SLA_CONDITION_BREACHED)).empty());

  w.Answer(kT0 + absl::Hours(3));
  auto status = [](std::vector<v1::TicketStatus> s) {
    return Filter([s](v1::TicketFilter& f) {
      for (auto v : s) f.add_statuses(v);
    });
  };
  CHECK(Listed(a, alice, status({v1::TICKET_STATUS_IN_PROGRESS})) == Ids{w.t1});
  CHECK(Listed(a, alice, status({v1::TICKET_STATUS_OPEN})) == Ids{w.t2, w.t3});
  // Several values of a field are any of them; a page of one at a time holds them all, in order.
  CHECK(Listed(a, alice, status({v1::TICKET_STATUS_OPEN, v1::TICKET_STATUS_IN_PROGRESS}), 1) ==
        Ids{w.t1, w.t2, w.t3});
  CHECK(Listed(a, alice, status({v1::TICKET_STATUS_CLOSED})).empty());
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) {
                 f.add_channels(v1::TICKET_CHANNEL_EMAIL);
                 f.add_channels(v1::TICKET_CHANNEL_CHAT);
               })) == Ids{w.t2, w.t3});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) { f.add_priorities(v1::PRIORITY_P1); })) ==
        Ids{w.t3});
  // A queue: a category at a handling level.
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) {
                 f.add_categories(v1::TICKET_CATEGORY_DELIVERY);
                 f.add_handling_levels(2);
               })) == Ids{w.t1});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) { f.add_handling_levels(1); })) ==
        Ids{w.t2});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) { f.set_assigned_agent_id("ann"); })) ==
        Ids{w.t2});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) { f.set_unassigned(true); })) == Ids{w.t3});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) {
                 *f.mutable_created_after() = At(kT0 + absl::Minutes(30));
                 *f.mutable_created_before() = At(kT0 + absl::Hours(2));
               })) == Ids{w.t2});
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) {
                 *f.mutable_updated_after() = At(kT0 + absl::Hours(3));
               })) == Ids{w.t1});
  // Conditions together: all must hold.
  CHECK(Listed(a, alice, Filter([](v1::TicketFilter& f) {
                 f.add_statuses(v1::TICKET_STATUS_OPEN);
                 f.add_priorities(v1::PRIORITY_P3);
               })) == Ids{w.t2});

  // 3:30: the first response is late; the others keep their promises.
  w.SetClock(kT0 + absl::Hours(3) + absl::Minutes(30));
  CHECK(Listed(a, alice, sla(v1::SLA_CONDITION_BREACHED)) == Ids{w.t3});
  CHECK(Listed(a, alice, sla(v1::SLA_CONDITION_ON_TRACK)) == Ids{w.t1, w.t2});

  // The customer narrows their own tickets too, without the agents' notes and labels.
  auto customer = w.AsCustomer(alice);
  CHECK(Listed(customer.get(), alice, status({v1::TICKET_STATUS_OPEN})) == Ids{w.t2, w.t3});
  RequireError(StatusOf(customer.get(), &Stub::ListTickets,
                        ListOf(alice, Filter([](v1::TicketFilter& f) { f.add_tags("vip"); }))),
               grpc::StatusCode::INVALID_ARGUMENT, "filter.tags: tags are staff labels");

  // A page token belongs to its customer and filter.
  const v1::TicketFilter open = status({v1::TICKET_STATUS_OPEN});
  const std::string token = CallOk(a, &Stub::ListTickets, ListOf(alice, open, 1)).next_page_token();
  REQUIRE_FALSE(token.empty());
  RequireError(StatusOf(a, &Stub::ListTickets, ListOf(w.bob, open, 1, token)),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  RequireError(
      StatusOf(a, &Stub::ListTickets, ListOf(alice, status({v1::TICKET_STATUS_CLOSED}), 1, token)),
      grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  RequireError(StatusOf(a, &Stub::ListTickets, ListOf(alice, {}, 1, token)),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  // Signed for Alice's listing but resuming at Bob's ticket: refused, naming nothing of it.
  const std::string scope_of_alice =
      "ticket-search/" + alice;  // SearchTickets' unfiltered scope for Alice
  const std::string at_bob = OrderKey(kT0 + absl::Hours(2) + absl::Minutes(5), w.bob, w.t4);
  auto forged = SearchOf(alice, "");
  forged.set_page_token(api::EncodePageToken(scope_of_alice, at_bob));
  const grpc::Status s = StatusOf(customer.get(), &Stub::SearchTickets, forged);
  RequireError(s, grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  CHECK(s.error_message().find(w.bob) == std::string::npos);
}

TEST_CASE(
    "queues: agents search every customer's tickets by queue, agent and filter, a customer only "
    "their own",
    "[tickets][queues]") {
  Queues w;
  Stub* a = w.ann.get();
  CHECK(Found(a, "", "", Filter([](v1::TicketFilter& f) {
                f.add_categories(v1::TICKET_CATEGORY_DELIVERY);
              })) == Ids{w.t1, w.t4});
  CHECK(Found(a, "", "", Filter([](v1::TicketFilter& f) { f.set_assigned_agent_id("bo"); })) ==
        Ids{w.t1, w.t4});
  CHECK(Found(a, "", "", Filter([](v1::TicketFilter& f) { f.set_unassigned(true); })) == Ids{w.t3});
  CHECK(Found(a, "", "", {}, 1) == Ids{w.t1, w.t2, w.t3, w.t4});
  CHECK(Found(a, w.bob, "") == Ids{w.t4});
  // An admin too.
  CHECK(Found(w.As(v1::ROLE_ADMIN, "ops").get(), "", "",
              Filter([](v1::TicketFilter& f) { f.add_priorities(v1::PRIORITY_P1); })) == Ids{w.t3});

  // A customer names their own id and sees only their tickets.
  auto alice = w.AsCustomer(w.alice);
  CHECK(Found(alice.get(), w.alice, "", {}, 2) == Ids{w.t1, w.t2, w.t3});
  RequireError(StatusOf(alice.get(), &Stub::SearchTickets, SearchOf(w.bob, "")),
               grpc::StatusCode::PERMISSION_DENIED, "customer_id:");
  RequireError(StatusOf(alice.get(), &Stub::SearchTickets, SearchOf("", "")),
               grpc::StatusCode::INVALID_ARGUMENT, "customer_id:");
  // Alice's token does not page through Bob's listing, nor an agent's listing of everyone.
  const std::string token =
      CallOk(alice.get(), &Stub::SearchTickets, SearchOf(w.alice, "", {}, 1)).next_page_token();
  REQUIRE_FALSE(token.empty());
  RequireError(StatusOf(a, &Stub::SearchTickets, SearchOf(w.bob, "", {}, 1, token)),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  RequireError(StatusOf(a, &Stub::SearchTickets, SearchOf("", "", {}, 1, token)),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
}

TEST_CASE("queues: bad filters, queries and page sizes are refused naming the field",
          "[tickets][queues][validation]") {
  World w;
  auto agent = w.As(v1::ROLE_AGENT, "ann");
  auto list = [&](const v1::TicketFilter& f) {
    return StatusOf(agent.get(), &Stub::ListTickets, ListOf(w.alice, f));
  };
  auto search = [&](const v1::SearchTicketsRequest& r) {
    return StatusOf(agent.get(), &Stub::SearchTickets, r);
  };
  const grpc::StatusCode invalid = grpc::StatusCode::INVALID_ARGUMENT;
  RequireError(list(Filter([](v1::TicketFilter& f) {
                 f.add_statuses(v1::TICKET_STATUS_OPEN);
                 f.add_statuses(v1::TICKET_STATUS_UNSPECIFIED);
               })),
               invalid, "filter.statuses[1]:");
  RequireError(
      list(Filter([](v1::TicketFilter& f) { f.add_priorities(static_cast<v1::Priority>(9)); })),
      invalid, "filter.priorities[0]:");
  RequireError(list(Filter([](v1::TicketFilter& f) { f.add_handling_levels(4); })), invalid,
               "filter.handling_levels[0]:");
  RequireError(
      list(Filter([](v1::TicketFilter& f) { f.add_categories(v1::TICKET_CATEGORY_UNSPECIFIED); })),
      invalid, "filter.categories[0]:");
  RequireError(list(Filter([](v1::TicketFilter& f) {
                 f.add_sla_conditions(v1::SLA_CONDITION_UNSPECIFIED);
               })),
               invalid, "filter.sla_conditions[0]:");
  RequireError(list(Filter([](v1::TicketFilter& f) {
                 f.set_assigned_agent_id("ann");
                 f.set_unassigned(true);
               })),
               invalid, "filter.unassigned:");
  RequireError(list(Filter([](v1::TicketFilter& f) { f.set_assigned_agent_id("a b"); })), invalid,
               "filter.assigned_agent_id:");
  RequireError(list(Filter([](v1::TicketFilter& f) {
                 *f.mutable_created_after() = At(kT0);
                 *f.mutable_created_before() = At(kT0 - absl::Hours(1));
               })),
               invalid, "filter.created_before:");
  RequireError(list(Filter([](v1::TicketFilter& f) { f.mutable_updated_after()->set_nanos(-1); })),
               invalid, "filter.updated_after:");
  RequireError(list(Filter([](v1::TicketFilter& f) { f.add_tags("Not A Tag"); })), invalid,
               "filter.tags[0]:");
  auto no_customer = ListOf("", Filter([](v1::TicketFilter& f) { f.add_handling_levels(1); }));
  RequireError(StatusOf(agent.get(), &Stub::ListTickets, no_customer), invalid, "customer_id:");
  RequireError(search(SearchOf("", "parcel", {}, 101)), invalid, "page_size:");
  RequireError(search(SearchOf("", std::string(201, 'a'))), invalid, "query:");
  RequireError(search(SearchOf("", "?! ...")), invalid, "query:");
  RequireError(search(SearchOf("", "", {}, 0, "not-a-token")), invalid, "page_token");
}

TEST_CASE(
    "tags: agents add and remove them once per request id, list by them, customers neither see "
    "nor set them",
    "[tickets][tags]") {
  Queues w;
  Stub* ann = w.ann.get();
  auto tag = [&](const std::string& tid, std::vector<std::string> add,
                 std::vector<std::string> remove, const std::string& request_id,
                 const std::string& cid = "") {
    v1::UpdateTicketTagsRequest r;
    r.set_customer_id(cid.empty() ? w.alice : cid);
    r.set_ticket_id(tid);
    for (auto& t : add) r.add_add_tags(t);
    for (auto& t : remove) r.add_remove_tags(t);
    r.set_request_id(request_id);
    return r;
  };
  const v1::Ticket tagged =
      CallOk(ann, &Stub::UpdateTicketTags, tag(w.t2, {"billing", "VIP"}, {}, "tag-1"));
  CHECK(Ids(tagged.tags().begin(), tagged.tags().end()) == Ids{"billing", "vip"});
  REQUIRE(tagged.messages_size() == 2);
  CHECK(tagged.messages(1).internal());
  CHECK(tagged.messages(1).agent_id() == "ann");
  // Retried: the same answer, done once; the id reused for another change is refused.
  const v1::Ticket again =
      CallOk(ann, &Stub::UpdateTicketTags, tag(w.t2, {"billing", "VIP"}, {}, "tag-1"));
  CHECK(again.messages_size() == 2);
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t2, {"other"}, {}, "tag-1")),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  CallOk(ann, &Stub::UpdateTicketTags, tag(w.t4, {"vip"}, {}, "tag-2", w.bob));

  auto by_tags = [](std::vector<std::string> tags) {
    return Filter([tags](v1::TicketFilter& f) {
      for (auto& t : tags) f.add_tags(t);
    });
  };
  CHECK(Found(ann, "", "", by_tags({"vip"})) == Ids{w.t2, w.t4});
  CHECK(Found(ann, "", "", by_tags({"vip", "billing"})) == Ids{w.t2});
  CHECK(Listed(ann, w.alice, by_tags({"vip"})) == Ids{w.t2});
  const v1::Ticket removed =
      CallOk(ann, &Stub::UpdateTicketTags, tag(w.t2, {}, {"billing"}, "tag-3"));
  CHECK(Ids(removed.tags().begin(), removed.tags().end()) == Ids{"vip"});
  CHECK(Found(ann, "", "", by_tags({"billing"})).empty());

  // Customers: labels are left out of their answers, and they may not set them.
  auto alice = w.AsCustomer(w.alice);
  auto get = testing::ForCustomer<v1::GetTicketRequest>(w.alice);
  get.set_ticket_id(w.t2);
  CHECK(CallOk(alice.get(), &Stub::GetTicket, get).tags_size() == 0);
  const v1::ListTicketsResponse own = CallOk(alice.get(), &Stub::ListTickets,
                                             testing::ForCustomer<v1::ListTicketsRequest>(w.alice));
  for (const auto& t : own.tickets()) {
    CHECK(t.tags_size() == 0);
    CHECK_FALSE(HasInternal(t));
  }
  RequireError(StatusOf(alice.get(), &Stub::UpdateTicketTags, tag(w.t2, {"mine"}, {}, "c-1")),
               grpc::StatusCode::PERMISSION_DENIED, "role customer may not call");

  // Bad input, by field; an unregistered agent; another customer's ticket.
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t2, {"ok", "no way"}, {}, "b1")),
               grpc::StatusCode::INVALID_ARGUMENT, "add_tags[1]:");
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t2, {}, {""}, "b2")),
               grpc::StatusCode::INVALID_ARGUMENT, "remove_tags[0]:");
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t2, {}, {}, "b3")),
               grpc::StatusCode::INVALID_ARGUMENT, "add_tags:");
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t2, {"x"}, {}, "")),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id:");
  RequireError(StatusOf(w.As(v1::ROLE_AGENT, "ghost").get(), &Stub::UpdateTicketTags,
                        tag(w.t2, {"x"}, {}, "g1")),
               grpc::StatusCode::NOT_FOUND, "agent_id:");
  RequireError(StatusOf(ann, &Stub::UpdateTicketTags, tag(w.t4, {"x"}, {}, "b4")),
               grpc::StatusCode::NOT_FOUND, "ticket_id:");
}

int OpenTicketsOf(Stub* stub, const std::string& agent_id) {
  const v1::ListAgentsResponse agents = CallOk(stub, &Stub::ListAgents, v1::ListAgentsRequest());
  for (const auto& a : agents.agents()) {
    if (a.agent_id() == agent_id) return a.open_tickets();
  }
  return -1;
}

TEST_CASE(
    "merge: a duplicate is closed as merged into the customer's other ticket, its messages shown "
    "there, once per request id, and only within one customer",
    "[tickets][merge]") {
  Queues w;
  Stub* ann = w.ann.get();
  const v1::Ticket dup = w.Open(w.alice, "t5", "What are the whereabouts of my parcel?",
                                v1::TICKET_CHANNEL_PHONE, v1::TICKET_CATEGORY_DELIVERY);
  auto note = testing::ForCustomer<v1::AddInternalNoteRequest>(w.alice);
  note.set_ticket_id(dup.ticket_id());
  note.set_text("Same parcel as the web ticket; caller sounded upset.");
  note.set_request_id("note-dup");
  CallOk(ann, &Stub::AddInternalNote, note);
  const std::string holder = dup.assigned_agent_id();
  REQUIRE_FALSE(holder.empty());
  const int held = OpenTicketsOf(w.system.get(), holder);

  auto merge = [&](const std::string& source, const std::string& target,
                   const std::string& request_id, const std::string& cid = "") {
    v1::MergeTicketsRequest r;
    r.set_customer_id(cid.empty() ? w.alice : cid);
    r.set_source_ticket_id(source);
    r.set_target_ticket_id(target);
    r.set_request_id(request_id);
    return r;
  };
  const v1::Ticket target =
      CallOk(ann, &Stub::MergeTickets, merge(dup.ticket_id(), w.t1, "merge-1"));
  CHECK(target.ticket_id() == w.t1);
  CHECK(Ids(target.merged_ticket_ids().begin(), target.merged_ticket_ids().end()) ==
        Ids{dup.ticket_id()});
  int copied = 0, copied_notes = 0;
  for (const auto& m : target.messages()) {
    if (m.merged_from_ticket_id() != dup.ticket_id()) continue;
    ++copied;
    copied_notes += m.internal() ? 1 : 0;
  }
  CHECK(copied == 2);
  CHECK(copied_notes == 1);
  auto get = testing::ForCustomer<v1::GetTicketRequest>(w.alice);
  get.set_ticket_id(dup.ticket_id());
  const v1::Ticket closed = CallOk(ann, &Stub::GetTicket, get);
  CHECK(closed.status() == v1::TICKET_STATUS_CLOSED);
  CHECK(closed.merged_into_ticket_id() == w.t1);
  CHECK(OpenTicketsOf(w.system.get(), holder) == held - 1);

  // Retried: the same answer, merged once; merged again under another id: refused.
  const v1::Ticket again =
      CallOk(ann, &Stub::MergeTickets, merge(dup.ticket_id(), w.t1, "merge-1"));
  CHECK(again.messages_size() == target.messages_size());
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(dup.ticket_id(), w.t2, "merge-2")),
               grpc::StatusCode::FAILED_PRECONDITION, "source_ticket_id:");
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(w.t2, dup.ticket_id(), "merge-3")),
               grpc::StatusCode::FAILED_PRECONDITION, "target_ticket_id:");

  // The customer reads the duplicate's words on the ticket that carries on, never the note; search
  // finds it there.
  auto alice = w.AsCustomer(w.alice);
  get.set_ticket_id(w.t1);
  const v1::Ticket seen = CallOk(alice.get(), &Stub::GetTicket, get);
  CHECK_FALSE(HasInternal(seen));
  bool shown = false;
  for (const auto& m : seen.messages())
    shown = shown || m.merged_from_ticket_id() == dup.ticket_id();
  CHECK(shown);
  CHECK(Found(alice.get(), w.alice, "whereabouts", Filter([](v1::TicketFilter& f) {
                f.add_statuses(v1::TICKET_STATUS_IN_PROGRESS);
                f.add_statuses(v1::TICKET_STATUS_OPEN);
              })) == Ids{w.t1});
  CHECK(Found(alice.get(), w.alice, "upset").empty());

  // Only within one customer; bad input by field; customers may not merge.
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(w.t4, w.t2, "x-1")),
               grpc::StatusCode::NOT_FOUND, "source_ticket_id:");
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(w.t4, w.t2, "x-2", w.bob)),
               grpc::StatusCode::NOT_FOUND, "target_ticket_id:");
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(w.t2, w.t2, "x-3")),
               grpc::StatusCode::INVALID_ARGUMENT, "target_ticket_id:");
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge(w.t2, w.t3, "")),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id:");
  RequireError(StatusOf(ann, &Stub::MergeTickets, merge("", w.t3, "x-4")),
               grpc::StatusCode::INVALID_ARGUMENT, "source_ticket_id:");
  RequireError(StatusOf(alice.get(), &Stub::MergeTickets, merge(w.t2, w.t3, "x-5")),
               grpc::StatusCode::PERMISSION_DENIED, "role customer may not call");
  CHECK(CallOk(ann, &Stub::GetTicket,
               [&] {
                 auto r = testing::ForCustomer<v1::GetTicketRequest>(w.alice);
                 r.set_ticket_id(w.t2);
                 return r;
               }())
            .status() == v1::TICKET_STATUS_OPEN);
}

// Alice's kettle in English (t5, with an agent's internal note) and in Chinese (t6); Bob's kettle
// (t7).
struct Kettles : World {
  Kettles() {
    t5 = Open(alice, "t5", "The kettle I bought leaks water everywhere.", v1::TICKET_CHANNEL_WEB,
              v1::TICKET_CATEGORY_QUALITY, "Broken kettle")
             .ticket_id();
    SetClock(kT0 + absl::Minutes(10));
    t6 = Open(alice, "t6", "我买的电水壶漏水了，很失望。", v1::TICKET_CHANNEL_CHAT,
              v1::TICKET_CATEGORY_QUALITY, "水壶漏水")
             .ticket_id();
    SetClock(kT0 + absl::Minutes(20));
    t7 = Open(bob, "t7", "My KETTLE also leaks, please help.", v1::TICKET_CHANNEL_WEB,
              v1::TICKET_CATEGORY_QUALITY)
             .ticket_id();
    auto note = testing::ForCustomer<v1::AddInternalNoteRequest>(alice);
    note.set_ticket_id(t5);
    note.set_text("Suspect courier damage; check the warehouse photos.");
    note.set_request_id("note-t5");
    CallOk(As(v1::ROLE_AGENT, "ann").get(), &Stub::AddInternalNote, note);
  }
  std::string t5, t6, t7;
};

TEST_CASE(
    "search: words in English and Chinese, every word must match, subjects first, a customer "
    "finds only their own tickets and nothing by an internal note",
    "[tickets][search]") {
  Kettles w;
  Stub* a = w.ann.get();
  // The subject weighs more: Alice's "Broken kettle" before Bob's message.
  CHECK(Found(a, "", "kettle") == Ids{w.t5, w.t7});
  CHECK(Found(a, "", "Kettle LEAKS") == Ids{w.t5, w.t7});
  CHECK(Found(a, "", "kettle everywhere") == Ids{w.t5});
  CHECK(Found(a, "", "kettle teapot").empty());
  // Chinese by bigrams: any word of two characters or more, without spaces.
  CHECK(Found(a, "", "漏水") == Ids{w.t6});
  CHECK(Found(a, "", "电水壶") == Ids{w.t6});
  CHECK(Found(a, "", "水壶 失望") == Ids{w.t6});
  CHECK(Found(a, "", "漏水 kettle").empty());
  // Ranked pages: one at a time, each once.
  CHECK(Found(a, "", "kettle", {}, 1) == Ids{w.t5, w.t7});
  // With a filter, and for one customer.
  CHECK(Found(a, "", "kettle",
              Filter([](v1::TicketFilter& f) { f.add_channels(v1::TICKET_CHANNEL_CHAT); }))
            .empty());
  CHECK(Found(a, w.bob, "kettle") == Ids{w.t7});
  // Agents find their notes.
  CHECK(Found(a, "", "warehouse") == Ids{w.t5});

  auto alice = w.AsCustomer(w.alice);
  CHECK(Found(alice.get(), w.alice, "kettle") == Ids{w.t5});
  CHECK(Found(alice.get(), w.alice, "leaks", {}, 1) == Ids{w.t5});
  // An internal note's words find nothing for the customer, and no answer holds the note.
  CHECK(Found(alice.get(), w.alice, "warehouse").empty());
  CHECK(Found(alice.get(), w.alice, "kettle courier").empty());
  const v1::SearchTicketsResponse found =
      CallOk(alice.get(), &Stub::SearchTickets, SearchOf(w.alice, "kettle"));
  for (const auto& t : found.tickets()) {
    CHECK_FALSE(HasInternal(t));
  }
  // A ranked page token is the customer's own.
  const std::string token =
      CallOk(a, &Stub::SearchTickets, SearchOf("", "kettle", {}, 1)).next_page_token();
  REQUIRE_FALSE(token.empty());
  RequireError(
      StatusOf(alice.get(), &Stub::SearchTickets, SearchOf(w.alice, "kettle", {}, 1, token)),
      grpc::StatusCode::INVALID_ARGUMENT, "page_token");
}

TEST_CASE(
    "search: the indexes follow replies, survive a restart, are rebuilt for tickets written "
    "before them, and forget an erased customer's words",
    "[tickets][search]") {
  Kettles w;
  auto agent = w.As(v1::ROLE_AGENT, "ann");
  auto reply = testing::ForCustomer<v1::ReplyToTicketRequest>(w.bob);
  reply.set_ticket_id(w.t7);
  reply.set_text("A replacement thermostat is on its way.");
  reply.set_request_id("reply-t7");
  api::SetTimestamp(kT0 + absl::Hours(5), reply.mutable_next_step_time());
  CallOk(agent.get(), &Stub::ReplyToTicket, reply);
  CHECK(Found(agent.get(), "", "thermostat") == Ids{w.t7});

  w.tickets.Restart();
  agent = w.As(v1::ROLE_AGENT, "ann");
  CHECK(Found(agent.get(), "", "thermostat") == Ids{w.t7});

  // A store from before the indexes: their rows gone. The next start writes them again.
  REQUIRE(w.tickets.store()
              .Transact(store::Durability::kSynced,
                        [&](store::Transaction& txn) -> absl::Status {
                          for (const char* family : {"ticket_index", "ticket_terms"}) {
                            absl::Status s = txn.DeletePrefix(w.tickets.store().cf(family), "");
                            if (!s.ok()) return s;
                          }
                          return absl::OkStatus();
                        })
              .ok());
  CHECK(Found(agent.get(), "", "kettle").empty());
  w.tickets.Restart();
  agent = w.As(v1::ROLE_AGENT, "ann");
  CHECK(Found(agent.get(), "", "kettle") == Ids{w.t5, w.t7});
  CHECK(Found(agent.get(), "", "", Filter([](v1::TicketFilter& f) {
                f.add_channels(v1::TICKET_CHANNEL_CHAT);
              })) == Ids{w.t6});

  // Erasure: nothing Alice wrote is found any more; her tickets stay in the queues.
  v1::Event erased;
  erased.set_customer_id(w.alice);
  erased.mutable_customer_erased();
  REQUIRE(w.tickets.store()
              .Transact(store::Durability::kSynced,
                        [&](store::Transaction& txn) {
                          return w.tickets.component().service().HandleEvent(txn, erased);
                        })
              .ok());
  CHECK(Found(agent.get(), "", "kettle") == Ids{w.t7});
  CHECK(Found(agent.get(), "", "漏水").empty());
  CHECK(Found(agent.get(), w.alice, "") == Ids{w.t5, w.t6});
}

TEST_CASE(
    "canned replies: supervisors and admins manage them, agents answer with them, variables "
    "filled from the reply and the ticket, unknown or missing ones refused by name",
    "[tickets][canned]") {
  World w;
  w.Agent("sup", 3);
  auto sup = w.As(v1::ROLE_AGENT, "sup");
  Stub* ann = w.ann.get();
  auto put = [](const std::string& id, const std::string& text, const std::string& request_id) {
    v1::PutCannedReplyRequest r;
    r.mutable_canned_reply()->set_canned_reply_id(id);
    r.mutable_canned_reply()->set_title("Parcel delayed");
    r.mutable_canned_reply()->set_text(text);
    r.set_request_id(request_id);
    return r;
  };
  const std::string text =
      "{{customer_name}}您好，订单 {{order_id}} 预计 {{eta}} 送达（工单 {{ticket_id}}，{{ "
      "agent_name "
      "}}）。";
  const v1::CannedReply stored =
      CallOk(sup.get(), &Stub::PutCannedReply, put("parcel-delay", text, "put-1"));
  CHECK(stored.updated_by() == "agent:sup");
  CHECK(stored.has_update_time());
  // Retried: the first answer.
  const v1::CannedReply retried =
      CallOk(sup.get(), &Stub::PutCannedReply, put("parcel-delay", text, "put-1"));
  CHECK(retried.SerializeAsString() == stored.SerializeAsString());
  CallOk(w.As(v1::ROLE_ADMIN, "ops").get(), &Stub::PutCannedReply,
         put("thanks", "Thank you, {{customer_name}}.", "put-2"));
  // Only supervisors and admins manage them; templates are checked.
  RequireError(StatusOf(ann, &Stub::PutCannedReply, put("x", "Hi", "put-3")),
               grpc::StatusCode::PERMISSION_DENIED, "agent_id: a level 1 agent");
  RequireError(StatusOf(w.AsCustomer(w.alice).get(), &Stub::PutCannedReply, put("x", "Hi", "p4")),
               grpc::StatusCode::PERMISSION_DENIED, "role customer may not call");
  RequireError(StatusOf(sup.get(), &Stub::PutCannedReply, put("x", "Hi {{Name}}", "p5")),
               grpc::StatusCode::INVALID_ARGUMENT, "canned_reply.text:");
  RequireError(StatusOf(sup.get(), &Stub::PutCannedReply, put("x", "Hi {{name", "p6")),
               grpc::StatusCode::INVALID_ARGUMENT, "canned_reply.text:");
  RequireError(StatusOf(sup.get(), &Stub::PutCannedReply, put("", "Hi", "p7")),
               grpc::StatusCode::INVALID_ARGUMENT, "canned_reply.canned_reply_id:");
  RequireError(StatusOf(sup.get(), &Stub::PutCannedReply, put("x", "Hi", "")),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id:");
  const v1::ListCannedRepliesResponse listed =
      CallOk(ann, &Stub::ListCannedReplies, v1::ListCannedRepliesRequest());
  REQUIRE(listed.canned_replies_size() == 2);
  CHECK(listed.canned_replies(0).canned_reply().canned_reply_id() == "parcel-delay");
  CHECK(Ids(listed.canned_replies(0).variables().begin(),
            listed.canned_replies(0).variables().end()) ==
        Ids{"customer_name", "order_id", "eta", "ticket_id", "agent_name"});

  // A customer with a name, a ticket about an order.
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-li");
  reg.set_email("li.na@example.com");
  reg.set_name("李娜");
  const std::string li =
      CallOk(w.profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, reg)
          .customer_id();
  v1::OpenTicketRequest open = testing::TicketRequest(
      li, "o", v1::TICKET_CHANNEL_WEB, v1::TICKET_CATEGORY_DELIVERY, "我的包裹还没到，怎么回事？");
  open.set_order_id("o-77");
  const v1::Ticket t = CallOk(w.system.get(), &Stub::OpenTicket, open);
  auto reply = [&](const std::string& canned, std::map<std::string, std::string> vars,
                   const std::string& request_id, const std::string& ticket_id = "") {
    auto r = testing::ForCustomer<v1::ReplyToTicketRequest>(li);
    r.set_ticket_id(ticket_id.empty() ? t.ticket_id() : ticket_id);
    r.set_canned_reply_id(canned);
    for (auto& [k, v] : vars) (*r.mutable_variables())[k] = v;
    r.set_request_id(request_id);
    api::SetTimestamp(kT0 + absl::Hours(8), r.mutable_next_step_time());
    return r;
  };
  const v1::Ticket answered =
      CallOk(ann, &Stub::ReplyToTicket, reply("parcel-delay", {{"eta", "周五"}}, "r-1"));
  const std::string expected =
      "李娜您好，订单 o-77 预计 周五 送达（工单 " + t.ticket_id() + "，Agent ann）。";
  CHECK(answered.messages(answered.messages_size() - 1).text() == expected);
  CHECK(CallOk(ann, &Stub::ReplyToTicket, reply("parcel-delay", {{"eta", "周五"}}, "r-1"))
            .messages_size() == answered.messages_size());
  // A value given for a ticket variable wins.
  const v1::Ticket named =
      CallOk(ann, &Stub::ReplyToTicket, reply("thanks", {{"customer_name", "Ms Li"}}, "r-2"));
  CHECK(named.messages(named.messages_size() - 1).text() == "Thank you, Ms Li.");

  auto refused = [&](const v1::ReplyToTicketRequest& r, grpc::StatusCode code,
                     const std::string& field) {
    RequireError(StatusOf(ann, &Stub::ReplyToTicket, r), code, field);
  };
  refused(reply("parcel-delay", {{"eta", "周五"}, {"colour", "red"}}, "r-3"),
          grpc::StatusCode::INVALID_ARGUMENT, "variables.colour:");
  refused(reply("parcel-delay", {}, "r-4"), grpc::StatusCode::INVALID_ARGUMENT, "variables.eta:");
  refused(reply("no-such", {}, "r-5"), grpc::StatusCode::NOT_FOUND, "canned_reply_id:");
  auto with_text = reply("thanks", {}, "r-6");
  with_text.set_text("and some words");
  refused(with_text, grpc::StatusCode::INVALID_ARGUMENT, "text:");
  auto vars_only = reply("", {{"eta", "x"}}, "r-7");
  vars_only.set_text("Hello");
  refused(vars_only, grpc::StatusCode::INVALID_ARGUMENT, "variables:");
  const v1::Ticket no_order =
      w.Open(li, "o2", "Another question.", v1::TICKET_CHANNEL_WEB, v1::TICKET_CATEGORY_OTHER);
  refused(reply("parcel-delay", {{"eta", "周五"}}, "r-8", no_order.ticket_id()),
          grpc::StatusCode::INVALID_ARGUMENT, "variables.order_id:");
  auto as_customer = reply("thanks", {}, "r-9");
  as_customer.clear_next_step_time();
  RequireError(StatusOf(w.AsCustomer(li).get(), &Stub::ReplyToTicket, as_customer),
               grpc::StatusCode::PERMISSION_DENIED, "canned_reply_id:");

  // Deleted once per request id.
  v1::DeleteCannedReplyRequest del;
  del.set_canned_reply_id("thanks");
  del.set_request_id("del-1");
  CallOk(sup.get(), &Stub::DeleteCannedReply, del);
  CallOk(sup.get(), &Stub::DeleteCannedReply, del);
  del.set_request_id("del-2");
  RequireError(StatusOf(sup.get(), &Stub::DeleteCannedReply, del), grpc::StatusCode::NOT_FOUND,
               "canned_reply_id:");
  RequireError(StatusOf(ann, &Stub::DeleteCannedReply, del), grpc::StatusCode::PERMISSION_DENIED,
               "agent_id:");
  CHECK(
      CallOk(ann, &Stub::ListCannedReplies, v1::ListCannedRepliesRequest()).canned_replies_size() ==
      1);
}

}  // namespace
}  // namespace crm::complaint_ticket
