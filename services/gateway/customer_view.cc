#include "services/gateway/customer_view.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/api/validate.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/status.h"

namespace crm::gateway {
namespace {

constexpr absl::Duration kRecentlyClosed = absl::Hours(24 * 90);
constexpr int kMaxRecentClosed = 10;

bool IsOpen(v1::TicketStatus s) {
  return s != v1::TICKET_STATUS_RESOLVED && s != v1::TICKET_STATUS_CLOSED;
}

void Summarise(v1::ListTicketsResponse tickets, absl::Time now, v1::ComplaintSummary* out) {
  auto* list = tickets.mutable_tickets();
  std::sort(list->begin(), list->end(), [](const v1::Ticket& a, const v1::Ticket& b) {
    return api::FromTimestamp(a.create_time()) > api::FromTimestamp(b.create_time());
  });
  for (v1::Ticket& t : *list) {
    if (IsOpen(t.status())) {
      if (t.sla().breaches_size() > 0) out->set_open_breached(out->open_breached() + 1);
      *out->add_open_tickets() = std::move(t);
    } else if (api::FromTimestamp(t.update_time()) >= now - kRecentlyClosed &&
               out->recent_closed_tickets_size() < kMaxRecentClosed) {
      *out->add_recent_closed_tickets() = std::move(t);
    }
  }
}

// One section: the backend method that fills it, its request, and where its answer goes.
struct Section {
  const char* name;
  const char* path;
  std::unique_ptr<google::protobuf::Message> request;
  std::unique_ptr<google::protobuf::Message> response;
  grpc::Status status;
};

// The view while its sections are out.
struct Gathering {
  std::vector<Section> sections;
  std::vector<Admission> admissions;
  std::vector<grpc::ByteBuffer> requests, responses;
  std::atomic<int> remaining{0};
  v1::GetCustomerViewRequest request;
  bool staff = false;
  std::function<void(grpc::Status, grpc::ByteBuffer)> done;
};

void Assemble(Gathering& g) {
  v1::CustomerView view;
  view.set_customer_id(g.request.customer_id());
  const absl::Time now = absl::Now();
  api::SetTimestamp(now, view.mutable_view_time());
  for (Section& s : g.sections) {
    const std::string name = s.name;
    if (name == "profile" && s.status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return g.done(s.status, {});  // no such customer (or erased): nothing to show anywhere
    }
    // A customer without tickets or membership activity is an empty section, not a missing one.
    if (!s.status.ok() && s.status.error_code() != grpc::StatusCode::NOT_FOUND) {
      auto* u = view.add_unavailable();
      u->set_section(name);
      u->set_code(std::string(metrics::CodeName(s.status.error_code())));
      u->set_reason(s.status.error_message());
      continue;
    }
    if (!s.status.ok()) continue;
    if (name == "profile") {
      view.mutable_profile()->Swap(static_cast<v1::Customer*>(s.response.get()));
    } else if (name == "purchases") {
      view.mutable_purchases()->Swap(static_cast<v1::PurchaseSummary*>(s.response.get()));
    } else if (name == "membership") {
      view.mutable_membership()->Swap(static_cast<v1::Membership*>(s.response.get()));
    } else if (name == "complaints") {
      Summarise(std::move(*static_cast<v1::ListTicketsResponse*>(s.response.get())), now,
                view.mutable_complaints());
    } else if (name == "insights") {
      view.mutable_insights()->Swap(static_cast<v1::CustomerInsights*>(s.response.get()));
    } else if (name == "recommendations") {
      view.mutable_recommendations()->Swap(
          static_cast<v1::RecommendResponse*>(s.response.get())->mutable_recommendations());
    }
  }
  g.done(grpc::Status::OK, FromBytes(view.SerializeAsString()));
}

grpc::Status ParseViewRequest(const grpc::ByteBuffer& bytes, v1::GetCustomerViewRequest& request) {
  if (!request.ParseFromString(ToBytes(bytes))) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request: does not parse");
  }
  if (request.customer_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "customer_id: is required");
  }
  if (request.recommendation_count() < 0 || request.recommendation_count() > 50) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "recommendation_count: must be 0-50");
  }
  return grpc::Status::OK;
}

template <typename Response, typename Request>
Section SectionOf(const char* name, const char* path, Request request) {
  return Section{name, path, std::make_unique<Request>(std::move(request)),
                 std::make_unique<Response>(), grpc::Status::OK};
}

template <typename Request>
Request ForCustomer(const std::string& customer_id) {
  Request r;
  r.set_customer_id(customer_id);
  return r;
}

