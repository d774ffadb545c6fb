// Steps that many unary handlers share, beside unary.h's Finish and FinishOn:
//
//   return rpc::FinishWith(ctx, store_->Get(req->customer_id()), resp);  // a read's answer
//   return rpc::FinishRequestOn(*writes_, ctx, req->request_id(),         // a retryable write
//                               [=](const std::string& id) { return Open(*req, id, resp); });
//   return Finish(ctx, rpc::ReadCustomerPage(*req, "orders", {20, 100},  // a customer's listing
//                                            std::bind_front(&Store::ListOrders, store_),
//                                            resp->mutable_orders(),
//                                            resp->mutable_next_page_token()));
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/auth/caller.h"
#include "libs/base/status_macros.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/unary.h"

namespace crm::rpc {

// Finishes the call with `value` moved into *resp, or with its error.
template <typename T, typename Response>
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* ctx, absl::StatusOr<T> value,
                                     Response* resp) {
  if (value.ok()) *resp = *std::move(value);
  return Finish(ctx, value.status());
}

// Finishes the call with `entries` moved into `out` (a repeated field of the response), or with
// their error.
template <typename T>
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* ctx,
                                     absl::StatusOr<std::vector<T>> entries,
                                     google::protobuf::RepeatedPtrField<T>* out) {
  if (entries.ok()) {
    for (T& e : *entries) *out->Add() = std::move(e);
  }
  return Finish(ctx, entries.status());
}

// Runs `work` on `executor` for the call's caller, as FinishOn runs its work: who acts comes from
// the call (caller_auth.h), never from the body. A call whose caller cannot be told finishes at
// once with that error.
grpc::ServerUnaryReactor* FinishAsCallerOn(
    Executor& executor, grpc::CallbackServerContext* ctx,
    absl::AnyInvocable<absl::Status(const auth::Caller& caller) &&> work);

// A write a client may retry under its request id: the id is scoped to the call's caller
// (ScopedRequestId, caller_auth.h), so another caller's same id is another request, and `write`
// runs with it on `executor` as FinishOn runs its work. A call whose caller cannot be told finishes
// at once with that error.
grpc::ServerUnaryReactor* FinishRequestOn(
    Executor& executor, grpc::CallbackServerContext* ctx, absl::string_view request_id,
    absl::AnyInvocable<absl::Status(const std::string& scoped_request_id) &&> write);

// A listing's page sizes: what a request that names none gets, and the most it may ask for.
struct PageSizes {
  int default_size;
  int max_size;
};

// One page of a listing as the request asks for it (AIP-158).
struct PageRequest {
  // What the listing's page tokens belong to (libs/api/paging.h): everything that bounds it.
  std::string scope;
  int size = 0;
  // The store key the page resumes after; empty: the first page.
  std::string after;
};

// The request's page_size checked against `sizes` (INVALID_ARGUMENT on page_size), then its
// page_token verified for `scope` (INVALID_ARGUMENT on page_token).
absl::StatusOr<PageRequest> PageOf(int32_t page_size, absl::string_view page_token,
                                   std::string scope, PageSizes sizes);

// Reads `page` with `list(after, size, &entries, &last_key, &more)`, the shape of a store's
// listing: the entries go to `out` and, when more follow, the next page's token to
// *next_page_token.
template <typename T, typename List>
absl::Status ReadPage(const PageRequest& page, List&& list,
                      google::protobuf::RepeatedPtrField<T>* out, std::string* next_page_token) {
  std::vector<T> entries;
  std::string last_key;
  bool more = false;
  CRM_RETURN_IF_ERROR(std::forward<List>(list)(page.after, page.size, &entries, &last_key, &more));
  for (T& e : entries) *out->Add() = std::move(e);
  if (more) *next_page_token = api::EncodePageToken(page.scope, last_key);
  return absl::OkStatus();
}

// The page a customer's listing (their orders, tickets, ...) asks for: customer_id required, then
// PageOf with the listing's tokens scoped to "<listing>/<customer_id>".
template <typename Request>
absl::StatusOr<PageRequest> CustomerPageOf(const Request& req, absl::string_view listing,
                                           PageSizes sizes) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  return PageOf(req.page_size(), req.page_token(), absl::StrCat(listing, "/", req.customer_id()),
                sizes);
}

// A customer's listing read whole: CustomerPageOf, then ReadPage with
// `list(customer_id, after, size, &entries, &last_key, &more)`.
template <typename Request, typename T, typename List>
absl::Status ReadCustomerPage(const Request& req, absl::string_view listing, PageSizes sizes,
                              List&& list, google::protobuf::RepeatedPtrField<T>* out,
                              std::string* next_page_token) {
  CRM_ASSIGN_OR_RETURN(const PageRequest page, CustomerPageOf(req, listing, sizes));
  return ReadPage(page, std::bind_front(std::forward<List>(list), req.customer_id()), out,
                  next_page_token);
}

}  // namespace crm::rpc
