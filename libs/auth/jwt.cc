#include "libs/auth/jwt.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <cmath>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "libs/auth/internal_keys.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::auth {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct SigDeleter {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("authorization: ", why));
}

PkeyPtr ReadPem(absl::string_view pem, bool private_key) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  return PkeyPtr(private_key ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                             : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
}

bool IsP256(EVP_PKEY* key) {
  char group[64] = {0};
  size_t len = 0;
  return EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
         EVP_PKEY_get_group_name(key, group, sizeof(group), &len) == 1 &&
         (absl::string_view(group) == "prime256v1" || absl::string_view(group) == "P-256");
}

// JWS ES256 carries r||s (32 bytes each); OpenSSL wants a DER ECDSA-Sig-Value.
std::string RawToDer(absl::string_view raw) {
  std::unique_ptr<ECDSA_SIG, SigDeleter> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return "";
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), len);
  OPENSSL_free(der);
  return out;
}

std::string DerToRaw(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, SigDeleter> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return "";
  std::string out(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  return out;
}

bool DigestVerify(EVP_PKEY* key, absl::string_view signature, absl::string_view data) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1)
    return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1;
}

absl::StatusOr<Struct> ParseJsonObject(absl::string_view base64url, absl::string_view part) {
  std::string json;
  if (!absl::WebSafeBase64Unescape(base64url, &json))
    return Unauthenticated(absl::StrCat("token ", part, " is not base64url"));
  Struct object;
  if (!google::protobuf::util::JsonStringToMessage(json, &object).ok()) {
    return Unauthenticated(absl::StrCat("token ", part, " is not a JSON object"));
  }
  return object;
}

const Value* Field(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

}  // namespace

v1::Role ParseRole(absl::string_view name) {
  if (name == "customer") return v1::ROLE_CUSTOMER;
  if (name == "agent") return v1::ROLE_AGENT;
  if (name == "admin") return v1::ROLE_ADMIN;
  if (name == "service") return v1::ROLE_SERVICE;
  return v1::ROLE_UNSPECIFIED;
}

absl::string_view RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_CUSTOMER: return "customer";
    case v1::ROLE_AGENT: return "agent";
    case v1::ROLE_ADMIN: return "admin";
    case v1::ROLE_SERVICE: return "service";
    default: return "none";
  }
}

struct Verifier::Key {
  std::string kid;  // empty: the only key, for tokens without "kid"
  std::string alg;  // the one algorithm this key verifies
  std::string secret;
  PkeyPtr public_key;
};

struct Verifier::KeySet {
  std::vector<Key> keys;
  // Entries of a JWK Set that cannot verify a token here (PS256, P-384, a short RSA key, ...):
  // skipped, with why.
  std::vector<std::string> skipped;
};

namespace {

std::string Base64UrlField(const Struct& jwk, const std::string& name) {
  const Value* v = Field(jwk, name);
  std::string out;
  if (v == nullptr || !absl::WebSafeBase64Unescape(v->string_value(), &out)) return "";
  return out;
}

// An RSA or P-256 public key from a JWK's components (OpenSSL 3's parameter builder).
PkeyPtr PublicKeyFromJwk(const Struct& jwk, const std::string& kty) {
  std::unique_ptr<OSSL_PARAM_BLD, void (*)(OSSL_PARAM_BLD*)> bld(OSSL_PARAM_BLD_new(),
                                                                 OSSL_PARAM_BLD_free);
  if (!bld) return nullptr;
  std::unique_ptr<BIGNUM, void (*)(BIGNUM*)> n(nullptr, BN_free), e(nullptr, BN_free);
  std::string point;
  const char* type = nullptr;
  if (kty == "RSA") {
    const std::string nb = Base64UrlField(jwk, "n"), eb = Base64UrlField(jwk, "e");
    if (nb.empty() || eb.empty()) return nullptr;
    n.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()),
                      static_cast<int>(nb.size()), nullptr));
    e.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()),
                      static_cast<int>(eb.size()), nullptr));
    if (!n || !e || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
      return nullptr;
    }
    type = "RSA";
  } else {
    const Value* crv = Field(jwk, "crv");
    const std::string x = Base64UrlField(jwk, "x"), y = Base64UrlField(jwk, "y");
    if (crv == nullptr || crv->string_value() != "P-256" || x.size() != 32 || y.size() != 32)
      return nullptr;
    point = absl::StrCat(std::string(1, '\x04'), x, y);  // uncompressed point
    if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
      return nullptr;
    }
    type = "EC";
  }
  std::unique_ptr<OSSL_PARAM, void (*)(OSSL_PARAM*)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                            OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, void (*)(EVP_PKEY_CTX*)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return nullptr;
  }
  return PkeyPtr(key);
}

