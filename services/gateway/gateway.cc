#include "services/gateway/gateway.h"

#include <atomic>
#include <optional>

#include "absl/hash/hash.h"
#include "absl/memory/memory.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/generic/generic_stub.h"
#include "libs/api/validate.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/status.h"
#include "libs/sharding/shard_map.h"
#include "services/gateway/customer_view.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Fan-out paging: the next page token of a merged answer carries every shard's own token, so the
// next page continues each shard where it stopped. "fan." + one base64url token per shard,
// '.'-separated; an exhausted shard has an empty token and is not called again.
constexpr absl::string_view kFanOutTokenPrefix = "fan.";

std::string EncodeFanOutToken(const std::vector<std::string>& tokens) {
  std::vector<std::string> parts;
  bool any = false;
  for (const std::string& t : tokens) {
    parts.push_back(absl::WebSafeBase64Escape(t));
    any = any || !t.empty();
  }
  return any ? absl::StrCat(kFanOutTokenPrefix, absl::StrJoin(parts, ".")) : "";
}

absl::StatusOr<std::vector<std::string>> DecodeFanOutToken(absl::string_view token, size_t shards) {
  std::vector<std::string> tokens(shards);
  if (token.empty()) return tokens;
  if (!absl::ConsumePrefix(&token, kFanOutTokenPrefix)) {
    return absl::InvalidArgumentError("page_token: not a token this listing returned");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != shards)
    return absl::InvalidArgumentError("page_token: was issued for a different number of shards");
  for (size_t i = 0; i < shards; ++i) {
    if (!absl::WebSafeBase64Unescape(parts[i], &tokens[i]))
      return absl::InvalidArgumentError("page_token: is malformed");
  }
  return tokens;
}

bool IsNumeric(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: return true;
    default: return false;
  }
}

// The shard key a request carries: the customer id, or the policy's shard key field (an email in
// its canonical form when the policy says so: " Li.Na@Example.com" must reach the shard that
// registered "li.na@example.com" and minted its id in that email's bucket), else its fallback
// field.
std::string ShardKey(const Route& r, const Message& request, const std::string& customer_id) {
  if (r.shard_key_field == nullptr) return customer_id;
  std::string key = StringField(request, r.shard_key_field);
  if (r.policy.shard_key_is_email()) key = api::CanonicalEmail(key);
  if (key.empty() && r.shard_key_fallback_field != nullptr)
    key = StringField(request, r.shard_key_fallback_field);
  return key;
}

// The value of the numeric field `f` of `m`, as a double.
double NumericValue(const Message& m, const FieldDescriptor* f) {
  const auto* refl = m.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return refl->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return static_cast<double>(refl->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32: return refl->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64: return static_cast<double>(refl->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_DOUBLE: return refl->GetDouble(m, f);
    default: return refl->GetFloat(m, f);
  }
}

// Sets the numeric field `f` of `m` to `v`, converted to the field's type.
void SetNumericValue(Message* m, const FieldDescriptor* f, double v) {
  const auto* refl = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return refl->SetInt32(m, f, static_cast<int32_t>(v));
    case FieldDescriptor::CPPTYPE_INT64: return refl->SetInt64(m, f, static_cast<int64_t>(v));
    case FieldDescriptor::CPPTYPE_UINT32: return refl->SetUInt32(m, f, static_cast<uint32_t>(v));
    case FieldDescriptor::CPPTYPE_UINT64: return refl->SetUInt64(m, f, static_cast<uint64_t>(v));
    case FieldDescriptor::CPPTYPE_DOUBLE: return refl->SetDouble(m, f, v);
    default: return refl->SetFloat(m, f, static_cast<float>(v));
  }
}

// Merges one shard's answer into the total: lists concatenate and top-level counts add up (a sweep
// that expired 3 tickets on one shard and 2 on another expired 5).
void MergeShardAnswer(const Message& from, Message* to) {
  std::vector<std::pair<const FieldDescriptor*, double>> sums;
  for (int i = 0; i < to->GetDescriptor()->field_count(); ++i) {
    const FieldDescriptor* f = to->GetDescriptor()->field(i);
    if (f->is_repeated() || !IsNumeric(f)) continue;
    sums.emplace_back(f, NumericValue(*to, f) + NumericValue(from, f));
  }
  to->MergeFrom(from);
  for (const auto& [f, v] : sums) SetNumericValue(to, f, v);
}

