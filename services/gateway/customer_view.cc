#include "services/gateway/customer_view.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "libs/api/validate.h"
#include "libs/api/view_sections.h"
#include "libs/auth/caller.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/status.h"
#include "libs/trace/trace.h"
#include "services/gateway/customer_export.h"
#include "services/gateway/upstream_unary.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {
namespace {

constexpr absl::Duration kRecentlyClosed = absl::Hours(24 * 90);
constexpr int kMaxRecentClosed = 10;
// Recommendations the view holds at most, and when the request does not say.
constexpr int kMaxRecommendationsInView = 50;
constexpr int kDefaultRecommendationsInView = 10;

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

// How a section's answer becomes part of the view. The sections the view carries as they are are
// copied into it as bytes, never parsed: the view's field holds the very message the service
// answered.
enum class Placement {
  kWhole,            // the answer is the view's field (purchases, membership)
  kViewSections,     // the answer is part of the view, under its field numbers (profile, insights)
  kRecommendations,  // the answer's `recommendations` become the view's
  kComplaints,       // the customer's tickets, summarised (parsed: sorted and filtered)
};

// One section: the backend method that fills it, its request, and where its answer goes.
struct Section {
  const char* name;
  // The other section the same call fills, if any (the insights, for staff): unavailable with it.
  const char* also;
  const char* path;
  int view_field;  // its field number in crm.v1.CustomerView
  Placement placement;
  std::unique_ptr<google::protobuf::Message> request;
  std::string answer;  // the serialized answer
  grpc::Status status;
};

// Appends field `number` holding the serialized message `bytes` to the serialized message `out`
// (protobuf's wire format: fields may come in any order, and a message is the sum of its fields).
void AppendMessageField(int number, absl::string_view bytes, std::string* out) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::StringOutputStream stream(out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.WriteTag(WireFormatLite::MakeTag(number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
  coded.WriteVarint32(static_cast<uint32_t>(bytes.size()));
  coded.WriteRaw(bytes.data(), static_cast<int>(bytes.size()));
}

// A length-delimited field copied from an answer into the view, renumbered.
struct FieldMove {
  int from;
  int to;
};

// Copies the fields of the serialized message `bytes` that `moves` name (length-delimited, repeated
// or not) into `out`, each under its new number, in one walk of the wire format; false when `bytes`
// is not a message.
bool CopyMessageFields(absl::string_view bytes, absl::Span<const FieldMove> moves,
                       std::string* out) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  while (const uint32_t tag = in.ReadTag()) {
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const auto move = std::find_if(moves.begin(), moves.end(),
                                   [number](const FieldMove& m) { return m.from == number; });
    if (move == moves.end() ||
        WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    uint32_t length = 0;
    std::string field;
    if (!in.ReadVarint32(&length) || !in.ReadString(&field, static_cast<int>(length))) return false;
    AppendMessageField(move->to, field, out);
  }
  return in.ConsumedEntireMessage();
}

// Section `name` of the view, not filled because its call ended with `status`.
v1::UnavailableSection Unavailable(const char* name, const grpc::Status& status) {
  return api::UnavailableSectionOf(name, rpc::FromGrpc(status));
}

// The view while its sections are out.
struct Gathering {
  std::vector<Section> sections;
  std::atomic<int> remaining{0};
  v1::GetCustomerViewRequest request;
  bool staff = false;
  std::function<void(grpc::Status, grpc::ByteBuffer)> done;
};

// Adds a section's answer to the view: into `view` when it has to be read (complaints), else as
// bytes to `sections`. An error is an answer that is not what the service promised.
grpc::Status Place(Section& s, absl::Time now, v1::CustomerView& view, std::string* sections) {
  switch (s.placement) {
    case Placement::kWhole:
      AppendMessageField(s.view_field, s.answer, sections);
      return grpc::Status::OK;
    case Placement::kViewSections: {
      // Only the fields the service promised, and all or nothing; the insights only when the view
      // asked for them (`also`: staff), whatever the service sent. The insights come last: a
      // customer's view takes the first two.
      using Sections = v1::CustomerViewSections;
      static constexpr FieldMove kTaken[] = {
          {Sections::kProfileFieldNumber, Sections::kProfileFieldNumber},
          {Sections::kUnavailableFieldNumber, Sections::kUnavailableFieldNumber},
          {Sections::kInsightsFieldNumber, Sections::kInsightsFieldNumber}};
      std::string copied;
      if (CopyMessageFields(s.answer, absl::MakeConstSpan(kTaken, s.also == nullptr ? 2 : 3),
                            &copied)) {
        sections->append(copied);
        return grpc::Status::OK;
      }
      break;
    }
    case Placement::kRecommendations: {
      // All or nothing: an answer that breaks off halfway adds no recommendation.
      std::string copied;
      if (CopyMessageFields(s.answer,
                            {{v1::RecommendResponse::kRecommendationsFieldNumber, s.view_field}},
                            &copied)) {
        sections->append(copied);
        return grpc::Status::OK;
      }
      break;
    }
    case Placement::kComplaints: {
      v1::ListTicketsResponse tickets;
      if (tickets.ParseFromString(s.answer)) {
        Summarise(std::move(tickets), now, view.mutable_complaints());
        return grpc::Status::OK;
      }
      break;
    }
  }
  return rpc::ToGrpc(absl::InternalError("the answer does not parse"));
}

void Assemble(Gathering& g) {
  v1::CustomerView view;
  view.set_customer_id(g.request.customer_id());
  const absl::Time now = absl::Now();
  api::SetTimestamp(now, view.mutable_view_time());
  std::string sections;
  for (Section& s : g.sections) {
    if (s.view_field == v1::CustomerView::kProfileFieldNumber &&
        s.status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return g.done(s.status, {});  // no such customer (or erased): nothing to show anywhere
    }
    if (s.status.ok()) s.status = Place(s, now, view, &sections);
    // A customer without tickets or membership activity is an empty section, not a missing one.
    if (!s.status.ok() && s.status.error_code() != grpc::StatusCode::NOT_FOUND) {
      for (const char* name : {s.name, s.also}) {
        if (name != nullptr) *view.add_unavailable() = Unavailable(name, s.status);
      }
    }
  }
  g.done(grpc::Status::OK, FromBytes(view.SerializeAsString() + sections));
}

grpc::Status ParseViewRequest(const grpc::ByteBuffer& bytes, v1::GetCustomerViewRequest& request) {
  if (!request.ParseFromString(ToBytes(bytes))) {
    return rpc::ToGrpc(absl::InvalidArgumentError("request: does not parse"));
  }
  if (request.customer_id().empty()) {
    return rpc::ToGrpc(absl::InvalidArgumentError("customer_id: is required"));
  }
  if (request.recommendation_count() < 0 ||
      request.recommendation_count() > kMaxRecommendationsInView) {
    return rpc::ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("recommendation_count: must be 0-", kMaxRecommendationsInView)));
  }
  return grpc::Status::OK;
}

template <typename Request>
Section SectionOf(const char* name, const char* path, int view_field, Request request,
                  Placement placement = Placement::kWhole, const char* also = nullptr) {
  return Section{name,          also,
                 path,          view_field,
                 placement,     std::make_unique<Request>(std::move(request)),
                 std::string(), grpc::Status::OK};
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
  using View = v1::CustomerView;
  std::vector<Section> sections;
  // customer-profile answers the profile and, for staff, the insights in one call.
  sections.push_back(SectionOf("profile", "/crm.v1.CustomerProfileService/GetCustomerViewSections",
                               View::kProfileFieldNumber,
                               ForCustomer<v1::GetCustomerViewSectionsRequest>(id),
                               Placement::kViewSections, staff ? "insights" : nullptr));
  sections.push_back(SectionOf("purchases", "/crm.v1.OrderTrackingService/GetPurchaseSummary",
                               View::kPurchasesFieldNumber,
                               ForCustomer<v1::GetPurchaseSummaryRequest>(id)));
  sections.push_back(SectionOf("membership", "/crm.v1.LoyaltyService/GetMembership",
                               View::kMembershipFieldNumber,
                               ForCustomer<v1::GetMembershipRequest>(id)));
  auto tickets = ForCustomer<v1::ListTicketsRequest>(id);
  tickets.set_page_size(100);
  sections.push_back(SectionOf("complaints", "/crm.v1.ComplaintTicketService/ListTickets",
                               View::kComplaintsFieldNumber, std::move(tickets),
                               Placement::kComplaints));
  auto recommend = ForCustomer<v1::RecommendRequest>(id);
  recommend.set_placement(v1::PLACEMENT_HOME);
  recommend.set_count(view.recommendation_count() == 0 ? kDefaultRecommendationsInView
                                                       : view.recommendation_count());
  sections.push_back(SectionOf("recommendations", "/crm.v1.RecommendationService/Recommend",
                               View::kRecommendationsFieldNumber, std::move(recommend),
                               Placement::kRecommendations));
  return sections;
}

// A call is forwarded like a call of its own, admitted with the outer call's caller, within its
// own deadline and what is left of the outer one.
Admission InnerAdmission(const Admission& outer, const char* path, absl::Duration timeout) {
  Admission a;
  a.route = RouteTable::Default().Find(path);
  a.principal = outer.principal;
  a.caller_assertion = outer.caller_assertion;
  a.request_id = outer.request_id;
  a.started = outer.started;
  a.timeout = std::min(outer.timeout - (absl::Now() - outer.started), timeout);
  return a;
}

// Section `i` answered (or failed); the last section to answer assembles the view.
void SectionAnswered(Gathering& g, size_t i, grpc::Status status, std::string response) {
  Section& s = g.sections[i];
  if (status.ok()) s.answer = std::move(response);
  s.status = std::move(status);
  if (--g.remaining == 0) Assemble(g);
}

// A call relayed over the loop's connection to its service, with what any relayed call carries
// (deadline, request id, trace, the caller the services believe) and the same grpc_client_*
// metrics.
void Relay(Gateway& gateway, UpstreamPool& pool, const Admission& a, const std::string& request,
           std::function<void(grpc::Status, std::string)> done) {
  Headers headers = {{"grpc-timeout", FormatGrpcTimeout(a.timeout)},
                     {"x-request-id", a.request_id},
                     {auth::kCallerMetadata, a.caller_assertion}};
  if (const std::optional<trace::TraceContext> current = trace::Current()) {
    headers.emplace_back(trace::kTraceparent, trace::Format(trace::ChildOf(*current)));
  }
  metrics::RpcMetrics::Method* m = &gateway.BackendMetrics(*a.route);
  m->Started();
  const absl::Time start = absl::Now();
  CallUpstreamUnary(pool, a.target_addresses[0], a.route->path, std::move(headers), request,
                    [m, start, done = std::move(done)](grpc::Status status, std::string answer) {
                      m->Handled(status.error_code(), absl::ToDoubleSeconds(absl::Now() - start));
                      done(std::move(status), std::move(answer));
                    });
}

// A customer-profile older than GetCustomerViewSections (a rolling update that reached the gateway
// first) answers it UNIMPLEMENTED: section `i` is then asked for as before that call, the profile
// and (staff) the insights apart, and answered in the same layout.
void AskCustomerProfileApart(const ServiceCalls& calls, std::shared_ptr<Gathering> g, size_t i) {
  struct Apart {
    std::atomic<int> remaining{0};
    grpc::Status profile_status, insights_status;
    std::string profile, insights;
  };
  auto apart = std::make_shared<Apart>();
  apart->remaining = g->staff ? 2 : 1;
  auto answered = [g, i, apart] {
    if (--apart->remaining != 0) return;
    using Sections = v1::CustomerViewSections;
    std::string sections;
    AppendMessageField(Sections::kProfileFieldNumber, apart->profile, &sections);
    if (g->staff && apart->insights_status.ok()) {
      AppendMessageField(Sections::kInsightsFieldNumber, apart->insights, &sections);
    } else if (g->staff && apart->insights_status.error_code() != grpc::StatusCode::NOT_FOUND) {
      AppendMessageField(Sections::kUnavailableFieldNumber,
                         Unavailable("insights", apart->insights_status).SerializeAsString(),
                         &sections);
    }
    SectionAnswered(*g, i, apart->profile_status, std::move(sections));
  };
  const std::string& id = g->request.customer_id();
  calls.Call("/crm.v1.CustomerProfileService/GetCustomer", ForCustomer<v1::GetCustomerRequest>(id),
             [apart, answered](grpc::Status status, std::string answer) {
               apart->profile_status = std::move(status);
               apart->profile = std::move(answer);
               answered();
             });
  if (!g->staff) return;
  calls.Call("/crm.v1.CustomerProfileService/GetCustomerInsights",
             ForCustomer<v1::GetCustomerInsightsRequest>(id),
             [apart, answered](grpc::Status status, std::string answer) {
               apart->insights_status = std::move(status);
               apart->insights = std::move(answer);
               answered();
             });
}

}  // namespace

