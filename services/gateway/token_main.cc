// crm-token: mints a bearer token for the gateway, for local development and scripts.
//   crm-token --secret_file=data/gateway/jwt-secret --role=customer --subject=c_0123 [--ttl_s=3600]
//   crm-token --private_key_file=key.pem --alg=ES256 --role=admin --subject=ops@example.com
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/auth/jwt.h"
#include "libs/base/flags_help.h"
#include "libs/log/log.h"

ABSL_FLAG(std::string, secret_file, "", "HS256 secret file (the gateway's --jwt_secret_file)");
ABSL_FLAG(std::string, private_key_file, "", "PEM private key for RS256/ES256");
ABSL_FLAG(std::string, alg, "", "HS256, RS256 or ES256 (default: HS256 with a secret, else RS256)");
ABSL_FLAG(std::string, role, "customer", "customer, agent, admin or service");
ABSL_FLAG(std::string, subject, "", "the principal (sub); a customer's id for the customer role");
ABSL_FLAG(std::string, issuer, "", "iss claim");
ABSL_FLAG(std::string, audience, "", "aud claim");
ABSL_FLAG(int, ttl_s, 3600, "seconds until the token expires");
ABSL_FLAG(std::string, kid, "",
          "key id (kid) in the header, for a gateway that verifies with a JWK Set (--jwks_file)");

int main(int argc, char** argv) {
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  const bool hmac = !absl::GetFlag(FLAGS_secret_file).empty();
  const std::string path =
      hmac ? absl::GetFlag(FLAGS_secret_file) : absl::GetFlag(FLAGS_private_key_file);
  if (path.empty() || absl::GetFlag(FLAGS_subject).empty() ||
      crm::auth::ParseRole(absl::GetFlag(FLAGS_role)) == crm::v1::ROLE_UNSPECIFIED) {
    std::cerr << "usage: crm-token (--secret_file=F | --private_key_file=F [--alg=ES256]) --role=R "
                 "--subject=S\n";
    return 2;
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream key;
  key << in.rdbuf();
  if (!in) {
    std::cerr << "cannot read " << path << "\n";
    return 1;
  }
  std::string claims = "{\"sub\":";
  crm::log::AppendJsonString(claims, absl::GetFlag(FLAGS_subject));
  absl::StrAppend(&claims, ",\"role\":\"", absl::GetFlag(FLAGS_role),
                  "\",\"iat\":", absl::ToUnixSeconds(absl::Now()),
                  ",\"exp\":", absl::ToUnixSeconds(absl::Now()) + absl::GetFlag(FLAGS_ttl_s));
  if (!absl::GetFlag(FLAGS_issuer).empty()) {
    claims += ",\"iss\":";
    crm::log::AppendJsonString(claims, absl::GetFlag(FLAGS_issuer));
  }
  if (!absl::GetFlag(FLAGS_audience).empty()) {
    claims += ",\"aud\":";
    crm::log::AppendJsonString(claims, absl::GetFlag(FLAGS_audience));
  }
  claims += "}";
  std::string alg = absl::GetFlag(FLAGS_alg);
  if (alg.empty()) alg = hmac ? "HS256" : "RS256";
  const std::string k =
      hmac ? std::string(absl::StripTrailingAsciiWhitespace(key.str())) : key.str();
  auto token = crm::auth::Sign(alg, k, claims, absl::GetFlag(FLAGS_kid));
  if (!token.ok()) {
    std::cerr << token.status().message() << "\n";
    return 1;
  }
  std::cout << *token << "\n";
  return 0;
}