const FieldDescriptor* StringFieldNamed(const google::protobuf::Descriptor* type,
                                        const char* name) {
  const FieldDescriptor* f = type->FindFieldByName(name);
  return f != nullptr && f->type() == FieldDescriptor::TYPE_STRING && !f->is_repeated() ? f
                                                                                        : nullptr;
}

grpc::Status ToGrpc(const absl::Status& s) { return rpc::ToGrpc(s); }

// A fan-out call while its shards answer.
struct FanOut {
  const Route* route = nullptr;
  std::string request_id;
  // A replicated write's (policy.fan_out_replicated) count of calls whose shards answered
  // differently.
  prometheus::Counter* answers_differ = nullptr;
  // The response's next_page_token (null when the method does not page).
  const FieldDescriptor* next_token = nullptr;
  absl::Mutex mu;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<grpc::ByteBuffer> requests, responses;
  std::vector<int> shards;  // the shard each request goes to
  std::vector<std::string> next_tokens;
  // An ordered listing (route->ordered): the last key handed out before this page, and its size.
  std::string resume_after;
  int page_size = 0;
  grpc::Status error;
  std::atomic<int> remaining{0};
  std::function<void(grpc::Status, grpc::ByteBuffer)> done;
};

constexpr absl::string_view kOrderedTokenPrefix = "fan~";
// An ordered listing's page when the request leaves page_size 0 (the gateway must know the size to
// merge).
constexpr int kOrderedDefaultPage = 100;

// An ordered listing asks every shard for a page after the last key handed out.
absl::Status PlanOrderedRequests(Message& request, size_t shard_count, FanOut& fan) {
  const Route::Ordered& o = *fan.route->ordered;
  const auto* refl = request.GetReflection();
  absl::string_view token = refl->GetStringReference(request, o.page_token, nullptr);
  if (!token.empty()) {
    if (!absl::ConsumePrefix(&token, kOrderedTokenPrefix) ||
        !absl::WebSafeBase64Unescape(token, &fan.resume_after) || fan.resume_after.empty()) {
      return absl::InvalidArgumentError("page_token: not a token this listing returned");
    }
  }
  fan.page_size = refl->GetInt32(request, o.page_size);
  if (fan.page_size == 0) fan.page_size = kOrderedDefaultPage;
  refl->SetInt32(&request, o.page_size, fan.page_size);
  refl->SetString(&request, o.page_token, "");
  refl->SetString(&request, o.resume, fan.resume_after);
  const grpc::ByteBuffer shard_request = FromBytes(request.SerializeAsString());
  fan.next_tokens.resize(shard_count);
  for (size_t s = 0; s < shard_count; ++s) {
    fan.requests.push_back(shard_request);
    fan.shards.push_back(static_cast<int>(s));
  }
  return absl::OkStatus();
}

// The fan-out's request to each shard still to call: a listing that pages sends each shard its own
// page token out of the client's one, and a shard with no more pages is not called again.
absl::Status PlanShardRequests(const grpc::ByteBuffer& request, size_t shard_count, FanOut& fan) {
  const Route& route = *fan.route;
  std::unique_ptr<Message> parsed(route.request_prototype->New());
  parsed->ParseFromString(ToBytes(request));
  if (route.ordered) return PlanOrderedRequests(*parsed, shard_count, fan);
  const FieldDescriptor* page_token = StringFieldNamed(parsed->GetDescriptor(), "page_token");
  fan.next_token = StringFieldNamed(route.response_prototype->GetDescriptor(), "next_page_token");
  const bool paging = page_token != nullptr && fan.next_token != nullptr;
  std::vector<std::string> tokens(shard_count);
  if (paging) {
    CRM_ASSIGN_OR_RETURN(tokens, DecodeFanOutToken(StringField(*parsed, page_token), shard_count));
  }
  const bool continuing = page_token != nullptr && !StringField(*parsed, page_token).empty();
  fan.next_tokens.resize(shard_count);
  for (size_t s = 0; s < shard_count; ++s) {
    if (continuing && tokens[s].empty()) continue;  // this shard has no more pages
    if (paging) {
      parsed->GetReflection()->SetString(parsed.get(), page_token, tokens[s]);
      fan.requests.push_back(FromBytes(parsed->SerializeAsString()));
    } else {
      fan.requests.push_back(request);
    }
    fan.shards.push_back(static_cast<int>(s));
  }
  return absl::OkStatus();
}