// The algorithm a public key verifies, or an error naming why the key is refused.
absl::StatusOr<std::string> AlgorithmOf(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(key) < 2048)
      return absl::InvalidArgumentError("RSA keys need 2048 bits or more");
    return std::string("RS256");
  }
  if (IsP256(key)) return std::string("ES256");
  return absl::InvalidArgumentError("the public key is neither RSA nor EC P-256");
}

absl::StatusOr<Verifier::Key> SecretKey(std::string secret, std::string kid) {
  // RFC 7518 3.2: the HS256 key must be at least as long as the hash.
  if (secret.size() < 32)
    return absl::InvalidArgumentError("the HS256 secret must have at least 32 bytes");
  Verifier::Key k;
  k.kid = std::move(kid);
  k.alg = "HS256";
  k.secret = std::move(secret);
  return k;
}

// The signing key a JWK of type `type` holds; an error says why this verifier cannot use it.
absl::StatusOr<Verifier::Key> SigningKeyFromJwk(const Struct& jwk, const std::string& kid,
                                                const std::string& type) {
  if (type == "oct") return SecretKey(Base64UrlField(jwk, "k"), kid);
  if (type != "RSA" && type != "EC") {
    return absl::InvalidArgumentError(absl::StrCat("key type \"", type, "\" is not verified here"));
  }
  Verifier::Key key;
  key.kid = kid;
  key.public_key = PublicKeyFromJwk(jwk, type);
  if (!key.public_key) {
    return absl::InvalidArgumentError("not an RSA or EC P-256 public key this verifier can use");
  }
  auto a = AlgorithmOf(key.public_key.get());
  if (!a.ok()) return a.status();
  key.alg = *a;
  return key;
}

// A JWK Set (RFC 7517 section 5): every signing key in it, each with its kid.
absl::StatusOr<std::shared_ptr<const Verifier::KeySet>> ParseJwks(absl::string_view json) {
  Struct set;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &set).ok()) {
    return absl::InvalidArgumentError("jwks: not a JSON object");
  }
  const Value* keys = Field(set, "keys");
  if (keys == nullptr || !keys->has_list_value())
    return absl::InvalidArgumentError("jwks: no \"keys\" array");
  auto out = std::make_shared<Verifier::KeySet>();
  int index = 0;
  for (const Value& v : keys->list_value().values()) {
    const std::string where = absl::StrCat("jwks: keys[", index++, "]");
    if (!v.has_struct_value())
      return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
    const Struct& jwk = v.struct_value();
    const Value* use = Field(jwk, "use");
    if (use != nullptr && use->string_value() != "sig")
      continue;  // an encryption key: not ours to verify with
    const Value* kid = Field(jwk, "kid");
    const Value* kty = Field(jwk, "kty");
    const Value* alg = Field(jwk, "alg");
    if (kid == nullptr || kid->string_value().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " has no \"kid\""));
    }
    const std::string type = kty == nullptr ? "" : kty->string_value();
    // A key this verifier cannot use is skipped, not fatal: an identity provider publishes keys for
    // other algorithms too (PS256, P-384), and one of them must not stop rotation of the others.
    auto skip = [&](absl::string_view why) {
      out->skipped.push_back(absl::StrCat(where, " (kid ", kid->string_value(), "): ", why));
    };
    auto usable = SigningKeyFromJwk(jwk, kid->string_value(), type);
    if (!usable.ok()) {
      skip(usable.status().message());
      continue;
    }
    Verifier::Key key = *std::move(usable);
    if (alg != nullptr && !alg->string_value().empty() && alg->string_value() != key.alg) {
      skip(absl::StrCat("\"alg\" ", alg->string_value(), " is not ", key.alg,
                        ", the only algorithm verified with a ", type, " key here"));
      continue;
    }
    out->keys.push_back(std::move(key));
  }
  if (out->keys.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("jwks: no signing key this verifier can use (RS256 with 2048+ bits, ",
                     "ES256 on P-256, HS256)",
                     out->skipped.empty() ? "" : absl::StrCat("; ", out->skipped.front())));
  }
  return std::shared_ptr<const Verifier::KeySet>(std::move(out));
}

