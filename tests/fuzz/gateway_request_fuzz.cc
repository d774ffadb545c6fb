// libFuzzer target: what the gateway's HTTP/1.1 front end does with a request body it did not
// expect. The first byte picks the wire format (gRPC-Web binary/text, Connect unary/stream,
// JSON/binary); the rest is the body: unwrapped (base64, frames), parsed as a real request type
// (JSON or binary, with nested messages, enums, a FieldMask and Timestamps), and the answer path
// encoded again. Header parsers, the gzip inflater (capped: a gzip bomb must stop at the cap) and
// the Connect GET query decoding get the same bytes. Any crash, leak or undefined behaviour is a
// finding. (HTTP/1.1 and HTTP/2 framing are http-parser's and nghttp2's, both fuzzed continuously
// upstream in OSS-Fuzz.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "crm/v1/customer_profile.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/gateway/web_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm::gateway;
  if (size < 1) return 0;
  const Wire wire = static_cast<Wire>(data[0] % 6);
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto payload = RequestPayload(wire, body, 1 << 16);
  if (payload.ok()) {
    crm::v1::UpdateCustomerRequest request;
    bool parsed = IsJson(wire)
                      ? google::protobuf::util::JsonStringToMessage(*payload, &request).ok()
                      : request.ParseFromString(*payload);
    if (parsed) {
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(request, &json);
      (void)EncodeFrame(0, json);
    }
  }
  if (auto inflated = Gunzip(body, 1 << 16); inflated.ok()) {
    if (inflated->size() > (1 << 16))
      __builtin_trap();  // the cap is the defence against gzip bombs
    auto again = Gunzip(Gzip(*inflated), 1 << 16);
    if (!again.ok() || *again != *inflated) __builtin_trap();  // gzip round trip
  }
  (void)AcceptsGzip(body);
  (void)UrlDecode(body);
  if (auto message = QueryParam(body, "message"); message.has_value()) (void)UrlDecode(*message);
  (void)ParseGrpcTimeout(body);
  (void)ParseConnectTimeoutMs(body);
  (void)WireOf(MediaType(body));
  (void)IsValidRequestId(body);
  (void)ConnectErrorJson(3, body);
  (void)ConnectEndStreamJson(13, body);
  (void)GrpcWebTrailers(3, body);
  return 0;
}
