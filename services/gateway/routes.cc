#include "services/gateway/routes.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "crm/v1/admin.pb.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/customer_view.grpc.pb.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/knowledge_base.pb.h"
#include "crm/v1/loyalty.pb.h"
#include "crm/v1/notifications.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "crm/v1/recommendation.pb.h"
#include "crm/v1/surveys.pb.h"
#include "libs/rpc/backends.h"

namespace crm::gateway {
namespace {

using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::MessageFactory;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

const FieldDescriptor* ResolveField(const google::protobuf::Descriptor* type,
                                    const std::string& name, const std::string& path,
                                    std::vector<std::string>& problems) {
  if (name.empty()) return nullptr;
  const FieldDescriptor* field = type->FindFieldByName(name);
  if (field == nullptr || field->type() != FieldDescriptor::TYPE_STRING || field->is_repeated()) {
    problems.push_back(absl::StrCat(path, ": policy names \"", name,
                                    "\", which is not a string field of ", type->full_name()));
    return nullptr;
  }
  return field;
}

// The API files to route: those of the data services, and one type of each API file, so the linker
// keeps every file's descriptors in the binary.
std::vector<const FileDescriptor*> ApiFiles() {
  const FileDescriptor* linked[] = {v1::GetCustomerRequest::descriptor()->file(),
                                    v1::GetOrderRequest::descriptor()->file(),
                                    v1::GetMembershipRequest::descriptor()->file(),
                                    v1::GetTicketRequest::descriptor()->file(),
                                    v1::RecommendRequest::descriptor()->file(),
                                    v1::DeliverEventsRequest::descriptor()->file(),
                                    v1::CreateCheckpointRequest::descriptor()->file(),
                                    v1::GetCustomerViewRequest::descriptor()->file(),
                                    v1::GetSurveyRequest::descriptor()->file(),
                                    v1::GetArticleRequest::descriptor()->file(),
                                    v1::GetCampaignRequest::descriptor()->file()};
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  std::vector<const FileDescriptor*> files;
  auto add_file = [&](const FileDescriptor* f) {
    if (f != nullptr && std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
  };
  for (const rpc::ServiceInfo& info : rpc::DataServices()) {
    for (const std::string& name : info.also_serves) {
      if (const auto* service = pool->FindServiceByName(name)) add_file(service->file());
    }
    const auto* service = pool->FindServiceByName(info.proto);
    if (service != nullptr) add_file(service->file());
  }
  for (const FileDescriptor* f : linked) add_file(f);
  return files;
}

// The backend that serves `service` ("customer-profile"), as its own or as one it also serves;
// empty when none does.
std::string BackendOf(const ServiceDescriptor& service) {
  const rpc::ServiceInfo* info = rpc::FindServiceServing(service.full_name());
  return info != nullptr ? info->name : "";
}

// The route of `method` as its descriptor and policy declare it.
Route MakeRoute(const MethodDescriptor& method, std::string backend) {
  const ServiceDescriptor& service = *method.service();
  Route r;
  r.path = absl::StrCat("/", service.full_name(), "/", method.name());
  r.service = service.full_name();
  r.method_name = method.name();
  r.method = &method;
  r.request_prototype = MessageFactory::generated_factory()->GetPrototype(method.input_type());
  r.response_prototype = MessageFactory::generated_factory()->GetPrototype(method.output_type());
  r.has_policy = method.options().HasExtension(v1::policy);
  if (r.has_policy) r.policy = method.options().GetExtension(v1::policy);
  r.backend = std::move(backend);
  r.local = service.full_name() == v1::CustomerViewService::service_full_name();
  r.server_streaming = method.server_streaming();
  r.no_side_effects =
      method.options().idempotency_level() == google::protobuf::MethodOptions::NO_SIDE_EFFECTS;
  return r;
}

// Resolves policy.ordered_fan_out: the listing's key, where a shard resumes and how far it looked.
void ResolveOrderedFanOut(const MethodDescriptor& method, Route& r,
                          std::vector<std::string>& problems) {
  const v1::OrderedFanOut& o = r.policy.ordered_fan_out();
  const google::protobuf::Descriptor* output = method.output_type();
  Route::Ordered ordered;
  const std::vector<std::string> parts = absl::StrSplit(o.order_field(), '.');
  if (parts.size() == 2) ordered.list = output->FindFieldByName(parts[0]);
  if (ordered.list == nullptr || !ordered.list->is_repeated() ||
      ordered.list->type() != FieldDescriptor::TYPE_MESSAGE) {
    problems.push_back(absl::StrCat(r.path, ": ordered_fan_out.order_field \"", o.order_field(),
                                    "\" is not <repeated message field>.<string field> of ",
                                    output->full_name()));
    return;
  }
  ordered.key = ResolveField(ordered.list->message_type(), parts[1], r.path, problems);
  ordered.resume = ResolveField(method.input_type(), o.resume_field(), r.path, problems);
  ordered.frontier = ResolveField(output, o.frontier_field(), r.path, problems);
  ordered.page_token = ResolveField(method.input_type(), "page_token", r.path, problems);
  ordered.next_token = ResolveField(output, "next_page_token", r.path, problems);
  ordered.page_size = method.input_type()->FindFieldByName("page_size");
  if (ordered.page_size == nullptr ||
      ordered.page_size->cpp_type() != FieldDescriptor::CPPTYPE_INT32)
    problems.push_back(absl::StrCat(r.path, ": an ordered fan-out needs an int32 page_size"));
  if (ordered.key == nullptr || ordered.resume == nullptr || ordered.page_token == nullptr ||
      ordered.next_token == nullptr || ordered.page_size == nullptr ||
      (!o.frontier_field().empty() && ordered.frontier == nullptr))
    return;
  r.ordered = ordered;
}

// Resolves policy.per_item_fan_out: the answer's list and the enum value of an item not held.
void ResolvePerItemFanOut(const MethodDescriptor& method, Route& r,
                          std::vector<std::string>& problems) {
  const v1::PerItemFanOut& p = r.policy.per_item_fan_out();
  Route::PerItem per_item;
  per_item.results = method.output_type()->FindFieldByName(p.results_field());
  if (per_item.results == nullptr || !per_item.results->is_repeated() ||
      per_item.results->type() != FieldDescriptor::TYPE_MESSAGE) {
    problems.push_back(absl::StrCat(r.path, ": per_item_fan_out.results_field \"",
                                    p.results_field(),
                                    "\" is not a repeated message field of the response"));
    return;
  }
  per_item.outcome = per_item.results->message_type()->FindFieldByName(p.outcome_field());
  const google::protobuf::EnumValueDescriptor* value =
      per_item.outcome != nullptr && per_item.outcome->type() == FieldDescriptor::TYPE_ENUM
          ? per_item.outcome->enum_type()->FindValueByName(p.not_mine_value())
          : nullptr;
  if (value == nullptr) {
    problems.push_back(absl::StrCat(r.path, ": per_item_fan_out needs an enum field \"",
                                    p.outcome_field(), "\" in the results with the value \"",
                                    p.not_mine_value(), "\""));
    return;
  }
  per_item.not_mine = value->number();
  r.per_item = per_item;
}

// Resolves the request fields the route's policy names, and notes what the gateway cannot honour.
void ResolvePolicyFields(const MethodDescriptor& method, Route& r,
                         std::vector<std::string>& problems) {
  if (method.client_streaming()) {
    problems.push_back(absl::StrCat(r.path, ": client streaming is not supported by the gateway"));
  }
  const google::protobuf::Descriptor* input = method.input_type();
  r.customer_id_field = ResolveField(input, r.policy.customer_id_field(), r.path, problems);
  r.shard_key_field = ResolveField(input, r.policy.shard_key_field(), r.path, problems);
  r.shard_key_fallback_field =
      ResolveField(input, r.policy.shard_key_fallback_field(), r.path, problems);
  r.service_field = ResolveField(input, r.policy.service_field(), r.path, problems);
  for (std::string& problem : PolicyProblems(r.path, r.policy))
    problems.push_back(std::move(problem));
  if (r.policy.has_ordered_fan_out()) ResolveOrderedFanOut(method, r, problems);
  if (r.policy.has_per_item_fan_out()) ResolvePerItemFanOut(method, r, problems);
  if (r.policy.shard_key_is_email() && r.shard_key_field == nullptr) {
    problems.push_back(absl::StrCat(r.path, ": shard_key_is_email without a shard_key_field"));
  }
  if (r.backend.empty() && !r.local && r.service_field == nullptr && r.policy.roles_size() > 0) {
    problems.push_back(absl::StrCat(r.path, ": no backend serves ", r.service,
                                    " and the policy names no service_field"));
  }
}

}  // namespace

std::vector<std::string> PolicyProblems(absl::string_view path, const v1::MethodPolicy& policy) {
  std::vector<std::string> problems;
  if (policy.has_ordered_fan_out() && !policy.fan_out())
    problems.push_back(absl::StrCat(path, ": ordered_fan_out without fan_out"));
  // Without fan_out the call reaches one shard and the flag would be silently ignored, leaving the
  // other shards' copies unwritten.
  if (policy.fan_out_replicated() && !policy.fan_out()) {
    problems.push_back(absl::StrCat(
        path, ": fan_out_replicated without fan_out (a replicated write must reach every shard)"));
  }
  if (policy.fan_out_replicated() && policy.has_ordered_fan_out()) {
    problems.push_back(absl::StrCat(path,
                                    ": fan_out_replicated with ordered_fan_out (one shard's answer "
                                    "is handed out, so there is no listing to merge in order)"));
  }
  if (policy.has_per_item_fan_out() &&
      (!policy.fan_out() || policy.fan_out_replicated() || policy.has_ordered_fan_out())) {
    problems.push_back(
        absl::StrCat(path,
                     ": per_item_fan_out needs fan_out, and neither fan_out_replicated nor "
                     "ordered_fan_out (each picks the shards' answers its own way)"));
  }
  return problems;
}

const RouteTable& RouteTable::Default() {
  static const RouteTable* table = new RouteTable();
  return *table;
}

RouteTable::RouteTable() {
  for (const FileDescriptor* file : ApiFiles()) {
    for (int s = 0; s < file->service_count(); ++s) {
      const ServiceDescriptor& service = *file->service(s);
      const std::string backend = BackendOf(service);
      for (int m = 0; m < service.method_count(); ++m) {
        Route r = MakeRoute(*service.method(m), backend);
        ResolvePolicyFields(*service.method(m), r, problems_);
        r.index = routes_.size();
        by_path_[r.path] = routes_.size();
        routes_.push_back(std::move(r));
      }
    }
  }
}

const Route* RouteTable::Find(absl::string_view path) const {
  auto it = by_path_.find(path);
  return it == by_path_.end() ? nullptr : &routes_[it->second];
}

std::string StringField(const google::protobuf::Message& message, const FieldDescriptor* field) {
  if (field == nullptr) return "";
  return message.GetReflection()->GetString(message, field);
}

}  // namespace crm::gateway