// Seconds since the epoch as a JWT NumericDate: a number between 1970 and the year 9999 (RFC 7519
// allows fractions; they are dropped). Anything else (a string, 1e300, a negative) is refused, not
// wrapped.
absl::StatusOr<absl::Time> NumericDate(const Value& v, const std::string& name) {
  constexpr double kYear9999 = 253402300799.0;
  if (v.kind_case() != Value::kNumberValue || !std::isfinite(v.number_value()) ||
      v.number_value() < 0 || v.number_value() > kYear9999) {
    return Unauthenticated(
        absl::StrCat("token claim \"", name, "\" is not a time in seconds since 1970"));
  }
  return absl::FromUnixSeconds(static_cast<int64_t>(v.number_value()));
}

}  // namespace

Verifier::Verifier(VerifierOptions options, std::shared_ptr<const KeySet> keys)
    : options_(std::move(options)), keys_(std::move(keys)) {}
Verifier::~Verifier() = default;

absl::StatusOr<std::unique_ptr<Verifier>> Verifier::Create(VerifierOptions options) {
  const int sources = !options.hmac_secret.empty() + !options.public_key_pem.empty() +
                      !options.jwks_json.empty() + !options.jwks_file.empty();
  if (sources != 1) {
    return absl::InvalidArgumentError(
        "jwt: configure exactly one of an HMAC secret, a public key or a JWK Set");
  }
  std::shared_ptr<const KeySet> keys;
  if (!options.hmac_secret.empty()) {
    auto k = SecretKey(options.hmac_secret, "");
    if (!k.ok()) return absl::InvalidArgumentError(absl::StrCat("jwt: ", k.status().message()));
    auto set = std::make_shared<KeySet>();
    set->keys.push_back(*std::move(k));
    keys = std::move(set);
  } else if (!options.public_key_pem.empty()) {
    Key k;
    k.public_key = ReadPem(options.public_key_pem, /*private_key=*/false);
    if (!k.public_key)
      return absl::InvalidArgumentError("jwt: the public key is not a PEM public key");
    auto alg = AlgorithmOf(k.public_key.get());
    if (!alg.ok()) return absl::InvalidArgumentError(absl::StrCat("jwt: ", alg.status().message()));
    k.alg = *alg;
    auto set = std::make_shared<KeySet>();
    set->keys.push_back(std::move(k));
    keys = std::move(set);
  } else {
    std::string json = options.jwks_json;
    if (!options.jwks_file.empty()) {
      auto contents = text::ReadFile(options.jwks_file);
      if (!contents.ok())
        return absl::InvalidArgumentError(absl::StrCat("jwt: ", contents.status().message()));
      json = *std::move(contents);
    }
    auto set = ParseJwks(json);
    if (!set.ok()) return set.status();
    keys = *std::move(set);
  }
  auto verifier = std::unique_ptr<Verifier>(new Verifier(std::move(options), std::move(keys)));
  if (!verifier->options_.jwks_file.empty())
    (void)verifier->ReloadIfChanged();  // notes the file's stamp
  return verifier;
}

std::shared_ptr<const Verifier::KeySet> Verifier::keys() const {
  absl::MutexLock lock(&mu_);
  return keys_;
}

std::vector<std::string> Verifier::skipped_keys() const { return keys()->skipped; }

uint64_t Verifier::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

