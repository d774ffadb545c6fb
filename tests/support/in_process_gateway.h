// A gateway inside the test process: the Gateway and FrontDoor the binary wires, on free loopback
// ports (gRPC and HTTP, one event loop), HS256 tokens signed with `secret`, no rate limits and no
// access log, every data service at one address. Header-only, so that only tests that link
// crm_gateway pay for it. Owns everything it starts; the destructor drains and stops the front
// door.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/auth/jwt.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/backends.h"
#include "services/gateway/front_door.h"
#include "services/gateway/gateway.h"
#include "tests/support/require_ok.h"

namespace crm::testing {

struct InProcessGatewayOptions {
  std::string secret;
  // Where every data service is; by default nothing listens there (calls that get past the
  // gateway fail UNAVAILABLE).
  std::string backend_address = "127.0.0.1:1";
  // Adjusts the front door's options (listen addresses stay on free loopback ports).
  std::function<void(gateway::FrontDoorOptions&)> front_door;
};

class InProcessGateway {
 public:
  explicit InProcessGateway(InProcessGatewayOptions o) {
    backends_ = std::make_unique<rpc::Backends>(&metrics_);
    for (const auto& info : rpc::DataServices())
      backends_->SetAddress(info.name, o.backend_address);
    gateway::GatewayOptions g;
    auth::VerifierOptions v;
    v.hmac_secret = o.secret;
    g.verifier = std::move(*auth::Verifier::Create(v));
    g.customer_rps = g.agent_rps = g.admin_rps = g.service_rps = g.ip_rps = 0;
    g.access_log = false;
    gateway_ = std::make_unique<gateway::Gateway>(std::move(g), backends_.get(), &metrics_);
    gateway::FrontDoorOptions f;
    f.threads = 1;
    if (o.front_door) o.front_door(f);
    f.grpc_listen = "127.0.0.1:0";
    f.http_listen = "127.0.0.1:0";
    front_ = std::make_unique<gateway::FrontDoor>(gateway_.get(), std::move(f));
    REQUIRE_OK(front_->Start());
  }
  ~InProcessGateway() {
    front_->Shutdown(absl::Seconds(1));
    front_->Stop();
  }
  InProcessGateway(const InProcessGateway&) = delete;
  InProcessGateway& operator=(const InProcessGateway&) = delete;

  int grpc_port() const { return front_->grpc_port(); }
  int http_port() const { return front_->http_port(); }
  // A plain gRPC channel to the front door's gRPC port, as a frontend would open it.
  std::shared_ptr<grpc::Channel> NewChannel() const {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port()),
                               grpc::InsecureChannelCredentials());
  }

 private:
  metrics::Metrics metrics_;
  std::unique_ptr<rpc::Backends> backends_;
  std::unique_ptr<gateway::Gateway> gateway_;
  std::unique_ptr<gateway::FrontDoor> front_;
};

}  // namespace crm::testing
