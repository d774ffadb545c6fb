#include "libs/rpc/transport.h"

#include <sys/stat.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace crm::rpc {
namespace {

// How often gRPC re-reads the certificate files (cert-manager renews well before expiry).
constexpr unsigned kCertificateRefreshSeconds = 60;

absl::Mutex g_mu;
std::string* g_tls_dir ABSL_GUARDED_BY(g_mu) = new std::string();

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// One watcher per folder for the whole process (each runs a refresh thread).
std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(const std::string& dir) {
  static absl::Mutex mu;
  static auto* providers =
      new std::map<std::string,
                   std::shared_ptr<grpc::experimental::CertificateProviderInterface>>();
  absl::MutexLock lock(&mu);
  auto& provider = (*providers)[dir];
  if (provider == nullptr) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        dir + "/tls.key", dir + "/tls.crt", dir + "/ca.crt", kCertificateRefreshSeconds);
  }
  return provider;
}

}  // namespace

absl::Status SetTlsDir(const std::string& dir) {
  if (!dir.empty()) {
    for (const char* file : {"tls.crt", "tls.key", "ca.crt"}) {
      if (!Exists(dir + "/" + file)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls_dir: ", dir, " has no ", file,
                         " (expected tls.crt, tls.key and ca.crt, as cert-manager writes them)"));
      }
    }
  }
  absl::MutexLock lock(&g_mu);
  *g_tls_dir = dir;
  return absl::OkStatus();
}

std::string TlsDir() {
  absl::MutexLock lock(&g_mu);
  return *g_tls_dir;
}

std::shared_ptr<grpc::ServerCredentials> ServerTransportCredentials() {
  const std::string dir = TlsDir();
  if (dir.empty()) return grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  grpc::experimental::TlsServerCredentialsOptions options(Provider(dir));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelTransportCredentials() {
  const std::string dir = TlsDir();
  if (dir.empty()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(dir));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(options);
}

std::string PeerProcessName(const grpc::AuthContext& context) {
  for (const grpc::string_ref& name : context.FindPropertyValues("x509_common_name")) {
    return std::string(name.data(), name.size());
  }
  return "";
}

}  // namespace crm::rpc