absl::StatusOr<bool> Verifier::ReloadIfChanged() {
  if (options_.jwks_file.empty()) return false;
  const absl::StatusOr<text::FileStamp> stamp = text::StampOf(options_.jwks_file);
  if (!stamp.ok()) {
    return absl::NotFoundError(
        absl::StrCat("jwks: ", stamp.status().message(), "; keeping the keys in use"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (*stamp == file_stamp_) return false;
    const bool first = file_stamp_ == text::FileStamp();
    file_stamp_ = *stamp;
    if (first) return false;  // Create just read it
  }
  auto contents = text::ReadFile(options_.jwks_file);
  if (!contents.ok()) return contents.status();
  auto set = ParseJwks(*contents);
  if (!set.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(options_.jwks_file, ": ", set.status().message(),
                                                   "; keeping the keys in use"));
  }
  absl::MutexLock lock(&mu_);
  keys_ = *std::move(set);
  ++generation_;
  return true;
}

namespace {

// The keys that may have signed a token: those under its kid (an identity provider may reuse one
// for a rotated key), or the only key there is.
absl::StatusOr<std::vector<const Verifier::Key*>> CandidateKeys(const Verifier::KeySet& set,
                                                                const Value* kid) {
  std::vector<const Verifier::Key*> candidates;
  if (kid != nullptr && !kid->string_value().empty() &&
      !(set.keys.size() == 1 && set.keys[0].kid.empty())) {
    for (const Verifier::Key& k : set.keys) {
      if (k.kid == kid->string_value()) candidates.push_back(&k);
    }
    if (candidates.empty()) return Unauthenticated("token key id (kid) is not in the key set");
  } else if (set.keys.size() == 1) {
    candidates.push_back(&set.keys[0]);
  } else {
    return Unauthenticated("token names no key id (kid), and several keys are configured");
  }
  return candidates;
}

// Whether one of `candidates` signed `signed_part` with `signature_b64`. The key decides the
// algorithm, never the token: "alg" must be the one the key is for.
absl::Status CheckSignature(const std::vector<const Verifier::Key*>& candidates, const Value* alg,
                            absl::string_view signed_part, absl::string_view signature_b64) {
  std::string signature;
  if (!absl::WebSafeBase64Unescape(signature_b64, &signature))
    return Unauthenticated("token signature is not base64url");
  bool fitting = false;
  for (const Verifier::Key* key : candidates) {
    if (alg == nullptr || alg->string_value() != key->alg) continue;
    fitting = true;
    bool valid = false;
    if (key->alg == "HS256") {
      const std::string expected = HmacSha256(key->secret, signed_part);
      valid = signature.size() == expected.size() &&
              CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) == 0;
    } else if (key->alg == "RS256") {
      valid = DigestVerify(key->public_key.get(), signature, signed_part);
    } else if (signature.size() == 64) {
      const std::string der = RawToDer(signature);
      valid = !der.empty() && DigestVerify(key->public_key.get(), der, signed_part);
    }
    if (valid) return absl::OkStatus();
  }
  if (!fitting)
    return Unauthenticated(absl::StrCat("token must be signed with ", candidates.front()->alg));
  return Unauthenticated("token signature does not verify");
}

// exp (required), nbf and iat against `now`, and the lifetime cap; answers exp.
absl::StatusOr<absl::Time> CheckTimes(const Struct& claims, absl::Time now,
                                      const VerifierOptions& options) {
  const Value* exp_claim = Field(claims, "exp");
  if (exp_claim == nullptr) return Unauthenticated("token has no \"exp\" claim");
  CRM_ASSIGN_OR_RETURN(const absl::Time exp, NumericDate(*exp_claim, "exp"));
  if (now >= exp + options.clock_skew) return Unauthenticated("token has expired");
  absl::Time issued = now;
  if (const Value* nbf = Field(claims, "nbf")) {
    CRM_ASSIGN_OR_RETURN(const absl::Time t, NumericDate(*nbf, "nbf"));
    if (now + options.clock_skew < t) return Unauthenticated("token is not valid yet (nbf)");
  }
  if (const Value* iat = Field(claims, "iat")) {
    CRM_ASSIGN_OR_RETURN(const absl::Time t, NumericDate(*iat, "iat"));
    if (now + options.clock_skew < t)
      return Unauthenticated("token was issued in the future (iat)");
    issued = t;
  }
  if (exp - issued > options.max_lifetime + options.clock_skew) {
    return Unauthenticated(absl::StrCat("token lives longer than the ",
                                        absl::FormatDuration(options.max_lifetime),
                                        " this gateway accepts (exp - iat)"));
  }
  return exp;
}

// iss and aud, when the gateway requires them.
absl::Status CheckIssuerAndAudience(const Struct& claims, const VerifierOptions& options) {
  if (!options.issuer.empty()) {
    const Value* iss = Field(claims, "iss");
    if (iss == nullptr || iss->string_value() != options.issuer)
      return Unauthenticated("token issuer is not accepted");
  }
  if (!options.audience.empty()) {
    const Value* aud = Field(claims, "aud");
    bool match = aud != nullptr && aud->string_value() == options.audience;
    if (aud != nullptr && aud->has_list_value()) {
      for (const Value& a : aud->list_value().values())
        match = match || a.string_value() == options.audience;
    }
    if (!match) return Unauthenticated("token audience is not this service");
  }
  return absl::OkStatus();
}

// Who the token speaks for: sub, role, and for a customer the customer id (sub unless given).
absl::StatusOr<Principal> PrincipalOf(const Struct& claims, absl::Time expires) {
  Principal p;
  const Value* sub = Field(claims, "sub");
  if (sub == nullptr || sub->string_value().empty())
    return Unauthenticated("token has no subject (sub)");
  p.subject = sub->string_value();
  const Value* role = Field(claims, "role");
  p.role = role == nullptr ? v1::ROLE_UNSPECIFIED : ParseRole(role->string_value());
  if (p.role == v1::ROLE_UNSPECIFIED) {
    return Unauthenticated("token role must be one of customer, agent, admin, service");
  }
  if (p.role == v1::ROLE_CUSTOMER) {
    const Value* id = Field(claims, "customer_id");
    p.customer_id = id != nullptr && !id->string_value().empty() ? id->string_value() : p.subject;
  }
  p.expires = expires;
  return p;
}

}  // namespace

