// Every crm.v1 method the gateway can forward, built once from the compiled-in descriptors: adding
// a method to a .proto adds its route without touching gateway code. Each route carries the
// method's access policy (crm.v1.policy option) and where its calls go.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "crm/v1/options.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace crm::gateway {

struct Route {
  size_t index = 0;         // position in RouteTable::routes(), for per-route arrays
  std::string path;         // "/crm.v1.CustomerProfileService/GetCustomer"
  std::string service;      // "crm.v1.CustomerProfileService"
  std::string method_name;  // "GetCustomer"
  const google::protobuf::MethodDescriptor* method = nullptr;
  const google::protobuf::Message* request_prototype = nullptr;
  const google::protobuf::Message* response_prototype = nullptr;
  bool has_policy = false;
  v1::MethodPolicy policy;
  // The backend ("customer-profile"); empty when the request names it (policy.service_field).
  std::string backend;
  // Answered by the gateway itself (the customer 360° view), composed from other routes.
  bool local = false;
  bool server_streaming = false;
  // The method changes nothing (idempotency_level NO_SIDE_EFFECTS): Connect clients may call it
  // with GET.
  bool no_side_effects = false;
  // Resolved policy fields of the request type (null when the policy names none).
  const google::protobuf::FieldDescriptor* customer_id_field = nullptr;
  const google::protobuf::FieldDescriptor* shard_key_field = nullptr;
  const google::protobuf::FieldDescriptor* shard_key_fallback_field = nullptr;
  const google::protobuf::FieldDescriptor* service_field = nullptr;
  // policy.ordered_fan_out resolved (null when the listing's shards are appended).
  struct Ordered {
    const google::protobuf::FieldDescriptor* list = nullptr;        // response, repeated message
    const google::protobuf::FieldDescriptor* key = nullptr;         // string, in list's elements
    const google::protobuf::FieldDescriptor* resume = nullptr;      // request, string
    const google::protobuf::FieldDescriptor* frontier = nullptr;    // response, string, optional
    const google::protobuf::FieldDescriptor* page_size = nullptr;   // request, int32
    const google::protobuf::FieldDescriptor* page_token = nullptr;  // request, string
    const google::protobuf::FieldDescriptor* next_token = nullptr;  // response, string
  };
  std::optional<Ordered> ordered;
  // policy.per_item_fan_out resolved (null when the batch's answers are merged as usual).
  struct PerItem {
    const google::protobuf::FieldDescriptor* results = nullptr;  // response, repeated message
    const google::protobuf::FieldDescriptor* outcome = nullptr;  // enum, in results' elements
    int not_mine = 0;                                            // that enum's value
  };
  std::optional<PerItem> per_item;
};

class RouteTable {
 public:
  // Routes of every service in the crm.v1 files linked into this binary.
  static const RouteTable& Default();

  const Route* Find(absl::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }
  // Problems found while building (a policy naming a field the request does not have): the gateway
  // refuses to start with any.
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  RouteTable();
  std::vector<Route> routes_;
  absl::flat_hash_map<std::string, size_t> by_path_;
  std::vector<std::string> problems_;
};

// What is contradictory in a method's policy by itself, one message per problem naming `path`
// (e.g. fan_out_replicated without fan_out); RouteTable::problems() includes these.
std::vector<std::string> PolicyProblems(absl::string_view path, const v1::MethodPolicy& policy);

// The string value of `field` in `message` ("" when unset or not a string).
std::string StringField(const google::protobuf::Message& message,
                        const google::protobuf::FieldDescriptor* field);

}  // namespace crm::gateway