// The sections of the view, in the order it lists them; staff also see the insights.
std::vector<Section> ViewSections(const v1::GetCustomerViewRequest& view, bool staff) {
  const std::string& id = view.customer_id();
  std::vector<Section> sections;
  sections.push_back(SectionOf<v1::Customer>("profile",
                                             "/crm.v1.CustomerProfileService/GetCustomer",
                                             ForCustomer<v1::GetCustomerRequest>(id)));
  sections.push_back(
      SectionOf<v1::PurchaseSummary>("purchases", "/crm.v1.OrderTrackingService/GetPurchaseSummary",
                                     ForCustomer<v1::GetPurchaseSummaryRequest>(id)));
  sections.push_back(SectionOf<v1::Membership>("membership", "/crm.v1.LoyaltyService/GetMembership",
                                               ForCustomer<v1::GetMembershipRequest>(id)));
  auto tickets = ForCustomer<v1::ListTicketsRequest>(id);
  tickets.set_page_size(100);
  sections.push_back(SectionOf<v1::ListTicketsResponse>(
      "complaints", "/crm.v1.ComplaintTicketService/ListTickets", std::move(tickets)));
  if (staff) {
    sections.push_back(SectionOf<v1::CustomerInsights>(
        "insights", "/crm.v1.CustomerProfileService/GetCustomerInsights",
        ForCustomer<v1::GetCustomerInsightsRequest>(id)));
  }
  auto recommend = ForCustomer<v1::RecommendRequest>(id);
  recommend.set_placement(v1::PLACEMENT_HOME);
  recommend.set_count(view.recommendation_count() == 0 ? 10 : view.recommendation_count());
  sections.push_back(SectionOf<v1::RecommendResponse>(
      "recommendations", "/crm.v1.RecommendationService/Recommend", std::move(recommend)));
  return sections;
}

// A section is forwarded like a call of its own, admitted with the view's caller, within the
// section's own deadline.
Admission SectionAdmission(const Admission& view, const char* path, absl::Duration timeout) {
  Admission a;
  a.route = RouteTable::Default().Find(path);
  a.principal = view.principal;
  a.caller_assertion = view.caller_assertion;
  a.request_id = view.request_id;
  a.started = view.started;
  a.timeout = std::min(view.timeout, timeout);
  return a;
}

// Section `i` answered (or failed); the last section to answer assembles the view.
void SectionAnswered(Gathering& g, size_t i, grpc::Status status,
                     const grpc::ByteBuffer& response) {
  Section& s = g.sections[i];
  if (status.ok() && !s.response->ParseFromString(ToBytes(response))) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "the answer does not parse");
  }
  s.status = std::move(status);
  if (--g.remaining == 0) Assemble(g);
}

void ForwardSection(Gateway& gateway, const std::shared_ptr<Gathering>& g, size_t i,
                    const Gateway::ContextFactory& make_context) {
  Admission& a = g->admissions[i];
  const absl::Status routed = a.route == nullptr ? absl::InternalError("no route")
                                                 : gateway.Authorize(*g->sections[i].request, a);
  auto finish = [g, i](grpc::Status status, grpc::ByteBuffer response) {
    SectionAnswered(*g, i, std::move(status), response);
  };
  if (!routed.ok()) return finish(rpc::ToGrpc(routed), {});
  gateway.CallUnary(a, g->requests[i], make_context, std::move(finish));
}

}  // namespace

void CustomerViewComposer::Compose(const Admission& a, const grpc::ByteBuffer& request,
                                   Gateway::ContextFactory make_context,
                                   std::function<void(grpc::Status, grpc::ByteBuffer)> done) {
  auto g = std::make_shared<Gathering>();
  g->done = std::move(done);
  if (grpc::Status invalid = ParseViewRequest(request, g->request); !invalid.ok()) {
    return g->done(std::move(invalid), {});
  }
  g->staff = a.principal.role != v1::ROLE_CUSTOMER;
  g->sections = ViewSections(g->request, g->staff);
  const size_t n = g->sections.size();
  g->admissions.resize(n);
  g->requests.resize(n);
  for (size_t i = 0; i < n; ++i) {
    g->admissions[i] = SectionAdmission(a, g->sections[i].path, section_timeout_);
    g->requests[i] = FromBytes(g->sections[i].request->SerializeAsString());
  }
  // Every section counted before the first is sent: one may answer before the next is sent.
  g->remaining = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) ForwardSection(*gateway_, g, i, make_context);
}

}  // namespace crm::gateway
