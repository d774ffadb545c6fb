#include "services/gateway/gateway_component.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/customer_view.grpc.pb.h"
#include "crm/v1/events.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/rpc/flags.h"
#include "libs/rpc/periodic.h"
#include "libs/text/file.h"
#include "services/gateway/front_door.h"
#include "services/gateway/gateway.h"

ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "gRPC-Web and Connect listen address (HTTP/1.1, and HTTP/2 for clients that open with "
          "its preface)");
ABSL_FLAG(std::string, https_listen, "",
          "HTTPS listen address for browsers (HTTP/2 or HTTP/1.1 by ALPN); needs --front_tls_dir");
ABSL_FLAG(std::string, front_tls_dir, "", "folder with tls.crt and tls.key for --https_listen");
ABSL_FLAG(
    int, front_threads, 2,
    "event loops of the front door (one per core is plenty: an idle connection costs no thread)");
ABSL_FLAG(int, http_header_timeout_s, 10,
          "a request's headers must arrive within this (slowloris)");
ABSL_FLAG(int, http_body_timeout_s, 10, "a request's body may pause at most this long");
ABSL_FLAG(int, http_idle_timeout_s, 120,
          "a connection with no call in flight is closed after this");
ABSL_FLAG(int, max_connections_per_ip, 1000, "open connections one client address may hold");
ABSL_FLAG(int, max_streams_per_customer, 8,
          "server streams (WatchOrder) one customer may hold open");
ABSL_FLAG(int, max_streams_per_principal, 256, "server streams any other caller may hold open");
ABSL_FLAG(std::string, jwt_secret_file, "", "file holding the HS256 secret (at least 32 bytes)");
ABSL_FLAG(std::string, jwt_public_key_file, "", "PEM public key for RS256 or ES256 tokens");
ABSL_FLAG(std::string, jwks_file, "",
          "JWK Set (RFC 7517) of the identity provider's signing keys; a token's kid picks the "
          "key; re-read when the "
          "file changes, so keys rotate without a restart");
ABSL_FLAG(int, jwt_max_lifetime_s, 86400, "longest token lifetime accepted (exp - iat)");
ABSL_FLAG(std::string, jwt_issuer, "", "required token issuer (iss), if set");
ABSL_FLAG(std::string, jwt_audience, "", "required token audience (aud), if set");
ABSL_FLAG(std::string, cors_allowed_origins, "",
          "comma-separated origins browsers may call from (\"*\" for any)");
ABSL_FLAG(double, rate_limit_customer, 20,
          "requests/s per customer (burst twice that); 0 = unlimited");
ABSL_FLAG(double, rate_limit_agent, 100, "requests/s per agent");
ABSL_FLAG(double, rate_limit_admin, 50, "requests/s per admin");
ABSL_FLAG(double, rate_limit_service, 5000, "requests/s per service principal");
ABSL_FLAG(double, rate_limit_ip, 500, "requests/s per client address, before authentication");
ABSL_FLAG(int, default_deadline_ms, 5000, "deadline of a unary call whose client sent none");
ABSL_FLAG(int, max_deadline_ms, 30000, "cap on a unary call's deadline");
ABSL_FLAG(int, stream_max_deadline_s, 3600,
          "cap (and default) for server streams such as WatchOrder");
ABSL_FLAG(int, max_request_bytes, 1 << 20, "largest request message accepted");
ABSL_FLAG(bool, access_log, true, "one JSON line per call on stdout");
ABSL_FLAG(int, view_section_timeout_ms, 800,
          "360-degree view: how long one service may take before the view answers with its section "
          "marked unavailable");

namespace {

// The token verifier the flags describe: an HMAC secret, a public key, and/or a JWK Set file.
absl::StatusOr<std::unique_ptr<crm::auth::Verifier>> VerifierFromFlags() {
  crm::auth::VerifierOptions v;
  if (!absl::GetFlag(FLAGS_jwt_secret_file).empty()) {
    CRM_ASSIGN_OR_RETURN(const std::string secret,
                         crm::text::ReadFile(absl::GetFlag(FLAGS_jwt_secret_file)));
    v.hmac_secret = std::string(absl::StripTrailingAsciiWhitespace(secret));
  }
  if (!absl::GetFlag(FLAGS_jwt_public_key_file).empty()) {
    CRM_ASSIGN_OR_RETURN(v.public_key_pem,
                         crm::text::ReadFile(absl::GetFlag(FLAGS_jwt_public_key_file)));
  }
  v.jwks_file = absl::GetFlag(FLAGS_jwks_file);
  v.max_lifetime = absl::Seconds(std::max(60, absl::GetFlag(FLAGS_jwt_max_lifetime_s)));
  v.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  v.audience = absl::GetFlag(FLAGS_jwt_audience);
  auto verifier = crm::auth::Verifier::Create(std::move(v));
  if (!verifier.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(verifier.status().message(),
                     " (set --jwt_secret_file, --jwt_public_key_file or --jwks_file)"));
  }
  return verifier;
}

