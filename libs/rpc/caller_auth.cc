#include "libs/rpc/caller_auth.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "crm/v1/options.pb.h"
#include "google/protobuf/descriptor.h"
#include "libs/auth/jwt.h"
#include "libs/log/log.h"
#include "libs/rpc/status.h"
#include "libs/rpc/transport.h"

namespace crm::rpc {
namespace {

// The access policy of a method by its path ("/crm.v1.LoyaltyService/GrantPoints"); null when the
// method declares none (or is not a crm.v1 method). Looked up once per path from the compiled-in
// descriptors.
const v1::MethodPolicy* PolicyOf(absl::string_view path) {
  static absl::Mutex mu;
  static auto* cache = new absl::flat_hash_map<std::string, std::unique_ptr<v1::MethodPolicy>>();
  {
    absl::ReaderMutexLock lock(&mu);
    auto it = cache->find(path);
    if (it != cache->end()) return it->second.get();
  }
  std::string name(path);
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  absl::StrReplaceAll({{"/", "."}}, &name);
  const auto* method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
  std::unique_ptr<v1::MethodPolicy> policy;
  if (method != nullptr && method->options().HasExtension(v1::policy)) {
    policy = std::make_unique<v1::MethodPolicy>(method->options().GetExtension(v1::policy));
  }
  absl::MutexLock lock(&mu);
  auto [it, inserted] = cache->try_emplace(std::string(path), std::move(policy));
  return it->second.get();
}

bool NeedsNoCaller(absl::string_view path) {
  return absl::StartsWith(path, "/grpc.health.v1.Health/") ||
         absl::StartsWith(path, "/grpc.reflection.");
}

grpc::Status Unauthenticated(absl::string_view why) {
  return ToGrpc(absl::UnauthenticatedError(why));
}

std::string Value(const grpc::AuthMetadataProcessor::InputMetadata& metadata,
                  absl::string_view key) {
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

}  // namespace

grpc::Status CallerAuthProcessor::Process(const InputMetadata& metadata, grpc::AuthContext* context,
                                          OutputMetadata*, OutputMetadata*) {
  const std::string path = Value(metadata, ":path");
  if (NeedsNoCaller(path)) return grpc::Status::OK;
  auto caller = auth::VerifyCaller(Value(metadata, auth::kCallerMetadata), absl::Now());
  if (!caller.ok()) return Unauthenticated(caller.status().message());
  if (!caller->internal && caller->via != auth::kGatewayName) {
    return Unauthenticated("x-crm-caller: only the gateway speaks for end users and integrations");
  }
  if (tls_) {
    const std::string peer = context == nullptr ? "" : PeerProcessName(*context);
    if (peer != caller->via) {
      return Unauthenticated(absl::StrCat("x-crm-caller: signed by \"", caller->via,
                                          "\" but the connection's certificate is \"", peer,
                                          "\"'s"));
    }
  }
  if (caller->internal) return grpc::Status::OK;
  const v1::MethodPolicy* policy = PolicyOf(path);
  if (policy == nullptr) {
    return ToGrpc(absl::PermissionDeniedError(absl::StrCat(path, " declares no access policy")));
  }
  bool allowed = false;
  for (int role : policy->roles()) allowed = allowed || role == caller->role;
  if (!allowed) {
    return ToGrpc(absl::PermissionDeniedError(
        policy->roles().empty()
            ? absl::StrCat(path, " is only for calls between services")
            : absl::StrCat("role ", auth::RoleName(caller->role), " may not call ", path)));
  }
  if (caller->role == v1::ROLE_ADMIN) {
    log::Info("admin call", {{"method", path},
                             {"actor", caller->Name()},
                             {"request_id", Value(metadata, "x-request-id")}});
  }
  return grpc::Status::OK;
}

absl::StatusOr<auth::Caller> CallerOf(const grpc::ServerContextBase& ctx) {
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find(auth::kCallerMetadata);
  const absl::string_view assertion = it == metadata.end()
                                          ? absl::string_view()
                                          : absl::string_view(it->second.data(), it->second.size());
  return auth::VerifyCaller(assertion, absl::Now());
}

absl::StatusOr<std::string> ActingAgent(const auth::Caller& caller, absl::string_view field,
                                        absl::string_view claimed) {
  if (IsCustomer(caller)) {
    if (claimed.empty()) return std::string();
    return absl::PermissionDeniedError(absl::StrCat(field, ": a customer cannot act as an agent"));
  }
  if (IsAgent(caller)) {
    if (claimed.empty() || claimed == caller.subject) return caller.subject;
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": an agent acts only as themself (the token's subject)"));
  }
  return std::string(claimed);
}

std::string Actor(const auth::Caller& caller) {
  return IsCustomer(caller) ? std::string("customer") : caller.Name();
}

std::string ScopedRequestId(const auth::Caller& caller, absl::string_view request_id,
                            absl::string_view method) {
  return absl::StrCat(caller.RequestScope(), "/", method, method.empty() ? "" : "/", request_id);
}

}  // namespace crm::rpc
