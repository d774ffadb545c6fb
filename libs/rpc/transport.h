// How the project's processes reach each other: mutual TLS with gRPC's own TLS credentials when the
// process has certificates, else loopback only. Certificates come from one folder in the layout
// cert-manager writes (tls.crt, tls.key, ca.crt); gRPC's file watcher picks up renewed files
// without a restart.
//
//   server, TLS:    every client must present a certificate signed by ca.crt (mTLS); the
//                   certificate's common name is the caller's process name ("gateway",
//                   "order-tracking"), checked against the caller assertion
//                   (libs/rpc/caller_auth.h).
//   server, no TLS: gRPC's local credentials: only connections from this machine's loopback are
//                   accepted, so a service without certificates cannot be reached from the network.
//   client:         TLS with this process's certificate, or plaintext to loopback.
//
// The setting is process-wide (RunService sets it from --tls_dir before any channel or server
// exists).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace crm::rpc {

// The certificate folder, or "" for no TLS. Checks that the three files are there.
absl::Status SetTlsDir(const std::string& dir);
std::string TlsDir();

// Credentials for a server of this process: mTLS, or loopback-only local credentials.
std::shared_ptr<grpc::ServerCredentials> ServerTransportCredentials();
// Credentials for a channel to another process of the system.
std::shared_ptr<grpc::ChannelCredentials> ChannelTransportCredentials();

// The process name a TLS peer's certificate names (its common name), or "" without TLS.
std::string PeerProcessName(const grpc::AuthContext& context);

}  // namespace crm::rpc
