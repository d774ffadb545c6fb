#include "libs/auth/jwt.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cmath>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

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

std::string Hs256(absl::string_view secret, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
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
  std::unique_ptr<ECDSA_SIG, SigDeleter> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return "";
  std::string out(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  return out;
}

bool DigestVerify(EVP_PKEY* key, absl::string_view signature, absl::string_view data) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

absl::StatusOr<Struct> ParseJsonObject(absl::string_view base64url, absl::string_view part) {
  std::string json;
  if (!absl::WebSafeBase64Unescape(base64url, &json)) return Unauthenticated(absl::StrCat("token ", part, " is not base64url"));
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

absl::StatusOr<absl::Time> TimeClaim(const Struct& claims, const std::string& name, bool required) {
  const Value* v = Field(claims, name);
  if (v == nullptr) {
    if (required) return Unauthenticated(absl::StrCat("token has no \"", name, "\" claim"));
    return absl::InfinitePast();
  }
  if (v->kind_case() != Value::kNumberValue || !std::isfinite(v->number_value())) {
    return Unauthenticated(absl::StrCat("token claim \"", name, "\" is not a number of seconds"));
  }
  return absl::FromUnixSeconds(static_cast<int64_t>(v->number_value()));
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
  std::string alg;  // the one algorithm this key verifies
  std::string secret;
  PkeyPtr public_key;
};

Verifier::Verifier(VerifierOptions options, std::unique_ptr<Key> key)
    : options_(std::move(options)), key_(std::move(key)) {}
Verifier::~Verifier() = default;

absl::StatusOr<std::unique_ptr<Verifier>> Verifier::Create(VerifierOptions options) {
  auto key = std::make_unique<Key>();
  if (!options.hmac_secret.empty() == !options.public_key_pem.empty()) {
    return absl::InvalidArgumentError("jwt: configure exactly one of an HMAC secret or a public key");
  }
  if (!options.hmac_secret.empty()) {
    // RFC 7518 3.2: the HS256 key must be at least as long as the hash.
    if (options.hmac_secret.size() < 32) return absl::InvalidArgumentError("jwt: the HS256 secret must have at least 32 bytes");
    key->alg = "HS256";
    key->secret = options.hmac_secret;
  } else {
    key->public_key = ReadPem(options.public_key_pem, /*private_key=*/false);
    if (!key->public_key) return absl::InvalidArgumentError("jwt: the public key is not a PEM public key");
    if (EVP_PKEY_get_base_id(key->public_key.get()) == EVP_PKEY_RSA) {
      if (EVP_PKEY_get_bits(key->public_key.get()) < 2048) return absl::InvalidArgumentError("jwt: RSA keys need 2048 bits or more");
      key->alg = "RS256";
    } else if (IsP256(key->public_key.get())) {
      key->alg = "ES256";
    } else {
      return absl::InvalidArgumentError("jwt: the public key is neither RSA nor EC P-256");
    }
  }
  return std::unique_ptr<Verifier>(new Verifier(std::move(options), std::move(key)));
}

absl::StatusOr<Principal> Verifier::Verify(absl::string_view token, absl::Time now) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Unauthenticated("token is not a JWT (header.payload.signature)");
  auto header = ParseJsonObject(parts[0], "header");
  if (!header.ok()) return header.status();
  const Value* alg = Field(*header, "alg");
  if (alg == nullptr || alg->string_value() != key_->alg) {
    return Unauthenticated(absl::StrCat("token must be signed with ", key_->alg));
  }
  std::string signature;
  if (!absl::WebSafeBase64Unescape(parts[2], &signature)) return Unauthenticated("token signature is not base64url");
  const absl::string_view signed_part(parts[0].data(), parts[0].size() + 1 + parts[1].size());
  bool valid = false;
  if (key_->alg == "HS256") {
    const std::string expected = Hs256(key_->secret, signed_part);
    valid = signature.size() == expected.size() && CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) == 0;
  } else if (key_->alg == "RS256") {
    valid = DigestVerify(key_->public_key.get(), signature, signed_part);
  } else if (signature.size() == 64) {
    const std::string der = RawToDer(signature);
    valid = !der.empty() && DigestVerify(key_->public_key.get(), der, signed_part);
  }
  if (!valid) return Unauthenticated("token signature does not verify");

  auto claims = ParseJsonObject(parts[1], "payload");
  if (!claims.ok()) return claims.status();
  auto exp = TimeClaim(*claims, "exp", /*required=*/true);
  if (!exp.ok()) return exp.status();
  if (now >= *exp + options_.clock_skew) return Unauthenticated("token has expired");
  auto nbf = TimeClaim(*claims, "nbf", /*required=*/false);
  if (!nbf.ok()) return nbf.status();
  if (now + options_.clock_skew < *nbf) return Unauthenticated("token is not valid yet (nbf)");
  if (!options_.issuer.empty()) {
    const Value* iss = Field(*claims, "iss");
    if (iss == nullptr || iss->string_value() != options_.issuer) return Unauthenticated("token issuer is not accepted");
  }
  if (!options_.audience.empty()) {
    const Value* aud = Field(*claims, "aud");
    bool match = aud != nullptr && aud->string_value() == options_.audience;
    if (aud != nullptr && aud->has_list_value()) {
      for (const Value& a : aud->list_value().values()) match = match || a.string_value() == options_.audience;
    }
    if (!match) return Unauthenticated("token audience is not this service");
  }
  Principal p;
  const Value* sub = Field(*claims, "sub");
  if (sub == nullptr || sub->string_value().empty()) return Unauthenticated("token has no subject (sub)");
  p.subject = sub->string_value();
  const Value* role = Field(*claims, "role");
  p.role = role == nullptr ? v1::ROLE_UNSPECIFIED : ParseRole(role->string_value());
  if (p.role == v1::ROLE_UNSPECIFIED) {
    return Unauthenticated("token role must be one of customer, agent, admin, service");
  }
  if (p.role == v1::ROLE_CUSTOMER) {
    const Value* id = Field(*claims, "customer_id");
    p.customer_id = id != nullptr && !id->string_value().empty() ? id->string_value() : p.subject;
  }
  p.expires = *exp;
  return p;
}

absl::StatusOr<std::string> Sign(absl::string_view alg, absl::string_view key, absl::string_view claims_json) {
  const std::string signed_part = absl::StrCat(absl::WebSafeBase64Escape(absl::StrCat("{\"alg\":\"", alg, "\",\"typ\":\"JWT\"}")),
                                               ".", absl::WebSafeBase64Escape(claims_json));
  std::string signature;
  if (alg == "HS256") {
    signature = Hs256(key, signed_part);
  } else if (alg == "RS256" || alg == "ES256") {
    PkeyPtr pkey = ReadPem(key, /*private_key=*/true);
    if (!pkey) return absl::InvalidArgumentError("jwt: the signing key is not a PEM private key");
    MdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(signed_part.data()),
                       signed_part.size()) != 1) {
      return absl::InternalError("jwt: signing failed");
    }
    signature.resize(len);
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) != 1) {
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
