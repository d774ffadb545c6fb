#include "libs/auth/internal_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "libs/text/file.h"

namespace crm::auth {
namespace {

constexpr size_t kMinSecretBytes = 32;
// A MAC may be truncated (RFC 2104 section 5), never below 128 bits.
constexpr size_t kMinMacBytes = 16;

absl::Mutex g_mu;
std::shared_ptr<const InternalKeys>* g_current ABSL_GUARDED_BY(g_mu) = nullptr;

}  // namespace

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

absl::StatusOr<std::shared_ptr<const InternalKeys>> InternalKeys::FromText(absl::string_view text) {
  std::vector<std::string> secrets;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (line.size() < kMinSecretBytes) {
      return absl::InvalidArgumentError(absl::StrCat("internal key line ", line_number,
                                                     ": a secret needs at least ", kMinSecretBytes,
                                                     " bytes"));
    }
    secrets.emplace_back(line);
  }
  if (secrets.empty()) return absl::InvalidArgumentError("internal key: the file holds no secret");
  return std::shared_ptr<const InternalKeys>(new InternalKeys(std::move(secrets)));
}

absl::StatusOr<std::shared_ptr<const InternalKeys>> InternalKeys::FromFile(
    const std::string& path) {
  return text::ParseFile(path, "internal key", FromText);
}

std::shared_ptr<const InternalKeys> InternalKeys::Random() {
  unsigned char bytes[48];
  RAND_bytes(bytes, sizeof(bytes));
  std::string secret;
  for (unsigned char b : bytes) absl::StrAppend(&secret, absl::Hex(b, absl::kZeroPad2));
  return std::shared_ptr<const InternalKeys>(new InternalKeys({secret}));
}

InternalKeys::InternalKeys(std::vector<std::string> secrets) : secrets_(std::move(secrets)) {
  caller_keys_ = Derive(kCallerAssertionPurpose);
  page_token_keys_ = Derive(kPageTokenPurpose);
}

std::vector<std::string> InternalKeys::Derive(absl::string_view purpose) const {
  std::vector<std::string> keys;
  for (const std::string& secret : secrets_) keys.push_back(HmacSha256(secret, purpose));
  return keys;
}

const std::vector<std::string>* InternalKeys::Known(absl::string_view purpose) const {
  if (purpose == kCallerAssertionPurpose) return &caller_keys_;
  if (purpose == kPageTokenPurpose) return &page_token_keys_;
  return nullptr;
}

std::string InternalKeys::Mac(absl::string_view purpose, absl::string_view data) const {
  if (const auto* keys = Known(purpose)) return HmacSha256(keys->front(), data);
  return HmacSha256(Derive(purpose).front(), data);
}

bool InternalKeys::Verify(absl::string_view purpose, absl::string_view data,
                          absl::string_view mac) const {
  std::vector<std::string> derived;
  const std::vector<std::string>* keys = Known(purpose);
  if (keys == nullptr) keys = &(derived = Derive(purpose));
  bool ok = false;
  for (const std::string& key : *keys) {
    const std::string expected = HmacSha256(key, data);
    ok |= mac.size() >= kMinMacBytes && mac.size() <= expected.size() &&
          CRYPTO_memcmp(mac.data(), expected.data(), mac.size()) == 0;
  }
  return ok;
}

std::shared_ptr<const InternalKeys> InternalKeys::Current() {
  absl::MutexLock lock(&g_mu);
  if (g_current == nullptr) g_current = new std::shared_ptr<const InternalKeys>(Random());
  return *g_current;
}

void InternalKeys::Install(std::shared_ptr<const InternalKeys> keys) {
  absl::MutexLock lock(&g_mu);
  if (g_current == nullptr) g_current = new std::shared_ptr<const InternalKeys>();
  *g_current = std::move(keys);
}

}  // namespace crm::auth
