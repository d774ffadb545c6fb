#include "services/gateway/upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/log/log.h"
#include "services/gateway/http2_callbacks.h"

namespace crm::gateway {

struct UpstreamStream::State {
  UpstreamSink* sink = nullptr;  // null once the owner has let go
  UpstreamConnection* connection = nullptr;
  int32_t id = -1;
  std::string address;
  Headers headers;
  std::string outbound;  // request bytes not yet handed to nghttp2
  bool request_ended = false;
  bool streaming = false;
  bool responded =
      false;  // response headers or trailers seen: a retry would repeat a processed call
  bool trailers_seen = false;
  bool closed = false;
  int attempts = 0;
};

namespace {

using State = UpstreamStream::State;

constexpr int32_t kWindow = 8 << 20;  // generous: gRPC answers are small, streams few

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

// Frees what `p` points to with `free`, if anything, and forgets it.
template <typename T, typename Free>
void FreeAndClear(T*& p, Free free) {
  if (p == nullptr) return;
  free(p);
  p = nullptr;
}

void Close(const std::shared_ptr<State>& s, const std::string& error) {
  if (s->closed) return;
  s->closed = true;
  s->connection = nullptr;
  if (s->sink != nullptr) s->sink->OnUpstreamClose(error);
}

}  // namespace

class UpstreamConnection {
 public:
  UpstreamConnection(UpstreamPool* pool, std::string address)
      : pool_(pool), address_(std::move(address)) {
    const size_t colon = address_.rfind(':');
    host_ = address_.substr(0, colon);
    if (!host_.empty() && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
    (void)absl::SimpleAtoi(address_.substr(colon + 1), &port_);
  }
  ~UpstreamConnection() { Teardown("the gateway is closing its connection to the service"); }

  // Usable for a new stream now or soon (not draining, not recently failed).
  bool Usable(absl::Time now) const {
    return !draining_ && (state_ != kBroken || now >= retry_after_);
  }
  bool Idle() const { return streams_.empty() && waiting_.empty(); }
  bool draining() const { return draining_; }

  void Submit(std::shared_ptr<State> s) {
    s->connection = this;
    if (state_ == kReady) {
      SubmitNow(std::move(s));
      Flush();
      return;
    }
    waiting_.push_back(std::move(s));
    if (state_ == kBroken || state_ == kIdle) Connect();
  }

  void Cancel(State* s) {
    if (s->closed) return;
    if (s->id < 0) {  // still waiting for the connection
      for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
        if (it->get() == s) {
          std::shared_ptr<State> keep = *it;
          waiting_.erase(it);
          Close(keep, "cancelled");
          return;
        }
      }
      return;
    }
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    Flush();
  }

  void MoreData(State* s) {
    if (s->id >= 0 && session_ != nullptr) {
      nghttp2_session_resume_data(session_, s->id);
      Flush();
    }
  }

  void Teardown(const std::string& why) {
    FreeAndClear(ping_timer_, event_free);
    FreeAndClear(connect_timer_, event_free);
    FreeAndClear(session_, nghttp2_session_del);
    FreeAndClear(bev_, bufferevent_free);
    auto streams = std::move(streams_);
    streams_.clear();
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& [id, s] : streams) Close(s, why);
    for (auto& s : waiting) Close(s, why);
  }

 private:
  enum State_ { kIdle, kConnecting, kReady, kBroken };

  void Connect() {
    state_ = kConnecting;
    ssl_ctx_st* tls = pool_->TlsContext();
    event_base* base = pool_->loop()->base();
    if (tls != nullptr) {
      SSL* ssl = SSL_new(tls);
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      if (X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str()) != 1) {
        X509_VERIFY_PARAM_set1_host(param, host_.c_str(), 0);
        SSL_set_tlsext_host_name(ssl, host_.c_str());
      }
      bev_ = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    } else {
      bev_ = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    bufferevent_setcb(bev_, &UpstreamConnection::OnRead, nullptr, &UpstreamConnection::OnEvent,
                      this);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    connect_timer_ = evtimer_new(base, &UpstreamConnection::OnConnectTimeout, this);
    const timeval tv = absl::ToTimeval(pool_->options_.connect_timeout);
    evtimer_add(connect_timer_, &tv);
    if (bufferevent_socket_connect_hostname(bev_, pool_->dns_, AF_UNSPEC, host_.c_str(), port_) !=
        0) {
      // Reported from the timer, not from here: a caller never hears of its stream before Start
      // returns.
      connect_error_ = "cannot start connecting";
      const timeval now{0, 0};
      evtimer_add(connect_timer_, &now);
    }
  }