// An ordered listing's page out of the shards' answers: their elements merged by key, the smallest
// first, at most the page size, and never past the frontier (the smallest key a shard with more to
// come has looked at), so no shard's later element can belong before one handed out.
absl::StatusOr<std::unique_ptr<Message>> MergeInOrder(
    const FanOut& fan, const std::vector<std::unique_ptr<Message>>& parts) {
  const Route::Ordered& o = *fan.route->ordered;
  struct Element {
    std::string key;
    const Message* message;
  };
  std::vector<Element> elements;
  std::optional<std::string> frontier;
  bool more = false;
  for (const auto& part : parts) {
    const auto* refl = part->GetReflection();
    const int n = refl->FieldSize(*part, o.list);
    for (int i = 0; i < n; ++i) {
      const Message& e = refl->GetRepeatedMessage(*part, o.list, i);
      elements.push_back({e.GetReflection()->GetString(e, o.key), &e});
    }
    if (refl->GetStringReference(*part, o.next_token, nullptr).empty()) continue;
    more = true;
    std::string looked_at = o.frontier != nullptr ? refl->GetString(*part, o.frontier) : "";
    if (looked_at.empty() && n > 0) looked_at = elements.back().key;
    if (looked_at <= fan.resume_after)
      return absl::InternalError("a shard answered more to come without moving on");
    if (!frontier || looked_at < *frontier) frontier = std::move(looked_at);
  }
  std::stable_sort(elements.begin(), elements.end(),
                   [](const Element& a, const Element& b) { return a.key < b.key; });
  auto page = absl::WrapUnique(fan.route->response_prototype->New());
  size_t handed = 0;
  for (; handed < elements.size() && static_cast<int>(handed) < fan.page_size; ++handed) {
    if (frontier && elements[handed].key > *frontier) break;
    page->GetReflection()->AddMessage(page.get(), o.list)->CopyFrom(*elements[handed].message);
  }
  more = more || handed < elements.size();
  if (more) {
    // A full page resumes after its last element; one cut short by the frontier after the frontier
    // (every key up to it was considered on every shard).
    const bool full = static_cast<int>(handed) == fan.page_size;
    const std::string resume = full || !frontier ? elements[handed - 1].key : *frontier;
    page->GetReflection()->SetString(
        page.get(), o.next_token,
        absl::StrCat(kOrderedTokenPrefix, absl::WebSafeBase64Escape(resume)));
  }
  return page;
}

// Each shard stamps its copy of a replicated write with its own clock (update_time, create_time):
// those differ by the moments between the shards' writes, not because the copies do.
class IgnoreTimestamps : public google::protobuf::util::MessageDifferencer::IgnoreCriteria {
 public:
  bool IsIgnored(
      const Message&, const Message&, const FieldDescriptor* field,
      const std::vector<google::protobuf::util::MessageDifferencer::SpecificField>&) override {
    return field->message_type() != nullptr &&
           field->message_type()->full_name() == "google.protobuf.Timestamp";
  }
};

// Every shard's answer, parsed, in the order the shards were planned.
absl::StatusOr<std::vector<std::unique_ptr<Message>>> ParseAnswers(const FanOut& fan) {
  std::vector<std::unique_ptr<Message>> parts;
  for (const grpc::ByteBuffer& response : fan.responses) {
    parts.push_back(absl::WrapUnique(fan.route->response_prototype->New()));
    if (!parts.back()->ParseFromString(ToBytes(response)))
      return absl::InternalError("a shard's answer does not parse");
  }
  return parts;
}