void CustomerViewComposer::Compose(const Admission& a, const grpc::ByteBuffer& request,
                                   Gateway::ContextFactory make_context,
                                   std::function<void(grpc::Status, grpc::ByteBuffer)> done,
                                   UpstreamPool* pool) {
  const ServiceCalls calls{gateway_,        a, section_timeout_, std::move(make_context), pool,
                           trace::Current()};
  if (a.route->method_name == "ExportCustomerDataBundle") {
    return ComposeCustomerExport(calls, request, std::move(done));
  }
  auto g = std::make_shared<Gathering>();
  g->done = std::move(done);
  if (grpc::Status invalid = ParseViewRequest(request, g->request); !invalid.ok()) {
    return g->done(std::move(invalid), {});
  }
  g->staff = a.principal.role != v1::ROLE_CUSTOMER;
  g->sections = ViewSections(g->request, g->staff);
  const size_t n = g->sections.size();
  // Every section counted before the first is sent: one may answer before the next is sent.
  g->remaining = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) {
    calls.Call(g->sections[i].path, *g->sections[i].request,
               [g, i, calls](grpc::Status status, std::string answer) {
                 if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
                     g->sections[i].placement == Placement::kViewSections) {
                   return AskCustomerProfileApart(calls, g, i);
                 }
                 SectionAnswered(*g, i, std::move(status), std::move(answer));
               });
  }
}

void ServiceCalls::Call(const char* path, const google::protobuf::Message& request,
                        std::function<void(grpc::Status, std::string)> done,
                        const std::string& assertion) const {
  Admission a = InnerAdmission(outer, path, timeout);
  if (!assertion.empty()) a.caller_assertion = assertion;
  absl::Status routed = a.route == nullptr ? absl::InternalError(absl::StrCat(path, ": no route"))
                                           : gateway->Authorize(request, a);
  if (routed.ok() && a.timeout <= absl::ZeroDuration()) {
    routed = absl::DeadlineExceededError("the call's deadline passed");
  }
  if (!routed.ok()) return done(rpc::ToGrpc(routed), {});
  const std::string serialized = request.SerializeAsString();
  const trace::Scope scope(trace);
  if (pool != nullptr && a.target_addresses.size() == 1) {
    return Relay(*gateway, *pool, a, serialized, std::move(done));
  }
  gateway->CallUnary(a, FromBytes(serialized), make_context,
                     [done = std::move(done)](grpc::Status status, grpc::ByteBuffer response) {
                       done(std::move(status), ToBytes(response));
                     });
}

}  // namespace crm::gateway
