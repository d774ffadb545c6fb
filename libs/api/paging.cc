#include "libs/api/paging.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/sharding/hash.h"

namespace crm::api {
namespace {

// Not a secret: tokens are opaque, not signed. It only catches tokens from another listing.
uint32_t ScopeTag(absl::string_view scope) { return static_cast<uint32_t>(sharding::StableHash64(scope)); }

}  // namespace

std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key) {
  const uint32_t tag = ScopeTag(scope);
  std::string raw;
  for (int i = 0; i < 4; ++i) raw.push_back(static_cast<char>((tag >> (8 * i)) & 0xFF));
  raw.append(resume_after_key.data(), resume_after_key.size());
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token) {
  if (token.empty()) return std::string();
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() < 4) {
    return Invalid("page_token", "is not a token this listing returned");
  }
  const uint32_t tag = ScopeTag(scope);
  for (int i = 0; i < 4; ++i) {
    if (static_cast<unsigned char>(raw[i]) != ((tag >> (8 * i)) & 0xFF)) {
      return Invalid("page_token", "belongs to another listing");
    }
  }
  return raw.substr(4);
}

}  // namespace crm::api