// A replicated write: every shard applied it to its own copy and answers that copy, so adding the
// answers up would repeat its lists and multiply its numbers. The caller gets the answer of the
// lowest shard (the shards are planned in ascending order), as that shard sent it. Copies that
// differ mean a shard missed an earlier write or holds other data: counted and logged, once per
// call.
void DeliverReplicatedAnswer(FanOut& fan) {
  const Route& route = *fan.route;
  auto parts = ParseAnswers(fan);
  if (!parts.ok()) return fan.done(rpc::ToGrpc(parts.status()), {});
  google::protobuf::util::MessageDifferencer same_copy;
  same_copy.AddIgnoreCriteria(new IgnoreTimestamps());  // the differencer owns it
  std::vector<int> differing;
  for (size_t k = 1; k < parts->size(); ++k) {
    if (!same_copy.Compare(*(*parts)[0], *(*parts)[k])) differing.push_back(fan.shards[k]);
  }
  if (!differing.empty()) {
    if (fan.answers_differ != nullptr) fan.answers_differ->Increment();
    log::Warning(
        "replicated write: shards answered different copies; the first shard's answer "
        "was handed out",
        {{"method", route.path},
         {"first_shard", fan.shards[0]},
         {"differing_shards", absl::StrJoin(differing, ",")},
         {"request_id", fan.request_id}});
  }
  fan.done(grpc::Status::OK, fan.responses[0]);
}

// A batch whose items each belong to one shard (policy.per_item_fan_out): every shard answered one
// element per item, and element i is taken from the first shard that holds item i.
void DeliverPerItemAnswer(FanOut& fan) {
  const Route::PerItem& p = *fan.route->per_item;
  auto parsed = ParseAnswers(fan);
  if (!parsed.ok()) return fan.done(rpc::ToGrpc(parsed.status()), {});
  const std::vector<std::unique_ptr<Message>>& parts = *parsed;
  const auto* refl = parts[0]->GetReflection();
  const int items = refl->FieldSize(*parts[0], p.results);
  for (const auto& part : parts) {
    if (refl->FieldSize(*part, p.results) != items) {
      return fan.done(rpc::ToGrpc(absl::InternalError(absl::StrCat(
                          "shards answered different numbers of ", p.results->name()))),
                      {});
    }
  }
  std::unique_ptr<Message> out(parts[0]->New());
  out->CopyFrom(*parts[0]);
  for (int i = 0; i < items; ++i) {
    for (const auto& part : parts) {
      const Message& element = refl->GetRepeatedMessage(*part, p.results, i);
      if (element.GetReflection()->GetEnumValue(element, p.outcome) == p.not_mine) continue;
      refl->MutableRepeatedMessage(out.get(), p.results, i)->CopyFrom(element);
      break;
    }
  }
  fan.done(grpc::Status::OK, FromBytes(out->SerializeAsString()));
}

// Hands the shards' answers, merged into one, to the caller, with a next page token that continues
// each shard where it stopped.
void DeliverMergedAnswer(FanOut& fan) {
  const Route& route = *fan.route;
  if (route.policy.fan_out_replicated()) return DeliverReplicatedAnswer(fan);
  if (route.per_item) return DeliverPerItemAnswer(fan);
  auto parts = ParseAnswers(fan);
  if (!parts.ok()) return fan.done(rpc::ToGrpc(parts.status()), {});
  if (route.ordered) {
    auto page = MergeInOrder(fan, *parts);
    if (!page.ok()) return fan.done(rpc::ToGrpc(page.status()), {});
    return fan.done(grpc::Status::OK, FromBytes((*page)->SerializeAsString()));
  }
  std::unique_ptr<Message> total(route.response_prototype->New());
  for (size_t k = 0; k < parts->size(); ++k) {
    const Message& part = *(*parts)[k];
    if (fan.next_token != nullptr)
      fan.next_tokens[fan.shards[k]] = StringField(part, fan.next_token);
    MergeShardAnswer(part, total.get());
  }
  if (fan.next_token != nullptr) {
    total->GetReflection()->SetString(total.get(), fan.next_token,
                                      EncodeFanOutToken(fan.next_tokens));
  }
  fan.done(grpc::Status::OK, FromBytes(total->SerializeAsString()));
}

// One shard answered: the last one to answer ends the call, with the merged answer or the first
// error.
void ShardAnswered(FanOut& fan, const grpc::Status& s) {
  if (!s.ok()) {
    absl::MutexLock lock(&fan.mu);
    if (fan.error.ok()) fan.error = s;
  }
  if (--fan.remaining > 0) return;
  if (!fan.error.ok()) return fan.done(fan.error, {});
  DeliverMergedAnswer(fan);
}

}  // namespace

