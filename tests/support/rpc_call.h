// What every integration test does with a stub: one call with a generous deadline, a call that must
// succeed, one whose answer does not matter, and checking that an error has the expected code and
// names the expected field first. Catch2 tests only.
#pragma once

#include <chrono>
#include <string>
#include <type_traits>

#include "catch2/catch.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace crm::testing {

template <typename StubT, typename Req, typename Resp>
grpc::Status Call(StubT* stub,
                  grpc::Status (StubT::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return (stub->*method)(&ctx, req, resp);
}

// The answer to a call that must succeed: the test stops there, showing the status, if it does not.
template <typename StubT, typename Req, typename Resp>
Resp CallOk(StubT* stub, grpc::Status (StubT::*method)(grpc::ClientContext*, const Req&, Resp*),
            const std::type_identity_t<Req>& req) {
  Resp resp;
  const grpc::Status s = Call(stub, method, req, &resp);
  INFO("status " << s.error_code() << ": " << s.error_message());
  REQUIRE(s.ok());
  return resp;
}

// How a call ended, for calls whose answer does not matter (those meant to be refused).
template <typename StubT, typename Req, typename Resp>
grpc::Status StatusOf(StubT* stub,
                      grpc::Status (StubT::*method)(grpc::ClientContext*, const Req&, Resp*),
                      const std::type_identity_t<Req>& req) {
  Resp ignored;
  return Call(stub, method, req, &ignored);
}

// The call failed with `code` and a message starting with `prefix` (usually the field at fault).
inline void RequireError(const grpc::Status& s, grpc::StatusCode code, const std::string& prefix) {
  INFO("message: " << s.error_message());
  REQUIRE(s.error_code() == code);
  CHECK(s.error_message().rfind(prefix, 0) == 0);
}

}  // namespace crm::testing
