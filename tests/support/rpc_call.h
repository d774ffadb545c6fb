// What every integration test does with a stub: one call with a generous deadline, and checking
// that an error has the expected code and names the expected field first. Catch2 tests only.
#pragma once

#include <chrono>
#include <string>

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

// The call failed with `code` and a message starting with `prefix` (usually the field at fault).
inline void RequireError(const grpc::Status& s, grpc::StatusCode code, const std::string& prefix) {
  INFO("message: " << s.error_message());
  REQUIRE(s.error_code() == code);
  CHECK(s.error_message().rfind(prefix, 0) == 0);
}

}  // namespace crm::testing