void LogSkippedKeys(const crm::auth::Verifier& verifier) {
  for (const std::string& skipped : verifier.skipped_keys())
    crm::log::Warning("jwt key skipped", {{"key", skipped}});
}

crm::gateway::GatewayOptions GatewayOptionsFromFlags(
    std::shared_ptr<crm::auth::Verifier> verifier) {
  crm::gateway::GatewayOptions o;
  o.verifier = std::move(verifier);
  o.customer_rps = absl::GetFlag(FLAGS_rate_limit_customer);
  o.agent_rps = absl::GetFlag(FLAGS_rate_limit_agent);
  o.admin_rps = absl::GetFlag(FLAGS_rate_limit_admin);
  o.service_rps = absl::GetFlag(FLAGS_rate_limit_service);
  o.ip_rps = absl::GetFlag(FLAGS_rate_limit_ip);
  o.default_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_default_deadline_ms));
  o.max_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_max_deadline_ms));
  o.stream_max_timeout = absl::Seconds(absl::GetFlag(FLAGS_stream_max_deadline_s));
  o.max_request_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_request_bytes));
  o.access_log = absl::GetFlag(FLAGS_access_log);
  o.view_section_timeout =
      absl::Milliseconds(std::max(1, absl::GetFlag(FLAGS_view_section_timeout_ms)));
  return o;
}

crm::gateway::FrontDoorOptions FrontDoorOptionsFromFlags() {
  crm::gateway::FrontDoorOptions f;
  f.grpc_listen =
      absl::GetFlag(FLAGS_listen).empty() ? "127.0.0.1:50050" : absl::GetFlag(FLAGS_listen);
  f.http_listen = absl::GetFlag(FLAGS_http_listen);
  f.https_listen = absl::GetFlag(FLAGS_https_listen);
  f.tls_dir = absl::GetFlag(FLAGS_front_tls_dir);
  f.threads = absl::GetFlag(FLAGS_front_threads);
  for (absl::string_view origin :
       absl::StrSplit(absl::GetFlag(FLAGS_cors_allowed_origins), ',', absl::SkipWhitespace())) {
    f.allowed_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  }
  f.header_timeout = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_http_header_timeout_s)));
  f.body_timeout = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_http_body_timeout_s)));
  f.idle_timeout = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_http_idle_timeout_s)));
  f.max_connections_per_ip = std::max(1, absl::GetFlag(FLAGS_max_connections_per_ip));
  f.max_streams_per_customer = std::max(1, absl::GetFlag(FLAGS_max_streams_per_customer));
  f.max_streams_per_principal = std::max(1, absl::GetFlag(FLAGS_max_streams_per_principal));
  f.upstream_tls_dir = absl::GetFlag(FLAGS_tls_dir);
  // The same age as every gRPC server's (libs/rpc/flags.h): the front door is the gateway's
  // public port, the one a Service balances per connection.
  const int age_s = absl::GetFlag(FLAGS_max_connection_age_s);
  f.max_connection_age = age_s > 0 ? absl::Seconds(age_s) : absl::InfiniteDuration();
  return f;
}

