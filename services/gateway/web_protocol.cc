#include "services/gateway/web_protocol.h"

#include <zlib.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/log/log.h"

namespace crm::gateway {

absl::StatusOr<std::vector<Frame>> ParseFrames(absl::string_view body, size_t max_payload_bytes) {
  std::vector<Frame> frames;
  while (!body.empty()) {
    if (body.size() < 5) return absl::InvalidArgumentError("body: truncated frame header");
    const auto* p = reinterpret_cast<const unsigned char*>(body.data());
    const uint32_t length =
        (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | uint32_t{p[4]};
    if (length > max_payload_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "body: message of ", length, " bytes exceeds the limit of ", max_payload_bytes));
    }
    if (body.size() - 5 < length) return absl::InvalidArgumentError("body: truncated frame");
    if (p[0] & kFrameCompressed)
      return absl::InvalidArgumentError("body: compressed frames are not accepted");
    frames.push_back(Frame{p[0], std::string(body.substr(5, length))});
    body.remove_prefix(5 + length);
  }
  return frames;
}

std::string EncodeFrame(uint8_t flags, absl::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  const uint32_t n = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<std::string> DecodeBase64Chunks(absl::string_view body) {
  std::string out;
  while (!body.empty()) {
    // A chunk ends after its padding; unpadded input is one last chunk.
    size_t end = body.find('=');
    if (end == absl::string_view::npos) {
      end = body.size();
    } else {
      while (end < body.size() && body[end] == '=') ++end;
    }
    std::string decoded;
    if (!absl::Base64Unescape(body.substr(0, end), &decoded)) {
      return absl::InvalidArgumentError("body: not valid base64 (grpc-web-text)");
    }
    out += decoded;
    body.remove_prefix(end);
  }
  return out;
}

std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (value.back()) {
    case 'H': return absl::Hours(n);
    case 'M': return absl::Minutes(n);
    case 'S': return absl::Seconds(n);
    case 'm': return absl::Milliseconds(n);
    case 'u': return absl::Microseconds(n);
    case 'n': return absl::Nanoseconds(n);
    default: return std::nullopt;
  }
}

std::optional<absl::Duration> ParseConnectTimeoutMs(absl::string_view value) {
  if (value.empty() || value.size() > 10) return std::nullopt;
  int64_t ms = 0;
  for (char c : value) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    ms = ms * 10 + (c - '0');
  }
  return absl::Milliseconds(ms);
}

absl::string_view ConnectCodeName(int code) {
  static constexpr absl::string_view kNames[] = {"ok",
                                                 "canceled",
                                                 "unknown",
                                                 "invalid_argument",
                                                 "deadline_exceeded",
                                                 "not_found",
                                                 "already_exists",
                                                 "permission_denied",
                                                 "resource_exhausted",
                                                 "failed_precondition",
                                                 "aborted",
                                                 "out_of_range",
                                                 "unimplemented",
                                                 "internal",
                                                 "unavailable",
                                                 "data_loss",
                                                 "unauthenticated"};
  return code >= 0 && code <= 16 ? kNames[code] : "unknown";
}

int ConnectHttpStatus(int code) {
  switch (code) {
    case 0: return 200;
    case 1: return 499;
    case 3:
    case 9:
    case 11: return 400;
    case 4: return 504;
    case 5: return 404;
    case 6:
    case 10: return 409;
    case 7: return 403;
    case 8: return 429;
    case 12: return 501;
    case 14: return 503;
    case 16: return 401;
    default: return 500;
  }
}

std::string ConnectErrorJson(int code, absl::string_view message,
                             const std::vector<ErrorDetail>& details) {
  std::string out = absl::StrCat("{\"code\":\"", ConnectCodeName(code), "\"");
  if (!message.empty()) {
    out += ",\"message\":";
    log::AppendJsonString(out, message);
  }
  if (!details.empty()) {
    out += ",\"details\":[";
    for (size_t i = 0; i < details.size(); ++i) {
      if (i > 0) out += ",";
      out += "{\"type\":";
      log::AppendJsonString(out, details[i].type);
      // Connect's detail values are standard base64 with the padding left off.
      absl::StrAppend(&out, ",\"value\":\"", EncodeBinaryHeader(details[i].value), "\"");
      if (!details[i].debug_json.empty())
        absl::StrAppend(&out, ",\"debug\":", details[i].debug_json);
      out += "}";
    }
    out += "]";
  }
  out += "}";
  return out;
}

std::string ConnectEndStreamJson(int code, absl::string_view message,
                                 const std::vector<ErrorDetail>& details) {
  if (code == 0) return "{}";
  return absl::StrCat("{\"error\":", ConnectErrorJson(code, message, details), "}");
}

