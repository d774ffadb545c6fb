#include "libs/rpc/handler.h"

#include "libs/api/validate.h"
#include "libs/rpc/caller_auth.h"

namespace crm::rpc {

grpc::ServerUnaryReactor* FinishAsCallerOn(
    Executor& executor, grpc::CallbackServerContext* ctx,
    absl::AnyInvocable<absl::Status(const auth::Caller& caller) &&> work) {
  auto caller = CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  return FinishOn(executor, ctx,
                  [work = std::move(work), caller = *std::move(caller)]() mutable -> absl::Status {
                    return std::move(work)(caller);
                  });
}

grpc::ServerUnaryReactor* FinishRequestOn(
    Executor& executor, grpc::CallbackServerContext* ctx, absl::string_view request_id,
    absl::AnyInvocable<absl::Status(const std::string& scoped_request_id) &&> write) {
  auto caller = CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  return FinishOn(executor, ctx,
                  [write = std::move(write),
                   scoped = ScopedRequestId(*caller, request_id)]() mutable -> absl::Status {
                    return std::move(write)(scoped);
                  });
}

absl::StatusOr<PageRequest> PageOf(int32_t page_size, absl::string_view page_token,
                                   std::string scope, PageSizes sizes) {
  PageRequest page;
  CRM_ASSIGN_OR_RETURN(page.size,
                       api::PageSize("page_size", page_size, sizes.default_size, sizes.max_size));
  CRM_ASSIGN_OR_RETURN(page.after, api::DecodePageToken(scope, page_token));
  page.scope = std::move(scope);
  return page;
}

}  // namespace crm::rpc
