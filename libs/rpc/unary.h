// Completing callback-API unary handlers. A handler validates, calls the domain and returns one of
// these:
//   return rpc::Finish(ctx, service_.GetCustomer(*request, response));      // short, non-blocking
//   return rpc::FinishOn(executor_, ctx, [=] { return service_.Register(...); });  // blocks
#pragma once

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "libs/rpc/executor.h"

namespace crm::rpc {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const absl::Status& status);

// Runs `work` on `executor` and finishes the call with its status. The request and response objects
// stay valid until then, so `work` may capture their pointers. `work` runs in the call's trace;
// return FinishOn's reactor at once (the handler's thread leaves the call's trace here).
grpc::ServerUnaryReactor* FinishOn(Executor& executor, grpc::CallbackServerContext* ctx,
                                   absl::AnyInvocable<absl::Status() &&> work);

}  // namespace crm::rpc