absl::string_view ProtocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kGrpc: return "grpc";
    case Protocol::kGrpcWeb: return "grpc-web";
    case Protocol::kGrpcWebText: return "grpc-web-text";
    case Protocol::kConnect: return "connect";
  }
  return "unknown";
}

std::string ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer FromBytes(absl::string_view bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

Gateway::Gateway(GatewayOptions options, rpc::Backends* backends, metrics::Metrics* metrics)
    : options_(std::move(options)),
      view_(std::make_unique<CustomerViewComposer>(this, options_.view_section_timeout)),
      backends_(backends),
      metrics_(metrics) {
  auto& registry = metrics_->registry();
  requests_ = &metrics::CounterFamily(
      registry, "crm_gateway_requests_total",
      "Calls through the gateway by route (full method), front-end protocol and gRPC code.");
  latency_ = &metrics::HistogramFamily(
      registry, "crm_gateway_request_seconds",
      "Time from a call's arrival at the gateway to its answer, by front-end protocol.");
  in_flight_ = &metrics::GaugeFamily(registry, "crm_gateway_in_flight",
                                     "Calls the gateway is serving now, by front-end protocol.");
  rate_limited_ = &metrics::CounterFamily(
      registry, "crm_gateway_rate_limited_total",
      "Calls refused by a rate limit, by the caller's role (\"ip\" for the per-address limit).");
  denied_ = &metrics::CounterFamily(registry, "crm_gateway_denied_total",
                                    "Calls refused before reaching a service, by reason.");
  for (int p = 0; p < kProtocols; ++p) {
    const std::string name(ProtocolName(static_cast<Protocol>(p)));
    in_flight_by_protocol_[p] = &in_flight_->Add({{"protocol", name}});
    latency_by_protocol_[p] = &latency_->Add({{"protocol", name}}, metrics::LatencyBuckets());
  }
  auto& differ = metrics::CounterFamily(
      registry, "crm_gateway_replicated_answers_differ_total",
      "Calls of a replicated write (fan_out_replicated) whose shards answered different copies "
      "(timestamps aside), by method; the caller got the first shard's answer.");
  request_counters_ = std::make_unique<RouteCounters[]>(RouteTable::Default().routes().size() + 1);
  for (const Route& r : RouteTable::Default().routes()) {
    // Made up front, so the series reads 0 (not absent) until it counts.
    replicated_answers_differ_.push_back(
        r.policy.fan_out_replicated() ? &differ.Add({{"method", r.path}}) : nullptr);
    backend_metrics_.push_back(
        metrics_->client_rpc().ForMethod(r.path, r.server_streaming ? "server_stream" : "unary"));
    server_metrics_.push_back(
        metrics_->server_rpc().ForMethod(r.path, r.server_streaming ? "server_stream" : "unary"));
  }
}

prometheus::Counter& Gateway::RequestCounter(const Route* route, Protocol protocol, int code) {
  const size_t index = route != nullptr ? route->index : RouteTable::Default().routes().size();
  const int p = static_cast<int>(protocol);
  code = code >= 0 && code < kCodes ? code : 2;
  std::atomic<prometheus::Counter*>& slot = request_counters_[index].by_code[p][code];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Unknown paths share one label value so a scanner cannot blow up the series count.
    counter = &requests_->Add({{"route", route != nullptr ? route->path : "unknown"},
                               {"protocol", std::string(ProtocolName(protocol))},
                               {"code", std::string(metrics::CodeName(code))}});
    slot.store(counter, std::memory_order_release);
  }
  return *counter;
}

absl::StatusOr<Gateway::Verified> Gateway::Authenticate(absl::string_view token, absl::Time now) {
  TokenStripe& stripe = tokens_[absl::Hash<absl::string_view>{}(token) % kTokenStripes];
  const uint64_t generation = options_.verifier->generation();
  {
    absl::MutexLock lock(&stripe.mu);
    auto it = stripe.verified.find(token);
    if (it != stripe.verified.end()) {
      if (now < it->second.principal.expires + absl::Seconds(30) && now < it->second.renew_after &&
          it->second.key_generation == generation) {
        return it->second;
      }
      stripe.verified.erase(it);
    }
  }
  auto principal = options_.verifier->Verify(token, now);
  if (!principal.ok()) return principal.status();
  Verified v;
  v.key_generation = generation;
  v.principal = *std::move(principal);
  auth::Caller caller;
  caller.role = v.principal.role;
  caller.subject = v.principal.subject;
  caller.customer_id = v.principal.customer_id;
  caller.via = auth::kGatewayName;
  v.assertion = auth::SignCaller(caller, now, kAssertionLifetime);
  v.renew_after = now + kAssertionLifetime / 2;
  absl::MutexLock lock(&stripe.mu);
  if (stripe.verified.size() >= kTokensPerStripe) stripe.verified.clear();
  stripe.verified.emplace(std::string(token), v);
  return v;
}

