// crm-echo-server: the trivial unary RPC on the same libs/rpc server (health, reflection, metrics
// interceptor) as every service. Its throughput is the ceiling any unary call can reach on the
// machine.
#include "libs/rpc/service_main.h"
#include "libs/rpc/unary.h"
#include "tests/load/echo.grpc.pb.h"

namespace {

class EchoService final : public crm::bench::Echo::CallbackService, public crm::rpc::Component {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const crm::bench::EchoMessage* req,
                                 crm::bench::EchoMessage* resp) override {
    resp->set_payload(req->payload());
    return crm::rpc::Finish(ctx, absl::OkStatus());
  }
  void Register(crm::rpc::Server& server) override { server.AddService(this, "crm.bench.Echo"); }
};

}  // namespace

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "echo";
  spec.usage = "crm-echo-server: benchmark baseline";
  spec.default_listen = "127.0.0.1:0";
  spec.default_metrics_listen = "off";
  spec.build =
      [](crm::rpc::ServiceContext&) -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    return std::unique_ptr<crm::rpc::Component>(new EchoService());
  };
  return crm::rpc::RunService(argc, argv, spec);
}