absl::StatusOr<Principal> Verifier::Verify(absl::string_view token, absl::Time now) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Unauthenticated("token is not a JWT (header.payload.signature)");
  CRM_ASSIGN_OR_RETURN(const Struct header, ParseJsonObject(parts[0], "header"));
  if (Field(header, "crit") != nullptr)
    return Unauthenticated("token header has \"crit\" extensions, which are not supported");
  const std::shared_ptr<const KeySet> set = keys();
  CRM_ASSIGN_OR_RETURN(const auto candidates, CandidateKeys(*set, Field(header, "kid")));
  const absl::string_view signed_part(parts[0].data(), parts[0].size() + 1 + parts[1].size());
  CRM_RETURN_IF_ERROR(CheckSignature(candidates, Field(header, "alg"), signed_part, parts[2]));
  CRM_ASSIGN_OR_RETURN(const Struct claims, ParseJsonObject(parts[1], "payload"));
  CRM_ASSIGN_OR_RETURN(const absl::Time expires, CheckTimes(claims, now, options_));
  CRM_RETURN_IF_ERROR(CheckIssuerAndAudience(claims, options_));
  return PrincipalOf(claims, expires);
}

absl::StatusOr<std::string> Sign(absl::string_view alg, absl::string_view key,
                                 absl::string_view claims_json, absl::string_view kid) {
  std::string header = absl::StrCat("{\"alg\":\"", alg, "\",\"typ\":\"JWT\"");
  if (!kid.empty()) absl::StrAppend(&header, ",\"kid\":\"", kid, "\"");
  header += "}";
  const std::string signed_part =
      absl::StrCat(absl::WebSafeBase64Escape(header), ".", absl::WebSafeBase64Escape(claims_json));
  std::string signature;
  if (alg == "HS256") {
    signature = HmacSha256(key, signed_part);
  } else if (alg == "RS256" || alg == "ES256") {
    PkeyPtr pkey = ReadPem(key, /*private_key=*/true);
    if (!pkey) return absl::InvalidArgumentError("jwt: the signing key is not a PEM private key");
    MdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(signed_part.data()),
                       signed_part.size()) != 1) {
      return absl::InternalError("jwt: signing failed");
    }
    signature.resize(len);
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                       reinterpret_cast<const unsigned char*>(signed_part.data()),
                       signed_part.size()) != 1) {
      return absl::InternalError("jwt: signing failed");
    }
    signature.resize(len);
    if (alg == "ES256") signature = DerToRaw(signature);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("jwt: unsupported algorithm ", alg));
  }
  return absl::StrCat(signed_part, ".", absl::WebSafeBase64Escape(signature));
}

}  // namespace crm::auth