Gateway::~Gateway() = default;

absl::Status Gateway::Deny(absl::string_view reason, absl::Status status) {
  denied_->Add({{"reason", std::string(reason)}}).Increment();
  // The same reason, as ErrorInfo.reason for clients (OTHER_CUSTOMER, ROLE, UNKNOWN_METHOD, ...).
  return WithReason(std::move(status), absl::AsciiStrToUpper(reason));
}

absl::Status Gateway::Admit(const CallInfo& info, Admission& a) {
  a.started = absl::Now();
  CRM_RETURN_IF_ERROR(AssignRequestId(info.request_id_header, a));
  a.route = RouteTable::Default().Find(info.path);
  if (a.route == nullptr) {
    return Deny("unknown_method",
                absl::UnimplementedError("no such method: the path names no crm.v1 method"));
  }
  server_metrics_[a.route->index]->Started();
  const absl::Time now = absl::Now();
  CRM_RETURN_IF_ERROR(LimitAddress(info.peer_ip, now, a));
  CRM_RETURN_IF_ERROR(Identify(info.authorization, now, a));
  CRM_RETURN_IF_ERROR(LimitPrincipal(now, a));
  CRM_RETURN_IF_ERROR(CheckRole(a));
  a.timeout = CallTimeout(*a.route, info.client_timeout);
  return absl::OkStatus();
}

absl::Status Gateway::AssignRequestId(const std::string& header, Admission& a) {
  if (header.empty()) {
    a.request_id = sharding::NewId("gw-");
  } else if (IsValidRequestId(header)) {
    a.request_id = header;
  } else {
    a.request_id = sharding::NewId("gw-");
    return Deny("bad_header", absl::InvalidArgumentError(
                                  "x-request-id: must be 1-128 characters of A-Z a-z 0-9 . _ : -"));
  }
  return absl::OkStatus();
}

absl::Duration Gateway::Throttle(absl::string_view key, double rps, absl::string_view label,
                                 absl::Time now, Admission& a) {
  const absl::Duration wait = limiter_.Take(key, {rps, 2 * rps}, now);
  if (wait > absl::ZeroDuration()) {
    a.retry_after = wait;
    rate_limited_->Add({{"role", std::string(label)}}).Increment();
  }
  return wait;
}

absl::Status Gateway::LimitAddress(const std::string& peer_ip, absl::Time now, Admission& a) {
  if (options_.ip_rps <= 0 || peer_ip.empty()) return absl::OkStatus();
  const absl::Duration wait = Throttle(absl::StrCat("ip:", peer_ip), options_.ip_rps, "ip", now, a);
  if (wait <= absl::ZeroDuration()) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("rate limit of %g requests/s for this address exceeded; retry after %d ms",
                      options_.ip_rps, absl::ToInt64Milliseconds(wait) + 1));
}

absl::Status Gateway::Identify(absl::string_view authorization, absl::Time now, Admission& a) {
  absl::string_view token = authorization;
  if (token.empty())
    return Deny("unauthenticated",
                absl::UnauthenticatedError("authorization: a bearer token is required"));
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return Deny("unauthenticated",
                absl::UnauthenticatedError("authorization: expected \"Bearer <token>\""));
  }
  auto verified = Authenticate(token, now);
  if (!verified.ok()) return Deny("unauthenticated", verified.status());
  a.principal = std::move(verified->principal);
  a.caller_assertion = std::move(verified->assertion);
  return absl::OkStatus();
}

double Gateway::RoleRps(v1::Role role) const {
  switch (role) {
    case v1::ROLE_CUSTOMER: return options_.customer_rps;
    case v1::ROLE_AGENT: return options_.agent_rps;
    case v1::ROLE_ADMIN: return options_.admin_rps;
    default: return options_.service_rps;
  }
}

