// The wire formats browsers speak to the gateway over HTTP/1.1, as pure functions (no I/O) so they
// can be tested and fuzzed on their own: - gRPC-Web (binary and base64 "text"): length-prefixed
// frames, trailers in a final frame with flag 0x80. - Connect: unary calls are a plain body (JSON
// or binary protobuf) with errors as a JSON object and an HTTP
//    status; streams use the same 5-byte envelopes, ending with an end-stream envelope (flag 0x02).
// Specs: github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md and connectrpc.com/docs/protocol.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace crm::gateway {

// A message frame: flag byte, 4-byte big-endian length, payload.
struct Frame {
  uint8_t flags = 0;
  std::string payload;
};
inline constexpr uint8_t kFrameCompressed = 0x01;
inline constexpr uint8_t kConnectEndStream = 0x02;
inline constexpr uint8_t kGrpcWebTrailers = 0x80;

// Every frame of `body`. INVALID_ARGUMENT on a truncated frame, a compressed frame (the gateway
// advertises no compression) or a payload over `max_payload_bytes`.
absl::StatusOr<std::vector<Frame>> ParseFrames(absl::string_view body, size_t max_payload_bytes);
std::string EncodeFrame(uint8_t flags, absl::string_view payload);

// gRPC-Web text bodies are base64, possibly several padded chunks one after another.
absl::StatusOr<std::string> DecodeBase64Chunks(absl::string_view body);

// "grpc-timeout: 250m" (value and unit H M S m u n). Nothing for a malformed value.
std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value);
// "Connect-Timeout-Ms: 250" (at most 10 digits).
std::optional<absl::Duration> ParseConnectTimeoutMs(absl::string_view value);

// gRPC status codes (numbers as on the wire) in Connect's vocabulary and HTTP statuses.
absl::string_view ConnectCodeName(int grpc_code);
int ConnectHttpStatus(int grpc_code);
// One of an error's google.rpc.Status details, as a Connect error lists it.
struct ErrorDetail {
  std::string type;        // the message's full name, e.g. "google.rpc.BadRequest"
  std::string value;       // the message's protobuf bytes
  std::string debug_json;  // the message as JSON, for people reading the error; may be empty
};
// The Connect error object: {"code":"not_found","message":"...","details":[{"type":
// "google.rpc.ErrorInfo","value":"<base64 of the bytes, unpadded>","debug":{...}}]}.
std::string ConnectErrorJson(int grpc_code, absl::string_view message,
                             const std::vector<ErrorDetail>& details = {});
// The body of a Connect stream's end-stream envelope: {} or {"error":{...}}.
std::string ConnectEndStreamJson(int grpc_code, absl::string_view message,
                                 const std::vector<ErrorDetail>& details = {});

// grpc-message is percent-encoded (PROTOCOL-HTTP2.md): bytes outside 0x20-0x7E and '%'.
std::string PercentEncode(absl::string_view message);
std::string PercentDecode(absl::string_view message);

// What a gRPC answer's trailers (name, value pairs) say: the code (UNKNOWN when they name none: a
// gRPC answer always names one), the message, and the google.rpc.Status bytes of
// grpc-status-details-bin (empty when none).
using HeaderList = std::vector<std::pair<std::string, std::string>>;
int GrpcCodeOf(const HeaderList& trailers);
std::string GrpcMessageOf(const HeaderList& trailers);
std::string GrpcStatusDetailsOf(const HeaderList& trailers);
// A grpc-timeout value for `d`, in whole milliseconds (at least 1).
std::string FormatGrpcTimeout(absl::Duration d);
// A binary ("-bin") header's value: base64 without padding, as gRPC implementations send it.
std::string EncodeBinaryHeader(absl::string_view bytes);
// The bytes of a binary header's value, padded or not; nothing when it is not base64.
std::optional<std::string> DecodeBinaryHeader(absl::string_view value);
// The payload of a gRPC-Web trailers frame; `status_details` (a serialized google.rpc.Status)
// travels as grpc-status-details-bin when not empty.
std::string GrpcWebTrailers(int grpc_code, absl::string_view message,
                            absl::string_view status_details = "");

// The body formats a browser may POST, by Content-Type.
enum class Wire {
  kGrpcWeb,
  kGrpcWebText,
  kConnectJson,
  kConnectProto,
  kConnectStreamJson,
  kConnectStreamProto
};
std::optional<Wire> WireOf(absl::string_view media_type);
inline bool IsGrpcWeb(Wire w) { return w == Wire::kGrpcWeb || w == Wire::kGrpcWebText; }
inline bool IsJson(Wire w) { return w == Wire::kConnectJson || w == Wire::kConnectStreamJson; }
// Messages travel in 5-byte envelopes (everything but Connect unary).
inline bool IsEnveloped(Wire w) { return w != Wire::kConnectJson && w != Wire::kConnectProto; }

// The request message inside a body: base64-decoded for gRPC-Web text, exactly one data frame for
// enveloped formats, the body itself for Connect unary. INVALID_ARGUMENT / RESOURCE_EXHAUSTED
// naming the problem otherwise.
absl::StatusOr<std::string> RequestPayload(Wire wire, std::string body, size_t max_payload_bytes);

// gzip (RFC 1952), the compression Connect and gRPC clients offer. Inflating stops with
// RESOURCE_EXHAUSTED past `max_bytes` (a small body must not unpack into gigabytes),
// INVALID_ARGUMENT on anything that is not gzip.
absl::StatusOr<std::string> Gunzip(absl::string_view data, size_t max_bytes);
std::string Gzip(absl::string_view data);
// Whether an Accept-Encoding-style list ("gzip, br", "identity") offers gzip.
bool AcceptsGzip(absl::string_view accept_encoding);

// Percent-decoding of a URL query component ('+' is a space), and the value of `key` in a query
// string.
std::string UrlDecode(absl::string_view s);
std::optional<std::string> QueryParam(absl::string_view query, absl::string_view key);

// A request id a client may choose: 1-128 characters of [A-Za-z0-9._:-].
bool IsValidRequestId(absl::string_view id);

// The media type without parameters, lower case: "Application/JSON; charset=utf-8" ->
// "application/json".
std::string MediaType(absl::string_view content_type);

}  // namespace crm::gateway
