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

}  // namespace

void CustomerViewComposer::Compose(const Admission& a, const grpc::ByteBuffer& request,
                                   Gateway::ContextFactory make_context,
                                   std::function<void(grpc::Status, grpc::ByteBuffer)> done) {
  auto g = std::make_shared<Gathering>();
  g->done = std::move(done);
  if (!g->request.ParseFromString(ToBytes(request))) {
    return g->done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request: does not parse"), {});
  }
  const std::string& customer_id = g->request.customer_id();
  if (customer_id.empty()) {
    return g->done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "customer_id: is required"),
                   {});
  }
  if (g->request.recommendation_count() < 0 || g->request.recommendation_count() > 50) {
    return g->done(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "recommendation_count: must be 0-50"), {});
  }
  g->staff = a.principal.role != v1::ROLE_CUSTOMER;

  auto add = [&](const char* name, const char* path, auto request, auto response) {
    Section s{name, path, std::make_unique<decltype(request)>(std::move(request)),
              std::make_unique<decltype(response)>(), grpc::Status::OK};
    g->sections.push_back(std::move(s));
  };
  {
    v1::GetCustomerRequest r;
    r.set_customer_id(customer_id);
    add("profile", "/crm.v1.CustomerProfileService/GetCustomer", r, v1::Customer());
  }
  {
    v1::GetPurchaseSummaryRequest r;
    r.set_customer_id(customer_id);
    add("purchases", "/crm.v1.OrderTrackingService/GetPurchaseSummary", r, v1::PurchaseSummary());
  }
  {
    v1::GetMembershipRequest r;
    r.set_customer_id(customer_id);
    add("membership", "/crm.v1.LoyaltyService/GetMembership", r, v1::Membership());
  }
  {
    v1::ListTicketsRequest r;
    r.set_customer_id(customer_id);
    r.set_page_size(100);
    add("complaints", "/crm.v1.ComplaintTicketService/ListTickets", r, v1::ListTicketsResponse());
  }
  if (g->staff) {
    v1::GetCustomerInsightsRequest r;
    r.set_customer_id(customer_id);
    add("insights", "/crm.v1.CustomerProfileService/GetCustomerInsights", r,
        v1::CustomerInsights());
  }
  {
    v1::RecommendRequest r;
    r.set_customer_id(customer_id);
    r.set_placement(v1::PLACEMENT_HOME);
    r.set_count(g->request.recommendation_count() == 0 ? 10 : g->request.recommendation_count());
    add("recommendations", "/crm.v1.RecommendationService/Recommend", r, v1::RecommendResponse());
  }

  // Each section is forwarded like a call of its own, admitted with the view's caller.
  const size_t n = g->sections.size();
  g->admissions.resize(n);
  g->requests.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Admission& sa = g->admissions[i];
    sa.route = RouteTable::Default().Find(g->sections[i].path);
    sa.principal = a.principal;
    sa.caller_assertion = a.caller_assertion;
    sa.request_id = a.request_id;
    sa.started = a.started;
    sa.timeout = std::min(a.timeout, section_timeout_);
    g->requests[i] = FromBytes(g->sections[i].request->SerializeAsString());
  }
  g->remaining = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) {
    Admission& sa = g->admissions[i];
    absl::Status routed = sa.route == nullptr ? absl::InternalError("no route")
                                              : gateway_->Authorize(*g->sections[i].request, sa);
    auto finish = [g, i](grpc::Status status, grpc::ByteBuffer response) {
      Section& s = g->sections[i];
      if (status.ok() && !s.response->ParseFromString(ToBytes(response))) {
        status = grpc::Status(grpc::StatusCode::INTERNAL, "the answer does not parse");
      }
      s.status = std::move(status);
      if (--g->remaining == 0) Assemble(*g);
    };
    if (!routed.ok()) {
      finish(
          grpc::Status(static_cast<grpc::StatusCode>(routed.code()), std::string(routed.message())),
          {});
      continue;
    }
    gateway_->CallUnary(sa, g->requests[i], make_context, std::move(finish));
  }
}

}  // namespace crm::gateway
