// crm-echo-server: the trivial unary RPC on the same libs/rpc server (health, reflection, metrics
// interceptor) as every service. Its throughput is the ceiling any unary call can reach on the
// machine. With --answer_view_calls it also serves the methods the gateway's 360° view calls, each
// answering an empty message at once: a backend that costs only gRPC, for the system suite's
// fan-out floor (the view over five such servers beside one GetCustomer to one of them).
#include "absl/flags/flag.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "libs/rpc/service_main.h"
#include "libs/rpc/unary.h"
#include "tests/load/echo.grpc.pb.h"

ABSL_FLAG(bool, answer_view_calls, false,
          "also serve the 360° view's backend methods, each answering an empty message at once");

namespace {

namespace v1 = crm::v1;
using Ctx = grpc::CallbackServerContext;

grpc::ServerUnaryReactor* AtOnce(Ctx* ctx) { return crm::rpc::Finish(ctx, absl::OkStatus()); }

class ProfileAtOnce final : public v1::CustomerProfileService::CallbackService {
  grpc::ServerUnaryReactor* GetCustomer(Ctx* ctx, const v1::GetCustomerRequest*,
                                        v1::Customer*) override {
    return AtOnce(ctx);
  }
  grpc::ServerUnaryReactor* GetCustomerViewSections(Ctx* ctx,
                                                    const v1::GetCustomerViewSectionsRequest*,
                                                    v1::CustomerViewSections*) override {
    return AtOnce(ctx);
  }
};
class OrdersAtOnce final : public v1::OrderTrackingService::CallbackService {
  grpc::ServerUnaryReactor* GetPurchaseSummary(Ctx* ctx, const v1::GetPurchaseSummaryRequest*,
                                               v1::PurchaseSummary*) override {
    return AtOnce(ctx);
  }
};
class LoyaltyAtOnce final : public v1::LoyaltyService::CallbackService {
  grpc::ServerUnaryReactor* GetMembership(Ctx* ctx, const v1::GetMembershipRequest*,
                                          v1::Membership*) override {
    return AtOnce(ctx);
  }
};
class TicketsAtOnce final : public v1::ComplaintTicketService::CallbackService {
  grpc::ServerUnaryReactor* ListTickets(Ctx* ctx, const v1::ListTicketsRequest*,
                                        v1::ListTicketsResponse*) override {
    return AtOnce(ctx);
  }
};
class RecommendationAtOnce final : public v1::RecommendationService::CallbackService {
  grpc::ServerUnaryReactor* Recommend(Ctx* ctx, const v1::RecommendRequest*,
                                      v1::RecommendResponse*) override {
    return AtOnce(ctx);
  }
};

class EchoService final : public crm::bench::Echo::CallbackService, public crm::rpc::Component {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const crm::bench::EchoMessage* req,
                                 crm::bench::EchoMessage* resp) override {
    resp->set_payload(req->payload());
    return crm::rpc::Finish(ctx, absl::OkStatus());
  }
  void Register(crm::rpc::Server& server) override {
    server.AddService(this, "crm.bench.Echo");
    if (!absl::GetFlag(FLAGS_answer_view_calls)) return;
    server.AddService(&profile_, "crm.v1.CustomerProfileService");
    server.AddService(&orders_, "crm.v1.OrderTrackingService");
    server.AddService(&loyalty_, "crm.v1.LoyaltyService");
    server.AddService(&tickets_, "crm.v1.ComplaintTicketService");
    server.AddService(&recommendation_, "crm.v1.RecommendationService");
  }

 private:
  ProfileAtOnce profile_;
  OrdersAtOnce orders_;
  LoyaltyAtOnce loyalty_;
  TicketsAtOnce tickets_;
  RecommendationAtOnce recommendation_;
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