  static void OnConnectTimeout(evutil_socket_t, short, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    c->Fail(c->connect_error_.empty() ? "connecting timed out" : c->connect_error_);
    c->connect_error_.clear();
  }

  void Fail(const std::string& why) {
    backoff_ = backoff_ == absl::ZeroDuration() ? absl::Milliseconds(100)
                                                : std::min(backoff_ * 2, absl::Seconds(2));
    retry_after_ = absl::Now() + backoff_;
    Teardown(absl::StrCat("service ", address_, " unreachable: ", why));
    state_ = kBroken;
  }

  static void OnEvent(bufferevent*, short what, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    if (what & BEV_EVENT_CONNECTED) return c->OnConnected();
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
      std::string why =
          what & BEV_EVENT_EOF ? "connection closed by the service" : "connection error";
      if (const unsigned long ssl_error = bufferevent_get_openssl_error(c->bev_)) {
        char buf[256];
        ERR_error_string_n(ssl_error, buf, sizeof(buf));
        why = absl::StrCat("TLS: ", buf);
      }
      if (c->state_ == kReady) {
        c->state_ = kBroken;  // a fresh attempt next time, without backoff: it was working
        c->retry_after_ = absl::InfinitePast();
        c->Teardown(absl::StrCat("service ", c->address_, ": ", why));
      } else {
        c->Fail(why);
      }
    }
  }

  void OnConnected() {
    FreeAndClear(connect_timer_, event_free);
    if (pool_->tls_ != nullptr) {
      SSL* ssl = bufferevent_openssl_get_ssl(bev_);
      const unsigned char* alpn = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
      if (alpn_len != 2 || std::string(reinterpret_cast<const char*>(alpn), 2) != "h2") {
        return Fail("the service did not agree to HTTP/2 (ALPN)");
      }
    }
    const int one = 1;
    setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const Http2Callbacks cb =
        NewHttp2Callbacks({.on_header = &UpstreamConnection::OnHeader,
                           .on_frame_recv = &UpstreamConnection::OnFrame,
                           .on_data_chunk_recv = &UpstreamConnection::OnData,
                           .on_stream_close = &UpstreamConnection::OnStreamClose});
    nghttp2_session_client_new(&session_, cb.get(), this);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                               {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kWindow}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kWindow);
    state_ = kReady;
    backoff_ = absl::ZeroDuration();
    ping_timer_ = evtimer_new(pool_->loop()->base(), &UpstreamConnection::OnPingTimer, this);
    ArmPing(pool_->options_.ping_interval);
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& s : waiting) SubmitNow(std::move(s));
    Flush();
  }

  void ArmPing(absl::Duration after) {
    const timeval tv = absl::ToTimeval(after);
    evtimer_add(ping_timer_, &tv);
  }

  static void OnPingTimer(evutil_socket_t, short, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    if (c->ping_outstanding_) {
      c->state_ = kBroken;
      c->retry_after_ = absl::InfinitePast();
      return c->Teardown(
          absl::StrCat("service ", c->address_, " stopped answering (keepalive ping unanswered)"));
    }
    c->ping_outstanding_ = true;
    nghttp2_submit_ping(c->session_, NGHTTP2_FLAG_NONE, nullptr);
    c->Flush();
    c->ArmPing(c->pool_->options_.ping_timeout);
  }

  void SubmitNow(std::shared_ptr<State> s) {
    std::vector<nghttp2_nv> nv;
    // nghttp2 keeps pointers to names and values until the frame is written: only long-lived
    // strings here.
    static const std::string kScheme = ":scheme";
    static const std::string kAuthority = ":authority";
    static const std::string kHttps = "https", kHttp = "http";
    const std::string& scheme = pool_->tls_ != nullptr ? kHttps : kHttp;
    // Pseudo-headers first (RFC 9113 8.3).
    for (const auto& [k, v] : s->headers) {
      if (!k.empty() && k[0] == ':') nv.push_back(Nv(k, v));
    }
    nv.push_back(Nv(kScheme, scheme));
    nv.push_back(Nv(kAuthority, address_));
    for (const auto& [k, v] : s->headers) {
      if (k.empty() || k[0] != ':') nv.push_back(Nv(k, v));
    }
    nghttp2_data_provider provider;
    provider.source.ptr = s.get();
    provider.read_callback = &UpstreamConnection::ReadBody;
    const int32_t id =
        nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), &provider, s.get());
    if (id < 0) {
      // Told from the loop, not from here: Start has not returned yet.
      pool_->loop()->Post([s, why = absl::StrCat("cannot start a stream: ", nghttp2_strerror(id))] {
        Close(s, why);
      });
      return;
    }
    s->id = id;
    ++s->attempts;
    streams_[id] = std::move(s);
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto* s = static_cast<State*>(source->ptr);
    const size_t n = std::min(length, s->outbound.size());
    std::memcpy(buf, s->outbound.data(), n);
    s->outbound.erase(0, n);
    if (s->outbound.empty()) {
      if (s->request_ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }

  State* Find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (c->Find(frame->hd.stream_id) == nullptr) return 0;
    c->header_block_.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                                  std::string(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        State* s = c->Find(frame->hd.stream_id);
        Headers block = std::move(c->header_block_);
        c->header_block_.clear();
        if (s == nullptr || s->sink == nullptr) return 0;
        s->responded = true;
        const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && !end) {
          s->sink->OnUpstreamHeaders(block);
        } else {
          s->trailers_seen = true;
          s->sink->OnUpstreamTrailers(block);
        }
        return 0;
      }
      case NGHTTP2_GOAWAY:
        // The service is going away: no new streams here; the pool opens a fresh connection.
        c->draining_ = true;
        return 0;
      case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
          c->ping_outstanding_ = false;
          c->ArmPing(c->pool_->options_.ping_interval);
        }
        return 0;
      default: return 0;
    }
  }

  static int OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                    void* self) {
    State* s = static_cast<UpstreamConnection*>(self)->Find(id);
    if (s != nullptr && s->sink != nullptr)
      s->sink->OnUpstreamData(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    auto it = c->streams_.find(id);
    if (it == c->streams_.end()) return 0;
    std::shared_ptr<State> s = std::move(it->second);
    c->streams_.erase(it);
    // Refused (the service was going away before it saw the call): safe to send again, once.
    if (error_code == NGHTTP2_REFUSED_STREAM && !s->responded && s->attempts < 2 &&
        s->sink != nullptr) {
      s->id = -1;
      c->pool_->loop()->Post([pool = c->pool_, alive = std::weak_ptr<bool>(c->pool_->alive_), s] {
        if (alive.expired() || s->sink == nullptr || s->closed) return;
        pool->ConnectionFor(s->address)->Submit(s);
      });
      return 0;
    }
    std::string error;
    if (error_code != NGHTTP2_NO_ERROR || !s->trailers_seen) {
      error = absl::StrCat("the service reset the call (", nghttp2_http2_strerror(error_code), ")");
    }
    Close(s, error);
    return 0;
  }

  static void OnRead(bufferevent* bev, void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    evbuffer* in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0 && c->session_ != nullptr) {
      evbuffer_iovec vec;
      if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
      const ssize_t used = nghttp2_session_mem_recv(
          c->session_, static_cast<const uint8_t*>(vec.iov_base), vec.iov_len);
      if (used < 0) {
        c->state_ = kBroken;
        c->retry_after_ = absl::InfinitePast();
        return c->Teardown(absl::StrCat(
            "service ", c->address_, " broke HTTP/2: ", nghttp2_strerror(static_cast<int>(used))));
      }
      evbuffer_drain(in, static_cast<size_t>(used));
    }
    c->Flush();
  }

 public:
  void Flush() {
    if (session_ == nullptr || bev_ == nullptr) return;
    for (;;) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      bufferevent_write(bev_, data, static_cast<size_t>(n));
    }
  }

 private:
  UpstreamPool* pool_;
  std::string address_, host_;
  int port_ = 0;
  State_ state_ = kIdle;
  bool draining_ = false;
  bufferevent* bev_ = nullptr;
  nghttp2_session* session_ = nullptr;
  event* ping_timer_ = nullptr;
  event* connect_timer_ = nullptr;
  bool ping_outstanding_ = false;
  std::string connect_error_;
  absl::Duration backoff_ = absl::ZeroDuration();
  absl::Time retry_after_ = absl::InfinitePast();
  std::map<int32_t, std::shared_ptr<State>> streams_;
  std::deque<std::shared_ptr<State>> waiting_;
  Headers header_block_;  // the header block being received (one at a time per connection)
};