class GatewayComponent : public crm::rpc::Component {
 public:
  static absl::StatusOr<std::unique_ptr<crm::rpc::Component>> Create(
      crm::rpc::ServiceContext& context) {
    using namespace crm::gateway;
    if (!RouteTable::Default().problems().empty()) {
      return absl::FailedPreconditionError(absl::StrJoin(RouteTable::Default().problems(), "; "));
    }
    CRM_ASSIGN_OR_RETURN(std::shared_ptr<crm::auth::Verifier> verifier, VerifierFromFlags());
    LogSkippedKeys(*verifier);
    auto component = std::make_unique<GatewayComponent>();
    if (!absl::GetFlag(FLAGS_jwks_file).empty()) component->ReloadKeys(verifier);
    component->gateway_ = std::make_unique<Gateway>(GatewayOptionsFromFlags(std::move(verifier)),
                                                    context.backends, context.metrics);
    component->front_ =
        std::make_unique<FrontDoor>(component->gateway_.get(), FrontDoorOptionsFromFlags());
    CRM_RETURN_IF_ERROR(component->front_->Start());
    crm::log::Info("http listening", {{"port", component->front_->http_port()}});
    if (component->front_->https_port() != 0)
      crm::log::Info("https listening", {{"port", component->front_->https_port()}});
    return std::unique_ptr<crm::rpc::Component>(std::move(component));
  }

  void Register(crm::rpc::Server& server) override {
    server_ = &server;
    // The gateway's own server (loopback) answers health and reflection for the front door.
    // Reflection there describes every crm.v1 service the front door routes, so grpcurl-style tools
    // discover the API at the front door. These registrations exist for their descriptors only: the
    // front door relays every crm.v1 call to the services and never here.
    server.AddService(&profiles_, crm::v1::CustomerProfileService::service_full_name());
    server.AddService(&orders_, crm::v1::OrderTrackingService::service_full_name());
    server.AddService(&loyalty_, crm::v1::LoyaltyService::service_full_name());
    server.AddService(&tickets_, crm::v1::ComplaintTicketService::service_full_name());
    server.AddService(&recommendations_, crm::v1::RecommendationService::service_full_name());
    server.AddService(&views_, crm::v1::CustomerViewService::service_full_name());
    server.AddService(&event_admin_, crm::v1::EventAdminService::service_full_name());
    server.AddService(&store_admin_, crm::v1::StoreAdminService::service_full_name());
    server.OnShutdown(
        [this] { front_->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_drain_seconds))); });
  }
  void Start() override { front_->SetInternalAddress(absl::StrCat("127.0.0.1:", server_->port())); }
  void Stop() override {
    key_reload_.Stop();
    front_->Stop();
  }
  int PublicPort() const override { return front_->grpc_port(); }

 private:
  // The identity provider rotates its keys by rewriting the file; pick changes up within seconds.
  void ReloadKeys(std::shared_ptr<crm::auth::Verifier> verifier) {
    key_reload_.Start(
        absl::Seconds(5),
        [verifier = std::move(verifier)] {
          auto changed = verifier->ReloadIfChanged();
          if (!changed.ok()) {
            crm::log::Warning("jwt keys not reloaded", {{"error", changed.status().ToString()}});
          } else if (*changed) {
            crm::log::Info("jwt keys reloaded", {{"file", absl::GetFlag(FLAGS_jwks_file)}});
            LogSkippedKeys(*verifier);
          }
        },
        crm::rpc::PeriodicTask::FirstRun::kAfterInterval);
  }

  crm::rpc::PeriodicTask key_reload_;
  crm::rpc::Server* server_ = nullptr;
  std::unique_ptr<crm::gateway::Gateway> gateway_;
  std::unique_ptr<crm::gateway::FrontDoor> front_;
  crm::v1::CustomerProfileService::CallbackService profiles_;
  crm::v1::OrderTrackingService::CallbackService orders_;
  crm::v1::LoyaltyService::CallbackService loyalty_;
  crm::v1::ComplaintTicketService::CallbackService tickets_;
  crm::v1::RecommendationService::CallbackService recommendations_;
  crm::v1::CustomerViewService::CallbackService views_;
  crm::v1::EventAdminService::CallbackService event_admin_;
  crm::v1::StoreAdminService::CallbackService store_admin_;
};

}  // namespace

namespace crm::gateway {

rpc::ServiceSpec GatewaySpec() {
  rpc::ServiceSpec spec;
  spec.name = "gateway";
  spec.usage =
      "gateway: gRPC, gRPC-Web and Connect front door with JWT auth, per-method policy and rate "
      "limits";
  spec.default_listen = "127.0.0.1:50050";
  spec.default_metrics_listen = "127.0.0.1:9150";
  spec.build = &GatewayComponent::Create;
  spec.forwards_calls = true;
  // --listen is the front door's; the process's own gRPC server (health, reflection) stays on
  // loopback.
  spec.internal_listen = "127.0.0.1:0";
  return spec;
}

}  // namespace crm::gateway