absl::Status Gateway::LimitPrincipal(absl::Time now, Admission& a) {
  const double rps = RoleRps(a.principal.role);
  if (rps <= 0) return absl::OkStatus();
  const absl::string_view role = auth::RoleName(a.principal.role);
  const absl::Duration wait =
      Throttle(absl::StrCat(role, ":", a.principal.subject), rps, role, now, a);
  if (wait <= absl::ZeroDuration()) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("rate limit of %g requests/s for role %s exceeded; retry after %d ms", rps,
                      role, absl::ToInt64Milliseconds(wait) + 1));
}

absl::Status Gateway::CheckRole(const Admission& a) {
  const Route& route = *a.route;
  if (!route.has_policy) {
    return Deny("no_policy", absl::PermissionDeniedError(
                                 absl::StrCat(route.path, " declares no access policy")));
  }
  if (route.policy.roles_size() == 0) {
    return Deny("internal_only", absl::PermissionDeniedError(absl::StrCat(
                                     route.path, " is only for calls between services")));
  }
  bool role_allowed = false;
  for (int r : route.policy.roles()) role_allowed = role_allowed || r == a.principal.role;
  if (!role_allowed) {
    return Deny("role",
                absl::PermissionDeniedError(absl::StrCat("role ", auth::RoleName(a.principal.role),
                                                         " may not call ", route.path)));
  }
  return absl::OkStatus();
}

absl::Duration Gateway::CallTimeout(const Route& route,
                                    std::optional<absl::Duration> client_timeout) const {
  const absl::Duration cap =
      route.server_streaming ? options_.stream_max_timeout : options_.max_timeout;
  const absl::Duration fallback =
      route.server_streaming ? options_.stream_max_timeout : options_.default_timeout;
  return client_timeout ? std::min(*client_timeout, cap) : fallback;
}

absl::Status Gateway::Authorize(const Message& request, Admission& a) {
  const Route& r = *a.route;
  const std::string customer_id = StringField(request, r.customer_id_field);
  if (a.principal.role == v1::ROLE_CUSTOMER && r.customer_id_field != nullptr &&
      customer_id != a.principal.customer_id) {
    return Deny("other_customer", absl::PermissionDeniedError(absl::StrCat(
                                      r.customer_id_field->name(),
                                      ": a customer may only act on their own customer id")));
  }
  if (r.local) {
    a.targets.clear();
    return absl::OkStatus();
  }
  std::string backend = r.backend;
  if (r.service_field != nullptr) {
    backend = StringField(request, r.service_field);
    if (rpc::FindService(backend) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.service_field->name(), ": \"", backend, "\" is not a service"));
    }
  }
  auto set = backends_->Get(backend);
  if (!set.ok()) return absl::UnavailableError(absl::StrCat(backend, ": ", set.status().message()));
  a.targets.clear();
  a.target_addresses.clear();
  auto add = [&](int shard) {
    rpc::ChannelSet::Replica replica = (*set)->PickReplica(shard);
    a.targets.push_back(std::move(replica.channel));
    a.target_addresses.push_back(std::move(replica.address));
  };
  if (r.policy.fan_out() && (*set)->shard_count() > 1) {
    for (int s = 0; s < (*set)->shard_count(); ++s) add(s);
  } else {
    const std::string key = ShardKey(r, request, customer_id);
    add(key.empty() ? 0 : (*set)->shard_map().ShardOf(key));
  }
  return absl::OkStatus();
}

absl::Status Gateway::AuthorizeBytes(absl::string_view request, Admission& a) {
  std::unique_ptr<Message> message(a.route->request_prototype->New());
  if (!message->ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: does not parse as ", message->GetDescriptor()->full_name()));
  }
  return Authorize(*message, a);
}

void Gateway::PrepareContext(const Admission& a, grpc::ClientContext& ctx) const {
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(a.timeout));
  ctx.AddMetadata("x-request-id", a.request_id);
  // Who asked, signed for the services (libs/auth/caller.h); clients cannot set it (no client
  // metadata is forwarded).
  ctx.AddMetadata(auth::kCallerMetadata, a.caller_assertion);
}

