// The gateway's token verifier against the attack cases a reviewer would try: key sets (JWK Set,
// RFC 7517) with kid selection and rotation without a restart, algorithm confusion, "crit", and
// time claims outside sane bounds (the nbf beyond int64 that once wrapped, strings, fractions,
// absurd lifetimes, iat in the future).
#include "libs/auth/jwt.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "tests/support/temp_dir.h"

namespace crm::auth {
namespace {

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-unit-secret";

struct KeyPair {
  std::string private_pem;
  std::string jwk;  // the public half as a JWK, without kid
};

std::string B64(const std::string& bytes) {
  std::string s = absl::WebSafeBase64Escape(bytes);
  return s;
}

std::string Bn(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out(BN_num_bytes(bn), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

KeyPair NewKey(const std::string& kty, int rsa_bits = 2048) {
  EVP_PKEY* key = kty == "EC"
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits));
  REQUIRE(key != nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  KeyPair out{std::string(data, n), ""};
  BIO_free(bio);
  if (kty == "EC") {
    unsigned char point[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len);
    REQUIRE(len == 65);
    out.jwk = absl::StrCat(R"({"kty":"EC","crv":"P-256","use":"sig","x":")",
                           B64(std::string(reinterpret_cast<char*>(point) + 1, 32)), R"(","y":")",
                           B64(std::string(reinterpret_cast<char*>(point) + 33, 32)), "\"");
  } else {
    out.jwk = absl::StrCat(R"({"kty":"RSA","use":"sig","n":")", B64(Bn(key, OSSL_PKEY_PARAM_RSA_N)),
                           R"(","e":")", B64(Bn(key, OSSL_PKEY_PARAM_RSA_E)), "\"");
  }
  EVP_PKEY_free(key);
  return out;
}

std::string WithKid(const std::string& jwk, const std::string& kid) {
  return absl::StrCat(jwk, R"(,"kid":")", kid, "\"}");
}

std::string Claims(absl::Time now, const std::string& extra = "") {
  return absl::StrCat(R"({"sub":"c1","role":"customer","exp":)",
                      absl::ToUnixSeconds(now + absl::Minutes(10)), extra, "}");
}

std::unique_ptr<Verifier> FromSecret() {
  VerifierOptions o;
  o.hmac_secret = kSecret;
  auto v = Verifier::Create(o);
  REQUIRE(v.ok());
  return *std::move(v);
}

std::string Raw(const std::string& header, const std::string& claims,
                const std::string& signature = "") {
  return absl::StrCat(B64(header), ".", B64(claims), ".", B64(signature));
}