UpstreamStream::~UpstreamStream() {
  if (state_ == nullptr) return;
  state_->sink = nullptr;
  if (!state_->closed && state_->connection != nullptr) state_->connection->Cancel(state_.get());
}

void UpstreamStream::Cancel() {
  if (state_ != nullptr && !state_->closed && state_->connection != nullptr)
    state_->connection->Cancel(state_.get());
}

UpstreamPool::UpstreamPool(EventLoop* loop, UpstreamOptions options)
    : loop_(loop), options_(std::move(options)) {
  dns_ = evdns_base_new(loop_->base(),
                        EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
}

UpstreamPool::~UpstreamPool() {
  alive_.reset();
  CloseAll();
  if (dns_ != nullptr) evdns_base_free(dns_, 0);
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

void UpstreamPool::CloseAll() {
  connections_.clear();
  retired_.clear();
}

UpstreamConnection* UpstreamPool::ConnectionFor(const std::string& address) {
  // Connections whose service is going away finish their streams in the retired list; drop the idle
  // ones.
  for (auto it = retired_.begin(); it != retired_.end();) {
    it = (*it)->Idle() ? retired_.erase(it) : std::next(it);
  }
  auto& c = connections_[address];
  if (c != nullptr && c->draining()) {
    retired_.push_back(std::move(c));
    c = nullptr;
  }
  if (c == nullptr) c = std::make_unique<UpstreamConnection>(this, address);
  return c.get();
}

std::unique_ptr<UpstreamStream> UpstreamPool::Start(const std::string& address, Headers headers,
                                                    std::string body, UpstreamSink* sink) {
  return Begin(address, std::move(headers), std::move(body), /*ended=*/true, sink);
}

std::unique_ptr<UpstreamStream> UpstreamPool::StartStreaming(const std::string& address,
                                                             Headers headers, UpstreamSink* sink) {
  return Begin(address, std::move(headers), "", /*ended=*/false, sink);
}

std::unique_ptr<UpstreamStream> UpstreamPool::Begin(const std::string& address, Headers headers,
                                                    std::string body, bool ended,
                                                    UpstreamSink* sink) {
  auto stream = std::unique_ptr<UpstreamStream>(new UpstreamStream());
  stream->state_ = std::make_shared<State>();
  State& s = *stream->state_;
  s.sink = sink;
  s.address = address;
  s.headers = std::move(headers);
  s.outbound = std::move(body);
  s.request_ended = ended;
  UpstreamConnection* c = ConnectionFor(address);
  if (!c->Usable(absl::Now())) {
    // Failed a moment ago: answer at once rather than queue behind a backoff.
    s.closed = true;
    loop_->Post([state = stream->state_, address] {
      if (state->sink != nullptr)
        state->sink->OnUpstreamClose(absl::StrCat("service ", address, " is unreachable"));
    });
    return stream;
  }
  s.streaming = !ended;
  c->Submit(stream->state_);
  return stream;
}

void UpstreamPool::Send(UpstreamStream& stream, std::string bytes, bool end) {
  State& s = *stream.state_;
  if (s.closed) return;
  s.outbound += bytes;
  s.request_ended = s.request_ended || end;
  if (s.connection != nullptr) s.connection->MoreData(&s);
}

ssl_ctx_st* UpstreamPool::TlsContext() {
  if (options_.tls_dir.empty()) return nullptr;
  const absl::Time now = absl::Now();
  if (tls_ != nullptr && now - tls_checked_ < absl::Seconds(60)) return tls_;
  tls_checked_ = now;
  // Renewed files (cert-manager rewrites them): a new context for new connections.
  int64_t stamp = 0;
  for (const char* f : {"/tls.crt", "/tls.key", "/ca.crt"}) {
    struct stat st;
    if (stat((options_.tls_dir + f).c_str(), &st) == 0)
      stamp ^= int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (tls_ != nullptr && stamp == tls_stamp_) return tls_;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  const bool loaded =
      SSL_CTX_use_certificate_chain_file(ctx, (options_.tls_dir + "/tls.crt").c_str()) == 1 &&
      SSL_CTX_use_PrivateKey_file(ctx, (options_.tls_dir + "/tls.key").c_str(), SSL_FILETYPE_PEM) ==
          1 &&
      SSL_CTX_load_verify_locations(ctx, (options_.tls_dir + "/ca.crt").c_str(), nullptr) == 1;
  if (!loaded) {
    SSL_CTX_free(ctx);
    log::Error("cannot load the TLS certificate for calls to the services; keeping the one in use",
               {{"tls_dir", options_.tls_dir}});
    return tls_;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn));
  if (tls_ != nullptr) SSL_CTX_free(tls_);  // connections hold their own reference
  tls_ = ctx;
  tls_stamp_ = stamp;
  return tls_;
}

}  // namespace crm::gateway
