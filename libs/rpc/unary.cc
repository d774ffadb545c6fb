#include "libs/rpc/unary.h"

#include "libs/rpc/status.h"

namespace crm::rpc {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

grpc::ServerUnaryReactor* FinishOn(Executor& executor, grpc::CallbackServerContext* ctx,
                                   absl::AnyInvocable<absl::Status() &&> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  executor.Submit(
      [reactor, work = std::move(work)]() mutable { reactor->Finish(ToGrpc(std::move(work)())); });
  return reactor;
}

}  // namespace crm::rpc
