// A per-connection TCP balancer on loopback, as kube-proxy is for a Kubernetes ClusterIP Service:
// each new client connection goes to the next backend of the current set (round robin) and stays
// on it, byte for byte, until one side closes. Backends can be added while it runs, as pods are
// added behind a Service. It sees no HTTP/2, so a client's long-lived connection stays wherever it
// first landed. One thread per relayed connection (tests only). Thread-safe.
#pragma once

#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace crm::testing {

class TcpBalancer {
 public:
  TcpBalancer() = default;
  // Stop().
  ~TcpBalancer();
  TcpBalancer(const TcpBalancer&) = delete;
  TcpBalancer& operator=(const TcpBalancer&) = delete;

  // Listens on 127.0.0.1, port chosen by the system (port()).
  absl::Status Start();
  int port() const { return port_; }
  // Adds 127.0.0.1:`backend_port` to the set new connections are spread over.
  void AddBackend(int backend_port);
  // Client connections relayed to `backend_port` so far.
  int ConnectionsTo(int backend_port);
  // Stops accepting, closes every relayed connection and waits for the relay threads. Idempotent.
  void Stop();

 private:
  void Accept();
  // Copies bytes both ways between the client and the backend until both directions are closed.
  void Relay(int client, int backend);
  // The next backend's port (round robin), 0 when there is none.
  int NextBackend();

  int listener_ = -1;
  // Written once to wake every poll() when stopping.
  int wake_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> backends_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, int> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
  // Sockets of relayed connections still open, shut down by Stop to unblock a relay in send().
  std::set<int> open_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace crm::testing
