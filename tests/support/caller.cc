#include "tests/support/caller.h"

#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"

namespace crm::testing {
namespace {

class SignAs : public grpc::experimental::Interceptor {
 public:
  explicit SignAs(std::string assertion) : assertion_(std::move(assertion)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* metadata = methods->GetSendInitialMetadata();
      if (metadata->find(auth::kCallerMetadata) == metadata->end())
        metadata->emplace(auth::kCallerMetadata, assertion_);
    }
    methods->Proceed();
  }

 private:
  std::string assertion_;
};

class SignAsFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit SignAsFactory(auth::Caller caller) : caller_(std::move(caller)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new SignAs(AssertionOf(caller_));
  }

 private:
  auth::Caller caller_;
};

}  // namespace

auth::Caller ViaGateway(v1::Role role, const std::string& subject) {
  auth::Caller c;
  c.role = role;
  c.subject = subject;
  if (role == v1::ROLE_CUSTOMER) c.customer_id = subject;
  c.via = auth::kGatewayName;
  return c;
}

auth::Caller CustomerCaller(const std::string& customer_id) {
  return ViaGateway(v1::ROLE_CUSTOMER, customer_id);
}

auth::Caller InternalCaller(const std::string& process) {
  auth::Caller c;
  c.role = v1::ROLE_SERVICE;
  c.subject = process;
  c.via = process;
  c.internal = true;
  return c;
}

std::string AssertionOf(const auth::Caller& caller) {
  return auth::SignCaller(caller, absl::Now(), absl::Hours(4));
}

void CallAs(grpc::ClientContext& ctx, const auth::Caller& caller) {
  ctx.AddMetadata(auth::kCallerMetadata, AssertionOf(caller));
}

std::shared_ptr<grpc::Channel> ChannelAs(const std::string& address, const auth::Caller& caller) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<SignAsFactory>(caller));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, grpc::InsecureChannelCredentials(), grpc::ChannelArguments(),
      std::move(interceptors));
}

}  // namespace crm::testing