TEST_CASE(
    "jwt: a JWK Set picks the key by kid, and a kid not in the set or an alg that does not fit the "
    "key is refused") {
  const KeyPair ec = NewKey("EC");
  const KeyPair rsa = NewKey("RSA");
  VerifierOptions o;
  o.jwks_json =
      absl::StrCat(R"({"keys":[)", WithKid(ec.jwk, "ec-1"), ",", WithKid(rsa.jwk, "rsa-1"), ",",
                   R"({"kty":"oct","kid":"hs-1","k":")", B64(kSecret), R"("}]})");
  auto verifier = Verifier::Create(o);
  REQUIRE(verifier.ok());
  const absl::Time now = absl::Now();
  CHECK((*verifier)->Verify(*Sign("ES256", ec.private_pem, Claims(now), "ec-1"), now).ok());
  CHECK((*verifier)->Verify(*Sign("RS256", rsa.private_pem, Claims(now), "rsa-1"), now).ok());
  CHECK((*verifier)->Verify(*Sign("HS256", kSecret, Claims(now), "hs-1"), now).ok());
  // The EC key's token under the RSA key's id, or an unknown id, or no id among several keys.
  CHECK_FALSE((*verifier)->Verify(*Sign("ES256", ec.private_pem, Claims(now), "rsa-1"), now).ok());
  CHECK(absl::StrContains((*verifier)
                              ->Verify(*Sign("ES256", ec.private_pem, Claims(now), "nope"), now)
                              .status()
                              .message(),
                          "kid"));
  CHECK_FALSE((*verifier)->Verify(*Sign("ES256", ec.private_pem, Claims(now)), now).ok());
  // Algorithm confusion: HS256 "signed" with the RSA public key's JWK text, under the RSA key's id.
  CHECK_FALSE(
      (*verifier)
          ->Verify(*Sign("HS256", rsa.jwk + "-padding-to-32-bytes", Claims(now), "rsa-1"), now)
          .ok());
  // Keys this verifier cannot use (an alg its key cannot do, a short RSA key, another curve) are
  // skipped and named, and the others keep working: one odd key published by the identity provider
  // must not stop rotation.
  o.jwks_json = absl::StrCat(R"({"keys":[)", ec.jwk, R"(,"kid":"x","alg":"RS256"},)",
                             WithKid(NewKey("RSA", 1024).jwk, "weak"), ",",
                             R"({"kty":"EC","crv":"P-384","kid":"p384","x":"AAAA","y":"AAAA"},)",
                             WithKid(ec.jwk, "ec-1"), "]}");
  auto partly = Verifier::Create(o);
  REQUIRE(partly.ok());
  CHECK((*partly)->skipped_keys().size() == 3);
  CHECK((*partly)->Verify(*Sign("ES256", ec.private_pem, Claims(now), "ec-1"), now).ok());
  CHECK_FALSE((*partly)->Verify(*Sign("ES256", ec.private_pem, Claims(now), "x"), now).ok());
  // A set with no usable key, or a key without kid, does not load.
  o.jwks_json = absl::StrCat(R"({"keys":[)", WithKid(NewKey("RSA", 1024).jwk, "weak"), "]}");
  CHECK(absl::StrContains(Verifier::Create(o).status().message(), "2048"));
  o.jwks_json = absl::StrCat(R"({"keys":[)", ec.jwk, "}]}");
  CHECK(absl::StrContains(Verifier::Create(o).status().message(), "kid"));
  // Two keys under one kid (a provider reusing an id across a rotation): each is tried.
  const KeyPair twin = NewKey("EC");
  o.jwks_json =
      absl::StrCat(R"({"keys":[)", WithKid(ec.jwk, "same"), ",", WithKid(twin.jwk, "same"), "]}");
  auto twins = Verifier::Create(o);
  REQUIRE(twins.ok());
  CHECK((*twins)->Verify(*Sign("ES256", ec.private_pem, Claims(now), "same"), now).ok());
  CHECK((*twins)->Verify(*Sign("ES256", twin.private_pem, Claims(now), "same"), now).ok());
}

TEST_CASE(
    "jwt: a JWK Set file is re-read when it changes: a new key works, a removed one stops, a "
    "broken file keeps the keys") {
  testing::TempDir dir;
  const std::string path = dir.Sub("jwks.json");
  const KeyPair old_key = NewKey("EC"), new_key = NewKey("EC");
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::trunc) << text; };
  write(absl::StrCat(R"({"keys":[)", WithKid(old_key.jwk, "2026-01"), "]}"));
  VerifierOptions o;
  o.jwks_file = path;
  auto verifier = Verifier::Create(o);
  REQUIRE(verifier.ok());
  const absl::Time now = absl::Now();
  const std::string old_token = *Sign("ES256", old_key.private_pem, Claims(now), "2026-01");
  const std::string new_token = *Sign("ES256", new_key.private_pem, Claims(now), "2026-02");
  CHECK((*verifier)->Verify(old_token, now).ok());
  CHECK_FALSE((*verifier)->Verify(new_token, now).ok());
  CHECK_FALSE(*(*verifier)->ReloadIfChanged());  // nothing changed
  const uint64_t before = (*verifier)->generation();

  // The identity provider rotates: the new key is added, then the old one removed.
  write(absl::StrCat(R"({"keys":[)", WithKid(new_key.jwk, "2026-02"), ",",
                     WithKid(old_key.jwk, "2026-01"), "]}"));
  REQUIRE(*(*verifier)->ReloadIfChanged());
  CHECK((*verifier)->generation() > before);
  CHECK((*verifier)->Verify(old_token, now).ok());
  CHECK((*verifier)->Verify(new_token, now).ok());
  write(absl::StrCat(R"({"keys":[)", WithKid(new_key.jwk, "2026-02"), "]}"));
  REQUIRE(*(*verifier)->ReloadIfChanged());
  CHECK_FALSE((*verifier)->Verify(old_token, now).ok());
  CHECK((*verifier)->Verify(new_token, now).ok());

  // A half-written or broken file is reported and the keys in use stay.
  write(R"({"keys":[{"kty":"EC")");
  CHECK_FALSE((*verifier)->ReloadIfChanged().ok());
  CHECK((*verifier)->Verify(new_token, now).ok());
}

