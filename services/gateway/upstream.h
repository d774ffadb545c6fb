// The gateway's HTTP/2 client to the services, on the front door's event loops: gRPC calls are
// relayed as HTTP/2 frames (headers, one request message, response messages, trailers) instead of
// being re-made through gRPC C++'s client, which was the per-call cost that kept the gateway behind
// nginx's grpc_pass.
//
// One UpstreamPool per event loop, one HTTP/2 connection per service address in it (gRPC servers
// multiplex any number of streams on one connection), opened on first use: plaintext (h2c, prior
// knowledge) for a service on loopback without TLS, or mutual TLS with ALPN h2 and this process's
// certificate (--tls_dir), re-read when the files change. A connection that fails is retried with
// backoff (100 ms, doubling to 2 s); streams refused by a server that is going away (GOAWAY,
// REFUSED_STREAM) are retried on a new connection, which is safe because the server never saw them.
// Idle connections are pinged every 30 s and dropped when the ping goes unanswered, so a vanished
// pod is noticed without waiting for TCP.
//
// Not thread-safe: everything runs on the pool's loop.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "services/gateway/event_loop.h"

struct nghttp2_session;
struct bufferevent;
struct evdns_base;
struct ssl_ctx_st;

namespace crm::gateway {

using Headers = std::vector<std::pair<std::string, std::string>>;

// What a relayed call hears back. Called on the loop; `OnClose` is last and always comes.
class UpstreamSink {
 public:
  virtual ~UpstreamSink() = default;
  // Response headers (":status" included).
  virtual void OnUpstreamHeaders(const Headers& headers) = 0;
  // Response body bytes, as they arrive (gRPC length-prefixed messages, possibly split anywhere).
  virtual void OnUpstreamData(const char* data, size_t size) = 0;
  // Trailers (grpc-status ...); for a trailers-only answer they come without OnUpstreamHeaders
  // first.
  virtual void OnUpstreamTrailers(const Headers& trailers) = 0;
  // The stream is over. `error` is empty after a complete answer, else why it broke (connection
  // lost, reset by the server): the caller answers UNAVAILABLE or CANCELLED.
  virtual void OnUpstreamClose(const std::string& error) = 0;
};

class UpstreamConnection;

// One relayed call. Owned by the caller; destroying it cancels the stream (RST_STREAM CANCEL) if
// still open.
class UpstreamStream {
 public:
  ~UpstreamStream();
  UpstreamStream(const UpstreamStream&) = delete;
  UpstreamStream& operator=(const UpstreamStream&) = delete;
  // Cancels the call at the server; OnUpstreamClose follows.
  void Cancel();

  struct State;  // shared with the connection until the stream closes

 private:
  friend class UpstreamConnection;
  friend class UpstreamPool;
  UpstreamStream() = default;
  std::shared_ptr<State> state_;
};

struct UpstreamOptions {
  // Folder with tls.crt, tls.key, ca.crt; empty: plaintext h2c.
  std::string tls_dir;
  absl::Duration connect_timeout = absl::Seconds(1);
  absl::Duration ping_interval = absl::Seconds(30);
  absl::Duration ping_timeout = absl::Seconds(10);
};

class UpstreamPool {
 public:
  UpstreamPool(EventLoop* loop, UpstreamOptions options);
  ~UpstreamPool();

  // Starts a call to `address` ("host:port"): `headers` are the request's (":method", ":path" and
  // the rest; ":scheme" and ":authority" are added), `body` the whole request body, sent with
  // END_STREAM. Answers go to `sink` until OnUpstreamClose, never before Start returns; `sink` must
  // outlive the returned stream or the stream must be destroyed first.
  std::unique_ptr<UpstreamStream> Start(const std::string& address, Headers headers,
                                        std::string body, UpstreamSink* sink);
  // Like Start, for a call whose request is streamed (the gateway's own health and reflection):
  // `body` is what came so far; more follows with Send, and `end` closes the request side.
  std::unique_ptr<UpstreamStream> StartStreaming(const std::string& address, Headers headers,
                                                 UpstreamSink* sink);
  static void Send(UpstreamStream& stream, std::string bytes, bool end);

  // Closes every connection (their streams end with an error). For shutdown.
  void CloseAll();
  EventLoop* loop() const { return loop_; }
  // The TLS context for new connections (re-read when the certificate files change); null without
  // TLS.
  ssl_ctx_st* TlsContext();

 private:
  friend class UpstreamConnection;
  UpstreamConnection* ConnectionFor(const std::string& address);
  std::unique_ptr<UpstreamStream> Begin(const std::string& address, Headers headers,
                                        std::string body, bool ended, UpstreamSink* sink);

  EventLoop* loop_;
  UpstreamOptions options_;
  evdns_base* dns_ = nullptr;
  std::map<std::string, std::unique_ptr<UpstreamConnection>> connections_;
  // Connections to a service that is going away (GOAWAY), kept until their streams finish.
  std::vector<std::unique_ptr<UpstreamConnection>> retired_;
  // Tasks posted to the loop check it: the pool may be gone by the time they run.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  ssl_ctx_st* tls_ = nullptr;
  int64_t tls_stamp_ = 0;
  absl::Time tls_checked_ = absl::InfinitePast();
};

}  // namespace crm::gateway
