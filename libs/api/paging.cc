#include "libs/api/paging.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/api/validate.h"
#include "libs/auth/internal_keys.h"

namespace crm::api {
namespace {

constexpr char kVersion = 1;
constexpr size_t kMacBytes =
    16;  // HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows it)
constexpr size_t kHeaderBytes = 1 + 8;

std::string MacOf(absl::string_view scope, absl::string_view body) {
  return auth::InternalKeys::Current()
      ->Mac(auth::kPageTokenPurpose, absl::StrCat(scope, std::string(1, '\0'), body))
      .substr(0, kMacBytes);
}

}  // namespace

std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key,
                            absl::Time now) {
  const uint64_t expires = static_cast<uint64_t>(absl::ToUnixSeconds(now + kPageTokenLifetime));
  std::string body(1, kVersion);
  for (int i = 7; i >= 0; --i) body.push_back(static_cast<char>((expires >> (8 * i)) & 0xFF));
  body.append(resume_after_key.data(), resume_after_key.size());
  return absl::WebSafeBase64Escape(absl::StrCat(body, MacOf(scope, body)));
}

std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key) {
  return EncodePageToken(scope, resume_after_key, absl::Now());
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token,
                                            absl::Time now) {
  if (token.empty()) return std::string();
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() < kHeaderBytes + kMacBytes ||
      raw[0] != kVersion) {
    return Invalid("page_token", "is not a token this listing returned");
  }
  const absl::string_view body = absl::string_view(raw).substr(0, raw.size() - kMacBytes);
  if (!auth::InternalKeys::Current()->Verify(
          auth::kPageTokenPurpose, absl::StrCat(scope, std::string(1, '\0'), body),
          absl::string_view(raw).substr(raw.size() - kMacBytes))) {
    return Invalid("page_token", "is not a token this listing returned");
  }
  uint64_t expires = 0;
  for (size_t i = 1; i < kHeaderBytes; ++i)
    expires = (expires << 8) | static_cast<unsigned char>(raw[i]);
  if (absl::FromUnixSeconds(static_cast<int64_t>(expires)) < now) {
    return Invalid("page_token", "has expired; start the listing again without a page token");
  }
  return std::string(body.substr(kHeaderBytes));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token) {
  return DecodePageToken(scope, token, absl::Now());
}

}  // namespace crm::api
