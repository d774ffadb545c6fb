#include "libs/rpc/unary.h"

#include "libs/rpc/status.h"
#include "libs/trace/trace.h"

namespace crm::rpc {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

grpc::ServerUnaryReactor* FinishOn(Executor& executor, grpc::CallbackServerContext* ctx,
                                   absl::AnyInvocable<absl::Status() &&> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // The work runs in the call's trace (the executor takes the current one along); this thread goes
  // back to gRPC, which must not find the call's trace still current when it runs something else.
  executor.Submit(
      [reactor, work = std::move(work)]() mutable { reactor->Finish(ToGrpc(std::move(work)())); });
  trace::LeaveCallOnThisThread();
  return reactor;
}

}  // namespace crm::rpc