void Gateway::CallUnary(const Admission& a, const grpc::ByteBuffer& request,
                        ContextFactory make_context,
                        std::function<void(grpc::Status, grpc::ByteBuffer)> done,
                        UpstreamPool* pool) {
  if (a.route->local)
    return view_->Compose(a, request, std::move(make_context), std::move(done), pool);
  if (a.targets.size() == 1) return CallOneTarget(a, request, make_context, std::move(done));
  CallEveryShard(a, request, make_context, std::move(done));
}

void Gateway::CallOneTarget(const Admission& a, const grpc::ByteBuffer& request,
                            const ContextFactory& make_context,
                            std::function<void(grpc::Status, grpc::ByteBuffer)> done) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    grpc::ByteBuffer request, response;
  };
  auto call = std::make_shared<Call>();
  call->ctx = make_context();
  PrepareContext(a, *call->ctx);
  call->request = request;
  grpc::GenericStub stub(a.targets[0]);
  metrics::RpcMetrics::Method* m = &BackendMetrics(*a.route);
  m->Started();
  const absl::Time start = absl::Now();
  stub.UnaryCall(call->ctx.get(), a.route->path, grpc::StubOptions(), &call->request,
                 &call->response, [call, m, start, done = std::move(done)](grpc::Status s) {
                   m->Handled(s.error_code(), absl::ToDoubleSeconds(absl::Now() - start));
                   done(std::move(s), std::move(call->response));
                 });
}

void Gateway::CallEveryShard(const Admission& a, const grpc::ByteBuffer& request,
                             const ContextFactory& make_context,
                             std::function<void(grpc::Status, grpc::ByteBuffer)> done) {
  auto fan = std::make_shared<FanOut>();
  fan->route = a.route;
  fan->request_id = a.request_id;
  fan->answers_differ = replicated_answers_differ_[a.route->index];
  fan->done = std::move(done);
  if (absl::Status planned = PlanShardRequests(request, a.targets.size(), *fan); !planned.ok())
    return fan->done(ToGrpc(planned), {});
  const size_t n = fan->shards.size();
  fan->responses.resize(n);
  fan->remaining = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) {
    fan->contexts.push_back(make_context());
    PrepareContext(a, *fan->contexts.back());
  }
  metrics::RpcMetrics::Method* m = &BackendMetrics(*a.route);
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < n; ++i) {
    grpc::GenericStub stub(a.targets[fan->shards[i]]);
    m->Started();
    stub.UnaryCall(fan->contexts[i].get(), a.route->path, grpc::StubOptions(), &fan->requests[i],
                   &fan->responses[i], [fan, m, start](grpc::Status s) {
                     m->Handled(s.error_code(), absl::ToDoubleSeconds(absl::Now() - start));
                     ShardAnswered(*fan, s);
                   });
  }
  if (n == 0) fan->done(grpc::Status::OK, FromBytes(""));
}

void Gateway::CallStarted(Protocol protocol) {
  in_flight_by_protocol_[static_cast<int>(protocol)]->Increment();
}

void Gateway::CallEnded(const CallInfo& info, const Admission& a, const grpc::Status& status) {
  const double seconds = absl::ToDoubleSeconds(absl::Now() - a.started);
  in_flight_by_protocol_[static_cast<int>(info.protocol)]->Decrement();
  RequestCounter(a.route, info.protocol, status.error_code()).Increment();
  if (a.route != nullptr) {
    server_metrics_[a.route->index]->Handled(status.error_code(), seconds);
  }
  latency_by_protocol_[static_cast<int>(info.protocol)]->Observe(seconds);
  if (!options_.access_log) return;
  const std::string code(metrics::CodeName(status.error_code()));
  const std::string route = a.route != nullptr ? a.route->path : "unknown";
  const std::string principal =
      a.principal.subject.empty()
          ? ""
          : absl::StrCat(auth::RoleName(a.principal.role), ":", a.principal.subject);
  log::Info("call", {{"method", route},
                     {"protocol", ProtocolName(info.protocol)},
                     {"principal", principal},
                     {"code", code},
                     {"latency_ms", seconds * 1000},
                     {"request_id", a.request_id},
                     {"peer", info.peer_ip},
                     {"error", status.error_message()}});
}

}  // namespace crm::gateway