std::string PercentEncode(absl::string_view message) {
  std::string out;
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string EncodeBinaryHeader(absl::string_view bytes) {
  std::string out = absl::Base64Escape(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::optional<std::string> DecodeBinaryHeader(absl::string_view value) {
  std::string out;
  if (!absl::Base64Unescape(absl::StripAsciiWhitespace(value), &out)) return std::nullopt;
  return out;
}

std::string GrpcWebTrailers(int code, absl::string_view message, absl::string_view status_details) {
  std::string out = absl::StrCat("grpc-status: ", code, "\r\n");
  if (!message.empty()) absl::StrAppend(&out, "grpc-message: ", PercentEncode(message), "\r\n");
  if (!status_details.empty()) {
    absl::StrAppend(&out, "grpc-status-details-bin: ", EncodeBinaryHeader(status_details), "\r\n");
  }
  return out;
}

std::optional<Wire> WireOf(absl::string_view media_type) {
  if (media_type == "application/grpc-web" || media_type == "application/grpc-web+proto")
    return Wire::kGrpcWeb;
  if (media_type == "application/grpc-web-text" || media_type == "application/grpc-web-text+proto")
    return Wire::kGrpcWebText;
  if (media_type == "application/json") return Wire::kConnectJson;
  if (media_type == "application/proto") return Wire::kConnectProto;
  if (media_type == "application/connect+json") return Wire::kConnectStreamJson;
  if (media_type == "application/connect+proto") return Wire::kConnectStreamProto;
  return std::nullopt;
}

absl::StatusOr<std::string> RequestPayload(Wire wire, std::string body, size_t max_payload_bytes) {
  if (wire == Wire::kGrpcWebText) {
    auto decoded = DecodeBase64Chunks(body);
    if (!decoded.ok()) return decoded.status();
    body = std::move(*decoded);
  }
  if (!IsEnveloped(wire)) {
    if (body.size() > max_payload_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("body: exceeds the limit of ", max_payload_bytes, " bytes"));
    }
    return body;
  }
  auto frames = ParseFrames(body, max_payload_bytes);
  if (!frames.ok()) return frames.status();
  if (frames->size() != 1 || (*frames)[0].flags != 0) {
    return absl::InvalidArgumentError("body: expected exactly one request message");
  }
  return std::move((*frames)[0].payload);
}

absl::StatusOr<std::string> Gunzip(absl::string_view data, size_t max_bytes) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
    return absl::InternalError("gzip: cannot start inflating");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      return absl::InvalidArgumentError("body: not valid gzip");
    }
    out.append(buf, sizeof(buf) - z.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&z);
      return absl::ResourceExhaustedError(
          absl::StrCat("body: unpacks to more than the limit of ", max_bytes, " bytes"));
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      return absl::InvalidArgumentError("body: truncated gzip");
    }
  }
  inflateEnd(&z);
  return out;
}

std::string Gzip(absl::string_view data) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

bool AcceptsGzip(absl::string_view accept_encoding) {
  for (absl::string_view token : absl::StrSplit(accept_encoding, ',')) {
    token = absl::StripAsciiWhitespace(token.substr(0, token.find(';')));
    if (absl::EqualsIgnoreCase(token, "gzip")) return true;
  }
  return false;
}

std::string UrlDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() &&
               absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      int v = 0;
      (void)absl::SimpleHexAtoi(s.substr(i + 1, 2), &v);
      out.push_back(static_cast<char>(v));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<std::string> QueryParam(absl::string_view query, absl::string_view key) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    const size_t eq = pair.find('=');
    if (UrlDecode(pair.substr(0, eq)) == key)
      return eq == absl::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-') return false;
  }
  return true;
}

std::string MediaType(absl::string_view content_type) {
  const size_t semi = content_type.find(';');
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(content_type.substr(0, semi)));
}

std::string PercentDecode(absl::string_view message) {
  std::string out;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '%' && i + 2 < message.size()) {
      int v = 0;
      if (absl::SimpleHexAtoi(message.substr(i + 1, 2), &v)) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(message[i]);
  }
  return out;
}

int GrpcCodeOf(const HeaderList& trailers) {
  for (const auto& [k, v] : trailers) {
    int code = 2;
    if (k == "grpc-status" && absl::SimpleAtoi(v, &code)) return code;
  }
  return 2;
}

std::string GrpcMessageOf(const HeaderList& trailers) {
  for (const auto& [k, v] : trailers) {
    if (k == "grpc-message") return PercentDecode(v);
  }
  return "";
}

std::string GrpcStatusDetailsOf(const HeaderList& trailers) {
  for (const auto& [k, v] : trailers) {
    if (k != "grpc-status-details-bin") continue;
    if (auto bytes = DecodeBinaryHeader(v)) return *std::move(bytes);
  }
  return "";
}

std::string FormatGrpcTimeout(absl::Duration d) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)), "m");
}

}  // namespace crm::gateway
