// The gateway's wire formats and rate limiter, without sockets.
#include "absl/strings/escaping.h"
#include "catch2/catch.hpp"
#include "services/gateway/rate_limiter.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {
namespace {

TEST_CASE("gRPC-Web frames: round trip, truncation, size limit, compression refused") {
  const std::string two =
      EncodeFrame(0, "abc") + EncodeFrame(kGrpcWebTrailers, "grpc-status: 0\r\n");
  auto frames = ParseFrames(two, 1024);
  REQUIRE(frames.ok());
  REQUIRE(frames->size() == 2);
  CHECK((*frames)[0].payload == "abc");
  CHECK((*frames)[1].flags == kGrpcWebTrailers);
  CHECK(ParseFrames(two.substr(0, two.size() - 1), 1024).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseFrames(std::string("\0\0\0", 3), 1024).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseFrames(EncodeFrame(0, std::string(2000, 'x')), 1024).status().code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(ParseFrames(EncodeFrame(kFrameCompressed, "x"), 1024).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseFrames("", 1024)->empty());
}

TEST_CASE("gRPC-Web text: concatenated padded base64 chunks decode to the frames") {
  const std::string a = EncodeFrame(0, "hello"), b = EncodeFrame(0, "w");
  auto decoded = DecodeBase64Chunks(absl::Base64Escape(a) + absl::Base64Escape(b));
  REQUIRE(decoded.ok());
  CHECK(*decoded == a + b);
  CHECK_FALSE(DecodeBase64Chunks("!!!").ok());
}

TEST_CASE("request payload per wire format") {
  CHECK(*RequestPayload(Wire::kConnectJson, "{}", 10) == "{}");
  CHECK(RequestPayload(Wire::kConnectJson, std::string(11, ' '), 10).status().code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(*RequestPayload(Wire::kGrpcWeb, EncodeFrame(0, "m"), 10) == "m");
  CHECK(*RequestPayload(Wire::kGrpcWebText, absl::Base64Escape(EncodeFrame(0, "m")), 10) == "m");
  CHECK_FALSE(
      RequestPayload(Wire::kConnectStreamJson, EncodeFrame(0, "a") + EncodeFrame(0, "b"), 10).ok());
  CHECK_FALSE(RequestPayload(Wire::kGrpcWeb, "", 10).ok());
  CHECK(WireOf(MediaType("Application/Grpc-Web+proto; charset=x")) == Wire::kGrpcWeb);
  CHECK(WireOf(MediaType("application/json; charset=utf-8")) == Wire::kConnectJson);
  CHECK_FALSE(WireOf("text/plain").has_value());
}

TEST_CASE("timeouts, request ids, error shapes") {
  CHECK(*ParseGrpcTimeout("250m") == absl::Milliseconds(250));
  CHECK(*ParseGrpcTimeout("2S") == absl::Seconds(2));
  CHECK_FALSE(ParseGrpcTimeout("m").has_value());
  CHECK_FALSE(ParseGrpcTimeout("12x").has_value());
  CHECK_FALSE(ParseGrpcTimeout("123456789m").has_value());  // at most 8 digits
  CHECK(*ParseConnectTimeoutMs("1500") == absl::Milliseconds(1500));
  CHECK_FALSE(ParseConnectTimeoutMs("-1").has_value());
  CHECK(IsValidRequestId("req-1.a_b:c"));
  CHECK_FALSE(IsValidRequestId("a b"));
  CHECK_FALSE(IsValidRequestId(std::string(129, 'a')));
  CHECK(ConnectErrorJson(5, "order \"o1\" not found") ==
        R"({"code":"not_found","message":"order \"o1\" not found"})");
  CHECK(ConnectHttpStatus(16) == 401);
  CHECK(ConnectHttpStatus(8) == 429);
  CHECK(ConnectEndStreamJson(0, "") == "{}");
  CHECK(GrpcWebTrailers(3, "email: bad\n100%") ==
        "grpc-status: 3\r\ngrpc-message: email: bad%0A100%25\r\n");
}

TEST_CASE("rate limiter: burst, refill, separate keys, retry hint") {
  RateLimiter limiter;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const RateLimit limit{2, 4};
  for (int i = 0; i < 4; ++i) CHECK(limiter.Take("c1", limit, t0) == absl::ZeroDuration());
  const absl::Duration wait = limiter.Take("c1", limit, t0);
  CHECK(wait == absl::Milliseconds(500));
  CHECK(limiter.Take("c2", limit, t0) == absl::ZeroDuration());
  CHECK(limiter.Take("c1", limit, t0 + absl::Milliseconds(500)) == absl::ZeroDuration());
  CHECK(limiter.Take("c1", RateLimit{0, 0}, t0) == absl::ZeroDuration());  // unlimited
}

}  // namespace
}  // namespace crm::gateway
