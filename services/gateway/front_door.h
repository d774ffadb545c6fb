// The gateway's front door: one event-driven HTTP/1.1 + HTTP/2 server for all three protocols
// (native gRPC, gRPC-Web, Connect), on a few event loops (--front_threads). An idle connection
// costs its buffers, never a thread; a request must bring its headers within
// --http_header_timeout_s and keep its body coming within
// --http_body_timeout_s (slowloris); a connection with nothing to do closes after
// --http_idle_timeout_s; one client address holds at most --max_connections_per_ip connections; one
// principal holds at most a few server streams (--max_streams_per_customer /
// --max_streams_per_principal). Streams live on the loops like everything else, so they cannot
// starve unary calls of threads.
//
// Ports: the gRPC port (h2c, prior knowledge, as gRPC clients speak it), the HTTP port (HTTP/1.1,
// and h2c when a client opens with the HTTP/2 preface) and, with --front_tls_dir, an HTTPS port
// where browsers get HTTP/2 or HTTP/1.1 by ALPN. Each request becomes a ProxyCall (proxy_call.h),
// which relays it to the service.
//
// Thread-safe: Start, Shutdown and Stop from one thread; the rest runs on the loops.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/gateway/event_loop.h"
#include "services/gateway/gateway.h"
#include "services/gateway/upstream.h"

struct evconnlistener;
struct event;
struct bufferevent;
struct ssl_ctx_st;

namespace crm::gateway {

struct FrontDoorOptions {
  std::string grpc_listen = "127.0.0.1:50050";
  std::string http_listen = "127.0.0.1:8080";
  // With a TLS folder (tls.crt, tls.key): an HTTPS port for browsers, HTTP/2 or HTTP/1.1 by ALPN.
  std::string https_listen;
  std::string tls_dir;
  int threads = 2;
  // Origins allowed to call from a browser ("*" allows any).
  std::vector<std::string> allowed_origins;
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration body_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(120);
  // After this long (±10% jitter) a client connection is retired: HTTP/2 gets a GOAWAY that lets
  // its open streams finish; HTTP/1.1 gets `connection: close` on the response in flight, or is
  // closed at once when idle between requests. The client's
  // next calls open a new connection, which a per-connection balancer (a ClusterIP Service) may
  // place on a replica added since. Infinite: never.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  int max_connections_per_ip = 1000;
  int max_streams_per_customer = 8;
  int max_streams_per_principal = 256;
  // HTTP/2 streams a client may have open on one connection.
  int max_concurrent_streams = 1000;
  // TLS to the services (this process's certificate); empty: plaintext.
  std::string upstream_tls_dir;
};

// One request and its response, on an HTTP/1.1 connection or an HTTP/2 stream. Owned by its
// connection; everything on the connection's loop.
class Exchange {
 public:
  struct Head {
    std::string method;
    std::string path;   // without the query
    std::string query;  // after '?', undecoded
    Headers headers;    // names lower case
    std::string peer_ip;
    bool http2 = false;
    const std::string* Find(absl::string_view name) const;
  };
  // What the exchange tells the code handling it.
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnBody(const char* data, size_t size) = 0;
    virtual void OnBodyEnd() = 0;
    // The client went away (or the connection was closed under the call): stop, send nothing more.
    virtual void OnAbort() = 0;
  };

  virtual ~Exchange() = default;
  const Head& head() const { return head_; }
  // The response: headers (a status, and `end` for a response without body), then body bytes, then
  // the end with trailers (HTTP/2; an HTTP/1.1 response drops them).
  virtual void Respond(int status, const Headers& headers, bool end) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End(const Headers& trailers) = 0;
  // Gives up on the exchange: resets the stream, or closes an HTTP/1.1 connection mid-response.
  virtual void Abort() = 0;
  // Response bytes queued and not yet written to the socket.
  virtual size_t Buffered() const = 0;

  void set_handler(std::unique_ptr<Handler> handler) { handler_ = std::move(handler); }
  Handler* handler() const { return handler_.get(); }

 protected:
  Head head_;
  std::unique_ptr<Handler> handler_;
};

class FrontDoor;
struct LoopContext;
struct Listener;

// Counts open server streams per principal across the loops.
class StreamCounter {
 public:
  // false when `principal` already holds `limit` streams.
  bool Acquire(const std::string& principal, int limit);
  void Release(const std::string& principal);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

class FrontDoor {
 public:
  FrontDoor(Gateway* gateway, FrontDoorOptions options);
  ~FrontDoor();
  FrontDoor(const FrontDoor&) = delete;
  FrontDoor& operator=(const FrontDoor&) = delete;

  absl::Status Start();
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  int https_port() const { return https_port_; }
  // Closes the listening ports (new connections are refused, so clients retry elsewhere), tells
  // HTTP/2 clients to go away (GOAWAY), ends server streams with UNAVAILABLE so clients reconnect
  // elsewhere, and waits up to `grace` for the calls in flight. Not from an event loop's callbacks.
  void Shutdown(absl::Duration grace);
  // Closes everything now. Idempotent; runs on destruction.
  void Stop();

  // Where the gateway's own gRPC server is (health and reflection are relayed there), once it
  // listens.
  void SetInternalAddress(std::string address);
  std::string internal_address();

  Gateway* gateway() const { return gateway_; }
  const FrontDoorOptions& options() const { return options_; }
  StreamCounter& streams() { return streams_; }
  // Per-IP connection accounting: false when `ip` is at its cap.
  bool AdmitConnection(const std::string& ip);
  void ReleaseConnection(const std::string& ip);
  // Calls in flight across every loop (for the drain).
  std::atomic<int>& in_flight() { return in_flight_; }
  bool shutting_down() const { return shutting_down_.load(); }
  ssl_ctx_st* tls() const { return tls_; }

 private:
  absl::Status Listen(const std::string& address, int kind, int* port);

  Gateway* gateway_;
  FrontDoorOptions options_;
  std::vector<std::unique_ptr<LoopContext>> loops_;
  // One per loop and port; each is also what its accept callback is given.
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool loops_running_ = false;
  ssl_ctx_st* tls_ = nullptr;
  int grpc_port_ = 0, http_port_ = 0, https_port_ = 0;
  StreamCounter streams_;
  absl::Mutex ip_mu_;
  absl::flat_hash_map<std::string, int> per_ip_ ABSL_GUARDED_BY(ip_mu_);
  std::atomic<int> in_flight_{0};
  std::atomic<bool> shutting_down_{false};
  bool stopped_ = false;
  absl::Mutex internal_mu_;
  std::string internal_address_ ABSL_GUARDED_BY(internal_mu_);
};

}  // namespace crm::gateway