TEST_CASE("jwt: time claims outside sane bounds are refused, not wrapped") {
  auto verifier = FromSecret();
  const absl::Time now = absl::Now();
  const int64_t exp = absl::ToUnixSeconds(now + absl::Minutes(10));
  auto verify = [&](const std::string& claims) {
    return verifier->Verify(*Sign("HS256", kSecret, claims), now);
  };
  CHECK(verify(Claims(now)).ok());
  // nbf beyond int64 (the cast once wrapped it into the past), or huge, negative, or a string.
  for (const std::string nbf : {"9.3e18", "1e300", "-5", "\"0\""}) {
    INFO("nbf " << nbf);
    CHECK(absl::IsUnauthenticated(verify(Claims(now, absl::StrCat(",\"nbf\":", nbf))).status()));
  }
  for (const std::string bad_exp : {"\"9999999999\"", "1e300", "-1", "true"}) {
    INFO("exp " << bad_exp);
    CHECK_FALSE(verify(absl::StrCat(R"({"sub":"c1","role":"customer","exp":)", bad_exp, "}")).ok());
  }
  CHECK_FALSE(verify(R"({"sub":"c1","role":"customer"})").ok());  // exp is required
  // Issued in the future; living 100 years; living longer than the configured maximum.
  CHECK(absl::StrContains(verify(Claims(now, absl::StrCat(",\"iat\":", exp))).status().message(),
                          "iat"));
  CHECK(absl::StrContains(
      verify(absl::StrCat(R"({"sub":"c1","role":"customer","exp":)",
                          absl::ToUnixSeconds(now + absl::Hours(24 * 365 * 100)), "}"))
          .status()
          .message(),
      "longer"));
  CHECK(verify(absl::StrCat(R"({"sub":"c1","role":"customer","iat":)",
                            absl::ToUnixSeconds(now - absl::Hours(23)), R"(,"exp":)",
                            absl::ToUnixSeconds(now + absl::Minutes(30)), "}"))
            .ok());
  // A fraction of a second is a valid NumericDate.
  CHECK(verify(absl::StrCat(R"({"sub":"c1","role":"customer","exp":)", exp, ".5}")).ok());
}

TEST_CASE("jwt: headers the verifier does not understand, alg none and broken tokens are refused") {
  auto verifier = FromSecret();
  const absl::Time now = absl::Now();
  const std::string claims = Claims(now);
  // "crit" names extensions that must be understood (RFC 7515 4.1.11): none are.
  const std::string with_crit = Raw(R"({"alg":"HS256","crit":["exp"],"exp":1})", claims);
  CHECK(absl::StrContains(verifier->Verify(with_crit, now).status().message(), "crit"));
  // alg none, with and without the original signature.
  const std::string good = *Sign("HS256", kSecret, claims);
  const std::string signature = good.substr(good.rfind('.') + 1);
  CHECK_FALSE(verifier->Verify(Raw(R"({"alg":"none"})", claims), now).ok());
  CHECK_FALSE(
      verifier
          ->Verify(absl::StrCat(B64(R"({"alg":"none"})"), ".", B64(claims), ".", signature), now)
          .ok());
  // Truncated or flipped signatures; a payload that is not an object; not three parts.
  CHECK_FALSE(verifier->Verify(good.substr(0, good.size() - 2), now).ok());
  std::string flipped = good;
  char& c = flipped[flipped.size() -
                    10];  // inside the signature (the last character may only carry padding bits)
  c = c == 'A' ? 'B' : 'A';
  CHECK_FALSE(verifier->Verify(flipped, now).ok());
  const std::string not_object = *Sign("HS256", kSecret, "[1,2]");
  CHECK_FALSE(verifier->Verify(not_object, now).ok());
  CHECK_FALSE(verifier->Verify("a.b", now).ok());
}

}  // namespace
}  // namespace crm::auth
