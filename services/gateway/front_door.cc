#include "services/gateway/front_door.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <unordered_set>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "services/gateway/http2_callbacks.h"
#include "services/gateway/proxy_call.h"

namespace crm::gateway {

const std::string* Exchange::Head::Find(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

bool StreamCounter::Acquire(const std::string& principal, int limit) {
  absl::MutexLock lock(&mu_);
  int& n = open_[principal];
  if (n >= limit) return false;
  ++n;
  return true;
}

void StreamCounter::Release(const std::string& principal) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(principal);
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

namespace {

enum ListenerKind { kGrpcPort = 0, kHttpPort = 1, kHttpsPort = 2 };
constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kPrefaceLength = 24;
// A client that stops reading while we keep writing: past this much queued output the connection is
// dropped.
constexpr size_t kMaxQueuedOutput = 8 << 20;

std::string PeerIp(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, host, sizeof(host));
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, host, sizeof(host));
  }
  return host;
}

}  // namespace

class Connection;

// One event loop of the front door: its connections, its upstream pool, and the deferred work of
// its callbacks (writes are flushed, finished exchanges and closed connections freed, once per loop
// iteration).
struct LoopContext {
  LoopContext(FrontDoor* door, UpstreamOptions upstream)
      : door(door), pool(&loop, std::move(upstream)), own_server(&loop, {}) {}
  ~LoopContext();

  void ScheduleFlush(Connection* c);
  static void OnFlush(evutil_socket_t, short, void* self);

  FrontDoor* door;
  EventLoop loop;
  UpstreamPool pool;
  // To the gateway's own gRPC server (health, reflection): plaintext on loopback, whatever the
  // services speak.
  UpstreamPool own_server;
  event* flush_event = nullptr;
  std::vector<Connection*> dirty;
  std::unordered_set<Connection*> connections;
};

class Connection {
 public:
  Connection(LoopContext* ctx, bufferevent* bev, std::string peer_ip)
      : ctx_(ctx), bev_(bev), peer_ip_(std::move(peer_ip)), retire_at_(RetireTime(ctx)) {
    ctx_->connections.insert(this);
    timer_ = evtimer_new(ctx_->loop.base(), &Connection::OnTimer, this);
  }
  virtual ~Connection() {
    event_free(timer_);
    if (bev_ != nullptr) bufferevent_free(bev_);
    if (holds_ip_slot_) ctx_->door->ReleaseConnection(peer_ip_);
  }

  // Takes over `bev`'s callbacks.
  void Attach() {
    bufferevent_setcb(bev_, &Connection::OnReadCb, &Connection::OnWriteCb, &Connection::OnEventCb,
                      this);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
  }
  void ScheduleFlush() { ctx_->ScheduleFlush(this); }
  // Closes the connection at the next flush (exchanges are told first).
  void CloseSoon() {
    closing_ = true;
    ScheduleFlush();
  }
  bool closing() const { return closing_; }
  size_t QueuedOutput() const {
    return bev_ == nullptr ? 0 : evbuffer_get_length(bufferevent_get_output(bev_));
  }

  // Runs deferred work; returns false when the connection is to be freed.
  virtual bool Flush() = 0;
  // The front door is shutting down: stop taking calls, end streams.
  virtual void GoAway() = 0;
  // Tells every exchange its client is gone.
  virtual void AbortAll() = 0;

 protected:
  virtual void OnRead() = 0;
  virtual void OnTimeout() = 0;
  virtual void OnWritten() {}

  void Arm(absl::Duration after) {
    // Never past the retirement time, so an idle connection is retired on time too.
    const absl::Duration until_retired = retire_at_ - absl::Now();
    if (until_retired > absl::ZeroDuration()) after = std::min(after, until_retired);
    const timeval tv = absl::ToTimeval(after);
    evtimer_add(timer_, &tv);
  }
  // The connection has served its maximum age (FrontDoorOptions::max_connection_age).
  bool PastMaxAge() const { return absl::Now() >= retire_at_; }
  void Disarm() { evtimer_del(timer_); }

  // Gives the socket to `next` (which speaks the protocol this connection found out), and closes
  // itself without closing the socket; `next` reads what has arrived so far.
  void HandOver(Connection* next) {
    Disarm();
    holds_ip_slot_ = false;  // `next` holds this address's slot now
    next->Attach();
    bufferevent_trigger(bev_, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    bev_ = nullptr;
    CloseSoon();
  }

  LoopContext* ctx_;
  bufferevent* bev_;
  std::string peer_ip_;
  bool closing_ = false;
  bool holds_ip_slot_ = true;
  const absl::Time retire_at_;

 private:
  // Now plus the maximum age with ±10% jitter, so connections opened together (a client fleet
  // after a deploy) do not all reconnect at once.
  static absl::Time RetireTime(LoopContext* ctx) {
    const absl::Duration age = ctx->door->options().max_connection_age;
    if (age == absl::InfiniteDuration()) return absl::InfiniteFuture();
    thread_local absl::BitGen jitter;
    return absl::Now() + age * absl::Uniform(jitter, 0.9, 1.1);
  }

  static void OnReadCb(bufferevent*, void* self) { static_cast<Connection*>(self)->OnRead(); }
  static void OnWriteCb(bufferevent*, void* self) { static_cast<Connection*>(self)->OnWritten(); }
  static void OnEventCb(bufferevent*, short what, void* self) {
    auto* c = static_cast<Connection*>(self);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) c->CloseSoon();
  }
  static void OnTimer(evutil_socket_t, short, void* self) {
    static_cast<Connection*>(self)->OnTimeout();
  }

  event* timer_;
};

UpstreamPool& PoolOf(LoopContext* ctx) { return ctx->pool; }
UpstreamPool& OwnServerPoolOf(LoopContext* ctx) { return ctx->own_server; }
EventLoop& LoopOf(LoopContext* ctx) { return ctx->loop; }

LoopContext::~LoopContext() {
  if (flush_event != nullptr) event_free(flush_event);
}

void LoopContext::ScheduleFlush(Connection* c) {
  if (std::find(dirty.begin(), dirty.end(), c) == dirty.end()) dirty.push_back(c);
  event_active(flush_event, 0, 0);
}

void LoopContext::OnFlush(evutil_socket_t, short, void* self) {
  auto* ctx = static_cast<LoopContext*>(self);
  // Flushing may make other connections dirty (a call relayed between them): run until quiet.
  for (int round = 0; round < 8 && !ctx->dirty.empty(); ++round) {
    std::vector<Connection*> dirty;
    dirty.swap(ctx->dirty);
    for (Connection* c : dirty) {
      if (ctx->connections.count(c) == 0) continue;
      if (!c->Flush()) {
        c->AbortAll();
        ctx->connections.erase(c);
        delete c;
      }
    }
  }
  if (!ctx->dirty.empty()) event_active(ctx->flush_event, 0, 0);
}

// ----------------------------------------------------------------------------------------------
// HTTP/2

class H2Connection;

class H2Exchange : public Exchange {
 public:
  H2Exchange(H2Connection* conn, int32_t id) : conn_(conn), id_(id) { head_.http2 = true; }
  void Respond(int status, const Headers& headers, bool end) override;
  void Write(std::string data) override;
  void End(const Headers& trailers) override;
  void Abort() override;
  size_t Buffered() const override;

 private:
  friend class H2Connection;
  static ssize_t Read(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                      uint32_t* flags, nghttp2_data_source* source, void*);

  H2Connection* conn_;
  int32_t id_;
  std::string out_;
  size_t out_offset_ = 0;
  bool responded_ = false;
  bool ended_ = false;
  bool closed_ = false;  // the stream is closed: nothing more goes out
  bool dispatched_ = false;
  bool body_ended_ = false;
  Headers trailers_;
  absl::Time last_input_;
};

class H2Connection : public Connection {
 public:
  H2Connection(LoopContext* ctx, bufferevent* bev, std::string peer_ip)
      : Connection(ctx, bev, std::move(peer_ip)) {
    const Http2Callbacks cb = NewHttp2Callbacks({.on_begin_headers = &H2Connection::OnBeginHeaders,
                                                 .on_header = &H2Connection::OnHeader,
                                                 .on_frame_recv = &H2Connection::OnFrame,
                                                 .on_data_chunk_recv = &H2Connection::OnData,
                                                 .on_stream_close = &H2Connection::OnStreamClose});
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    // gRPC and Connect clients send no more than a few headers; a peer that floods them is refused
    // early.
    nghttp2_option_set_max_send_header_block_length(opt, 64 << 10);
    // The known HTTP/2 floods, bounded explicitly rather than by whatever the library defaults to:
    // rapid reset (CVE-2023-44487: a burst of 1000 RST_STREAMs, then 33/s, else GOAWAY),
    // CONTINUATION floods (CVE-2024-27316), SETTINGS and PING floods that make the server queue
    // acknowledgements.
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_session_server_new2(&session_, cb.get(), this, opt);
    nghttp2_option_del(opt);
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         static_cast<uint32_t>(ctx->door->options().max_concurrent_streams)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 << 10}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 3);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 8 << 20);
    Arm(ctx->door->options().idle_timeout);
  }
  ~H2Connection() override {
    exchanges_.clear();
    graveyard_.clear();
    nghttp2_session_del(session_);
  }

  nghttp2_session* session() { return session_; }

  void GoAway() override {
    if (goaway_sent_) return;
    goaway_sent_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    for (auto& [id, e] : exchanges_) {
      if (e->handler() != nullptr) static_cast<ProxyCallBase*>(e->handler())->OnShutdown();
    }
    ScheduleFlush();
  }

  // The maximum age is reached: no new streams (GOAWAY), the open ones run to their end, then the
  // connection closes (Flush, once nghttp2 has nothing left to read or write and the GOAWAY is
  // out: OnWritten).
  void Retire() {
    goaway_sent_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
  }
  void OnWritten() override {
    if (goaway_sent_) ScheduleFlush();
  }

  void AbortAll() override {
    for (auto& [id, e] : exchanges_) {
      if (!e->closed_ && e->handler() != nullptr) {
        e->closed_ = true;
        e->handler()->OnAbort();
      }
    }
  }

  bool Flush() override {
    graveyard_.clear();
    if (closing_) return false;
    for (;;) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) return false;
      if (n == 0) break;
      bufferevent_write(bev_, data, static_cast<size_t>(n));
    }
    if (QueuedOutput() > kMaxQueuedOutput) return false;
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
        QueuedOutput() == 0) {
      return false;
    }
    graveyard_.clear();
    return true;
  }

 protected:
  void OnRead() override {
    evbuffer* in = bufferevent_get_input(bev_);
    while (evbuffer_get_length(in) > 0) {
      evbuffer_iovec vec;
      if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
      const ssize_t used = nghttp2_session_mem_recv(
          session_, static_cast<const uint8_t*>(vec.iov_base), vec.iov_len);
      if (used < 0) {
        CloseSoon();
        return;
      }
      evbuffer_drain(in, static_cast<size_t>(used));
    }
    ScheduleFlush();
  }

  void OnTimeout() override {
    const absl::Time now = absl::Now();
    const FrontDoorOptions& o = ctx_->door->options();
    // Streams whose request stalled (slowloris over HTTP/2): reset.
    for (auto& [id, e] : exchanges_) {
      if (e->body_ended_ || e->closed_) continue;
      const absl::Duration limit = e->dispatched_ ? o.body_timeout : o.header_timeout;
      if (now - e->last_input_ > limit)
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    if (exchanges_.empty() && now - last_activity_ >= o.idle_timeout) {
      GoAway();
      CloseSoon();
      return;
    }
    if (!goaway_sent_ && PastMaxAge()) Retire();
    Arm(exchanges_.empty() ? o.idle_timeout : std::min(o.header_timeout, o.body_timeout) / 2);
    ScheduleFlush();
  }

 private:
  friend class H2Exchange;

  H2Exchange* Find(int32_t id) {
    auto it = exchanges_.find(id);
    return it == exchanges_.end() ? nullptr : it->second.get();
  }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self) {
    auto* c = static_cast<H2Connection*>(self);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (c->goaway_sent_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    auto e = std::make_unique<H2Exchange>(c, frame->hd.stream_id);
    e->head_.peer_ip = c->peer_ip_;
    e->last_input_ = absl::Now();
    c->exchanges_[frame->hd.stream_id] = std::move(e);
    c->last_activity_ = absl::Now();
    // Past the maximum age but not yet retired (this stream came before the timer fired): the
    // timer runs at once, retiring the connection once this stream counts as processed. Armed for
    // the stream's own timeouts instead, it would be put off again by every stream that follows,
    // and a busy connection would never be retired.
    const bool due = !c->goaway_sent_ && c->PastMaxAge();
    c->Arm(due ? absl::ZeroDuration()
               : std::min(c->ctx_->door->options().header_timeout,
                          c->ctx_->door->options().body_timeout) /
                     2);
    return 0;
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self) {
    H2Exchange* e = static_cast<H2Connection*>(self)->Find(frame->hd.stream_id);
    if (e == nullptr || e->dispatched_)
      return 0;  // trailers from a client: not used by any protocol here
    const absl::string_view n(reinterpret_cast<const char*>(name), namelen);
    const absl::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") {
      e->head_.method = std::string(v);
    } else if (n == ":path") {
      const size_t q = v.find('?');
      e->head_.path = std::string(v.substr(0, q));
      if (q != absl::string_view::npos) e->head_.query = std::string(v.substr(q + 1));
    } else if (!n.empty() && n[0] != ':') {
      e->head_.headers.emplace_back(std::string(n), std::string(v));
    }
    return 0;
  }

  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self) {
    auto* c = static_cast<H2Connection*>(self);
    H2Exchange* e = c->Find(frame->hd.stream_id);
    if (e == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !e->dispatched_) {
      e->dispatched_ = true;
      e->set_handler(MakeHandler(c->ctx_->door, c->ctx_, e));
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !e->body_ended_) {
      e->body_ended_ = true;
      if (e->handler() != nullptr) e->handler()->OnBodyEnd();
    }
    return 0;
  }

  static int OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                    void* self) {
    H2Exchange* e = static_cast<H2Connection*>(self)->Find(id);
    if (e == nullptr || e->handler() == nullptr) return 0;
    e->last_input_ = absl::Now();
    e->handler()->OnBody(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t id, uint32_t, void* self) {
    auto* c = static_cast<H2Connection*>(self);
    auto it = c->exchanges_.find(id);
    if (it == c->exchanges_.end()) return 0;
    std::unique_ptr<H2Exchange> e = std::move(it->second);
    c->exchanges_.erase(it);
    if (!e->closed_) {
      e->closed_ = true;
      // Closed before the response ended: the client reset it (or the connection is going).
      if (!e->ended_ && e->handler() != nullptr) e->handler()->OnAbort();
    }
    c->last_activity_ = absl::Now();
    c->graveyard_.push_back(std::move(e));  // freed at the next flush, outside any callback
    c->ScheduleFlush();
    return 0;
  }

  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<H2Exchange>> exchanges_;
  std::vector<std::unique_ptr<H2Exchange>> graveyard_;
  bool goaway_sent_ = false;
  absl::Time last_activity_ = absl::Now();
};

namespace {

std::vector<nghttp2_nv> ToNv(const std::string& status, const Headers& headers) {
  std::vector<nghttp2_nv> nv;
  static const std::string kStatus = ":status";
  if (!status.empty()) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(kStatus.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(status.data())), kStatus.size(),
                  status.size(), NGHTTP2_NV_FLAG_NONE});
  }
  for (const auto& [k, v] : headers) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

}  // namespace

void H2Exchange::Respond(int status, const Headers& headers, bool end) {
  if (closed_ || responded_) return;
  responded_ = true;
  const std::string code = absl::StrCat(status);
  std::vector<nghttp2_nv> nv = ToNv(code, headers);
  if (end) {
    ended_ = true;
    nghttp2_submit_response(conn_->session(), id_, nv.data(), nv.size(), nullptr);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = &H2Exchange::Read;
    nghttp2_submit_response(conn_->session(), id_, nv.data(), nv.size(), &provider);
  }
  conn_->ScheduleFlush();
}

void H2Exchange::Write(std::string data) {
  if (closed_ || ended_) return;
  if (out_offset_ == out_.size()) {
    out_ = std::move(data);
    out_offset_ = 0;
  } else {
    out_ += data;
  }
  nghttp2_session_resume_data(conn_->session(), id_);
  conn_->ScheduleFlush();
}

void H2Exchange::End(const Headers& trailers) {
  if (closed_ || ended_) return;
  ended_ = true;
  trailers_ = trailers;
  nghttp2_session_resume_data(conn_->session(), id_);
  conn_->ScheduleFlush();
}

void H2Exchange::Abort() {
  if (closed_) return;
  ended_ = true;
  nghttp2_submit_rst_stream(conn_->session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
  conn_->ScheduleFlush();
}

size_t H2Exchange::Buffered() const { return out_.size() - out_offset_ + conn_->QueuedOutput(); }

ssize_t H2Exchange::Read(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                         uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* e = static_cast<H2Exchange*>(source->ptr);
  const size_t n = std::min(length, e->out_.size() - e->out_offset_);
  std::memcpy(buf, e->out_.data() + e->out_offset_, n);
  e->out_offset_ += n;
  if (e->out_offset_ == e->out_.size()) {
    e->out_.clear();
    e->out_offset_ = 0;
    if (e->ended_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!e->trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nv = ToNv("", e->trailers_);
        nghttp2_submit_trailer(session, id, nv.data(), nv.size());
      }
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

// ----------------------------------------------------------------------------------------------
// HTTP/1.1

class H1Connection;

class H1Exchange : public Exchange {
 public:
  explicit H1Exchange(H1Connection* conn) : conn_(conn) {}
  void Respond(int status, const Headers& headers, bool end) override;
  void Write(std::string data) override;
  void End(const Headers& trailers) override;
  void Abort() override;
  size_t Buffered() const override;

 private:
  friend class H1Connection;
  H1Connection* conn_;
  bool responded_ = false;
  bool chunked_ = false;
  bool ended_ = false;
  bool aborted_ = false;
  bool body_ended_ = false;
};

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status >= 500 ? "Internal Server Error" : "Error";
  }
}

class H1Connection : public Connection {
 public:
  H1Connection(LoopContext* ctx, bufferevent* bev, std::string peer_ip)
      : Connection(ctx, bev, std::move(peer_ip)) {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    http_parser_settings_init(&settings_);
    settings_.on_message_begin = &H1Connection::OnMessageBegin;
    settings_.on_url = &H1Connection::OnUrl;
    settings_.on_header_field = &H1Connection::OnHeaderField;
    settings_.on_header_value = &H1Connection::OnHeaderValue;
    settings_.on_headers_complete = &H1Connection::OnHeadersComplete;
    settings_.on_body = &H1Connection::OnBody;
    settings_.on_message_complete = &H1Connection::OnMessageComplete;
    Arm(ctx->door->options().idle_timeout);
  }
  ~H1Connection() override { current_.reset(); }

  void GoAway() override {
    keep_alive_ = false;
    if (current_ == nullptr) {
      CloseSoon();
    } else if (current_->handler() != nullptr) {
      static_cast<ProxyCallBase*>(current_->handler())->OnShutdown();
    }
  }

  void AbortAll() override {
    if (current_ != nullptr && !current_->aborted_ && !current_->ended_ &&
        current_->handler() != nullptr) {
      current_->aborted_ = true;
      current_->handler()->OnAbort();
    }
  }

  bool Flush() override {
    if (closing_) return false;
    if (QueuedOutput() > kMaxQueuedOutput) return false;
    // The response is out and the request read: the next request on this connection may start.
    if (current_ != nullptr && current_->ended_ && current_->body_ended_) {
      current_.reset();
      if (!keep_alive_) {
        close_after_write_ = true;
      } else {
        http_parser_pause(&parser_, 0);
        Arm(ctx_->door->options().idle_timeout);
        Parse();
      }
    }
    if (close_after_write_ && QueuedOutput() == 0) return false;
    return !closing_;
  }

  void Send(const char* data, size_t n) { bufferevent_write(bev_, data, n); }
  void ResponseDone() { ScheduleFlush(); }

 protected:
  void OnRead() override {
    if (current_ != nullptr && current_->ended_ && !current_->body_ended_) {
      // Answered early (an error before the body): read and drop the rest of the request.
    }
    Parse();
    ScheduleFlush();
  }

  void OnWritten() override {
    if (close_after_write_ && QueuedOutput() == 0) CloseSoon();
  }

  void OnTimeout() override {
    // Idle between requests, headers too slow, or a body that stopped coming: the client is done.
    if (current_ != nullptr && current_->responded_ && !current_->ended_)
      return;  // a response is streaming
    if (current_ != nullptr && !current_->responded_ && current_->handler() != nullptr &&
        !current_->body_ended_) {
      current_->aborted_ = true;
      current_->handler()->OnAbort();
    }
    CloseSoon();
  }

 private:
  friend class H1Exchange;

  void Parse() {
    evbuffer* in = bufferevent_get_input(bev_);
    while (evbuffer_get_length(in) > 0 && !closing_) {
      if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) return;
      evbuffer_iovec vec;
      if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) return;
      const size_t used = http_parser_execute(&parser_, &settings_,
                                              static_cast<const char*>(vec.iov_base), vec.iov_len);
      evbuffer_drain(in, used);
      const http_errno err = HTTP_PARSER_ERRNO(&parser_);
      if (err == HPE_PAUSED) return;
      if (err != HPE_OK) {
        if (current_ == nullptr || !current_->responded_) {
          const std::string body =
              absl::StrCat("malformed HTTP/1.1 request: ", http_errno_description(err), "\n");
          Reply(400, body);
        }
        close_after_write_ = true;
        return;
      }
      if (used < vec.iov_len) return;
    }
  }

  // A bare reply from the connection itself (no exchange): malformed input, headers too large.
  void Reply(int status, const std::string& body) {
    const std::string head =
        absl::StrCat("HTTP/1.1 ", status, " ", Reason(status),
                     "\r\nContent-Type: text/plain\r\nContent-Length: ", body.size(),
                     "\r\nConnection: close\r\n\r\n");
    Send(head.data(), head.size());
    Send(body.data(), body.size());
  }

  static H1Connection* Of(http_parser* p) { return static_cast<H1Connection*>(p->data); }

  static int OnMessageBegin(http_parser* p) {
    H1Connection* c = Of(p);
    c->current_ = std::make_unique<H1Exchange>(c);
    c->current_->head_.peer_ip = c->peer_ip_;
    c->url_.clear();
    c->field_.clear();
    c->header_bytes_ = 0;
    c->Arm(c->ctx_->door->options().header_timeout);
    return 0;
  }
  static int OnUrl(http_parser* p, const char* at, size_t n) {
    H1Connection* c = Of(p);
    c->url_.append(at, n);
    return c->CountHeader(n);
  }
  static int OnHeaderField(http_parser* p, const char* at, size_t n) {
    H1Connection* c = Of(p);
    c->EndHeaderLine();
    c->field_.append(at, n);
    return c->CountHeader(n);
  }
  static int OnHeaderValue(http_parser* p, const char* at, size_t n) {
    H1Connection* c = Of(p);
    c->in_value_ = true;
    c->value_.append(at, n);
    return c->CountHeader(n);
  }
  // The header whose value was being read is complete (a new field starts, or the headers end).
  void EndHeaderLine() {
    if (!in_value_) return;
    current_->head_.headers.emplace_back(absl::AsciiStrToLower(field_), std::move(value_));
    field_.clear();
    value_.clear();
    in_value_ = false;
  }
  int CountHeader(size_t n) {
    header_bytes_ += n;
    return header_bytes_ > (64 << 10) ? 1 : 0;  // headers over 64 KiB: refused as malformed
  }
  static int OnHeadersComplete(http_parser* p) {
    H1Connection* c = Of(p);
    c->EndHeaderLine();
    Exchange::Head& head = c->current_->head_;
    head.method = http_method_str(static_cast<http_method>(p->method));
    const size_t q = c->url_.find('?');
    head.path = c->url_.substr(0, q);
    if (q != std::string::npos) head.query = c->url_.substr(q + 1);
    // Past its maximum age the connection answers this request with `connection: close`.
    c->keep_alive_ = http_should_keep_alive(p) && c->keep_alive_ && !c->PastMaxAge();
    c->Arm(c->ctx_->door->options().body_timeout);
    c->current_->set_handler(MakeHandler(c->ctx_->door, c->ctx_, c->current_.get()));
    return 0;
  }
  static int OnBody(http_parser* p, const char* at, size_t n) {
    H1Connection* c = Of(p);
    c->Arm(c->ctx_->door->options().body_timeout);
    if (c->current_->handler() != nullptr && !c->current_->aborted_)
      c->current_->handler()->OnBody(at, n);
    return 0;
  }
  static int OnMessageComplete(http_parser* p) {
    H1Connection* c = Of(p);
    c->Disarm();
    c->current_->body_ended_ = true;
    if (c->current_->handler() != nullptr && !c->current_->aborted_)
      c->current_->handler()->OnBodyEnd();
    // One request at a time: the next one (pipelined) waits until this response is out.
    http_parser_pause(p, 1);
    c->ScheduleFlush();
    return 0;
  }

  http_parser parser_;
  http_parser_settings settings_;
  std::unique_ptr<H1Exchange> current_;
  std::string url_, field_, value_;
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  bool keep_alive_ = true;
  bool close_after_write_ = false;
};

void H1Exchange::Respond(int status, const Headers& headers, bool end) {
  if (aborted_ || responded_) return;
  responded_ = true;
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", Reason(status), "\r\n");
  bool has_length = false;
  for (const auto& [k, v] : headers) {
    if (k == "content-length") has_length = true;
    absl::StrAppend(&out, k, ": ", v, "\r\n");
  }
  if (end) {
    if (!has_length) out += "content-length: 0\r\n";
  } else if (!has_length) {
    chunked_ = true;
    out += "transfer-encoding: chunked\r\n";
  }
  if (!conn_->keep_alive_) out += "connection: close\r\n";
  out += "\r\n";
  conn_->Send(out.data(), out.size());
  if (end) {
    ended_ = true;
    conn_->ResponseDone();
  }
}

void H1Exchange::Write(std::string data) {
  if (aborted_ || ended_ || data.empty()) return;
  if (chunked_) {
    const std::string size = absl::StrCat(absl::Hex(data.size()), "\r\n");
    conn_->Send(size.data(), size.size());
    conn_->Send(data.data(), data.size());
    conn_->Send("\r\n", 2);
  } else {
    conn_->Send(data.data(), data.size());
  }
}

void H1Exchange::End(const Headers&) {
  if (aborted_ || ended_) return;
  ended_ = true;
  if (chunked_) conn_->Send("0\r\n\r\n", 5);
  conn_->ResponseDone();
}

void H1Exchange::Abort() {
  if (aborted_) return;
  aborted_ = true;
  ended_ = true;
  conn_->CloseSoon();
}

size_t H1Exchange::Buffered() const { return conn_->QueuedOutput(); }

// ----------------------------------------------------------------------------------------------
// accepting

// Decides what a connection on the HTTP port speaks from its first bytes: the HTTP/2 preface, or
// HTTP/1.1.
class Sniffer : public Connection {
 public:
  Sniffer(LoopContext* ctx, bufferevent* bev, std::string peer_ip)
      : Connection(ctx, bev, std::move(peer_ip)) {
    Arm(ctx->door->options().idle_timeout);
  }
  void GoAway() override { CloseSoon(); }
  void AbortAll() override {}
  bool Flush() override { return !closing_; }

 protected:
  void OnRead() override {
    evbuffer* in = bufferevent_get_input(bev_);
    char peek[kPrefaceLength];
    const size_t n = std::min(evbuffer_get_length(in), kPrefaceLength);
    evbuffer_copyout(in, peek, n);
    if (n < kPrefaceLength && std::memcmp(peek, kPreface, n) == 0)
      return;  // maybe the preface: wait for more
    const bool h2 = n == kPrefaceLength && std::memcmp(peek, kPreface, kPrefaceLength) == 0;
    if (h2) {
      HandOver(new H2Connection(ctx_, bev_, peer_ip_));
    } else {
      HandOver(new H1Connection(ctx_, bev_, peer_ip_));
    }
  }
  void OnTimeout() override { CloseSoon(); }
};

// TLS: the handshake decides by ALPN.
class TlsAcceptor : public Connection {
 public:
  TlsAcceptor(LoopContext* ctx, bufferevent* bev, std::string peer_ip)
      : Connection(ctx, bev, std::move(peer_ip)) {
    bufferevent_setcb(bev_, nullptr, nullptr, &TlsAcceptor::OnEvent, this);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    Arm(ctx->door->options().header_timeout);
  }
  void GoAway() override { CloseSoon(); }
  void AbortAll() override {}
  bool Flush() override { return !closing_; }

 protected:
  void OnRead() override {}
  void OnTimeout() override { CloseSoon(); }

 private:
  static void OnEvent(bufferevent* bev, short what, void* self) {
    auto* t = static_cast<TlsAcceptor*>(self);
    if (!(what & BEV_EVENT_CONNECTED)) return t->CloseSoon();
    const unsigned char* alpn = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(bev), &alpn, &len);
    if (len == 2 && std::memcmp(alpn, "h2", 2) == 0) {
      t->HandOver(new H2Connection(t->ctx_, t->bev_, t->peer_ip_));
    } else {
      t->HandOver(new H1Connection(t->ctx_, t->bev_, t->peer_ip_));
    }
  }
};

// One loop's listening socket on a port: the loop it accepts on, the protocols the port speaks,
// and libevent's listener (null once Shutdown closed it).
struct Listener {
  LoopContext* ctx;
  ListenerKind kind;
  evconnlistener* listener = nullptr;
};

namespace {

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kProtocols[] = {2,   'h', '2', 8,   'h', 't',
                                             't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kProtocols, sizeof(kProtocols), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int, void* arg) {
  auto* a = static_cast<Listener*>(arg);
  LoopContext* ctx = a->ctx;
  FrontDoor* door = ctx->door;
  const std::string ip = PeerIp(sa);
  if (door->shutting_down() || !door->AdmitConnection(ip)) {
    evutil_closesocket(fd);  // over the per-address cap: refused before it costs anything
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Connection* c = nullptr;
  if (a->kind == kHttpsPort) {
    SSL* ssl = SSL_new(door->tls());
    bufferevent* bev = bufferevent_openssl_socket_new(
        ctx->loop.base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    new TlsAcceptor(ctx, bev, ip);  // it sets its own callbacks; the loop's connection set owns it
    return;
  }
  bufferevent* bev = bufferevent_socket_new(ctx->loop.base(), fd, BEV_OPT_CLOSE_ON_FREE);
  if (a->kind == kGrpcPort) {
    c = new H2Connection(ctx, bev, ip);
  } else {
    c = new Sniffer(ctx, bev, ip);
  }
  c->Attach();
}

// A listen address ("host:port", "[v6]:port", "localhost:port") as a socket address.
struct ListenAddress {
  sockaddr_storage ss{};
  int len = 0;
};
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" needs host:port"));
  std::string host = address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int wanted = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &wanted)) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\": the port is not a number"));
  }
  if (host == "localhost") host = "127.0.0.1";
  ListenAddress out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(wanted));
    out.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(wanted));
    out.len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not an IP address and port"));
  }
  return out;
}

// Why `local` cannot be listened on (an errno), or 0. The front door's own listeners share their
// port (SO_REUSEPORT, one per loop), and the kernel would just as gladly let another process of the
// same user into that group: a second gateway started on a busy port would come up and take a share
// of its connections. A plain bind (no SO_REUSEPORT) fails while anything listens there, and names
// other reasons too (an address not of this host, a privileged port); SO_REUSEADDR keeps the closed
// connections of a gateway just restarted (TIME_WAIT) from counting. Port 0 is always free.
int CannotListen(const ListenAddress& local) {
  if (reinterpret_cast<const sockaddr_in*>(&local.ss)->sin_port == 0) return 0;  // same for v6
  const int fd = socket(local.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  const int error =
      bind(fd, reinterpret_cast<const sockaddr*>(&local.ss), local.len) == 0 ? 0 : errno;
  close(fd);
  return error;
}

// The port a listener got (for a listen address with port 0).
int BoundPort(evconnlistener* l) {
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(evconnlistener_get_fd(l), reinterpret_cast<sockaddr*>(&bound), &blen);
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

}  // namespace

FrontDoor::FrontDoor(Gateway* gateway, FrontDoorOptions options)
    : gateway_(gateway), options_(std::move(options)) {}

FrontDoor::~FrontDoor() { Stop(); }

void FrontDoor::SetInternalAddress(std::string address) {
  absl::MutexLock lock(&internal_mu_);
  internal_address_ = std::move(address);
}

std::string FrontDoor::internal_address() {
  absl::MutexLock lock(&internal_mu_);
  return internal_address_;
}

bool FrontDoor::AdmitConnection(const std::string& ip) {
  absl::MutexLock lock(&ip_mu_);
  int& n = per_ip_[ip];
  if (n >= options_.max_connections_per_ip) {
    if (n == 0) per_ip_.erase(ip);
    return false;
  }
  ++n;
  return true;
}

void FrontDoor::ReleaseConnection(const std::string& ip) {
  absl::MutexLock lock(&ip_mu_);
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
}

absl::Status FrontDoor::Listen(const std::string& address, int kind, int* port) {
  CRM_ASSIGN_OR_RETURN(ListenAddress local, ParseListenAddress(address));
  if (const int error = CannotListen(local); error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, " (", std::strerror(error), ")"));
  }
  // One listener per loop on the same port (SO_REUSEPORT): the kernel spreads new connections over
  // the loops.
  for (auto& ctx : loops_) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&local.ss);
    if (*port != 0)
      sin->sin_port = htons(static_cast<uint16_t>(*port));  // the port the first loop got
    auto listening =
        std::make_unique<Listener>(Listener{ctx.get(), static_cast<ListenerKind>(kind)});
    evconnlistener* l =
        evconnlistener_new_bind(ctx->loop.base(), &OnAccept, listening.get(),
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                                    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_THREADSAFE,
                                4096, reinterpret_cast<sockaddr*>(&local.ss), local.len);
    if (l == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", address, " (address in use?)"));
    }
    listening->listener = l;
    listeners_.push_back(std::move(listening));
    if (*port == 0) *port = BoundPort(l);
  }
  return absl::OkStatus();
}

absl::Status FrontDoor::Start() {
  // Idle connections are cheap here, but each needs a descriptor: take all the process may have.
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (!options_.tls_dir.empty()) {
    tls_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(tls_, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(tls_, (options_.tls_dir + "/tls.crt").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls_, (options_.tls_dir + "/tls.key").c_str(),
                                    SSL_FILETYPE_PEM) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--front_tls_dir: cannot load tls.crt and tls.key from ", options_.tls_dir));
    }
    SSL_CTX_set_alpn_select_cb(tls_, &SelectAlpn, nullptr);
  }
  UpstreamOptions upstream;
  upstream.tls_dir = options_.upstream_tls_dir;
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    auto ctx = std::make_unique<LoopContext>(this, upstream);
    ctx->flush_event = event_new(ctx->loop.base(), -1, 0, &LoopContext::OnFlush, ctx.get());
    loops_.push_back(std::move(ctx));
  }
  CRM_RETURN_IF_ERROR(Listen(options_.grpc_listen, kGrpcPort, &grpc_port_));
  if (!options_.http_listen.empty()) {
    CRM_RETURN_IF_ERROR(Listen(options_.http_listen, kHttpPort, &http_port_));
  }
  if (!options_.https_listen.empty()) {
    if (tls_ == nullptr) return absl::InvalidArgumentError("--https_listen needs --front_tls_dir");
    CRM_RETURN_IF_ERROR(Listen(options_.https_listen, kHttpsPort, &https_port_));
  }
  for (auto& ctx : loops_) ctx->loop.Start();
  loops_running_ = true;
  return absl::OkStatus();
}

void FrontDoor::Shutdown(absl::Duration grace) {
  if (shutting_down_.exchange(true)) return;
  const absl::Time until = absl::Now() + grace;
  // Each loop closes its own listeners, so new connections are refused (a client retries another
  // replica) rather than left in the backlog until Stop resets them. From another thread,
  // libevent's disable or free waits for an accept the loop is running, and that accept waits for
  // the listener's lock, which the caller holds: a connection arriving as the gateway shut down
  // hung the shutdown.
  // Shared with the posted tasks, which outlive a wait that gave up.
  std::vector<std::shared_ptr<absl::Notification>> closed;
  for (auto& ctx : loops_) {
    LoopContext* c = ctx.get();
    auto done = closed.emplace_back(std::make_shared<absl::Notification>());
    auto stop_accepting = [this, c, done] {
      for (const auto& l : listeners_) {
        if (l->ctx == c && l->listener != nullptr) {
          evconnlistener_free(l->listener);
          l->listener = nullptr;
        }
      }
      for (Connection* conn : c->connections) conn->GoAway();
      done->Notify();
    };
    // No loop runs after a failed start; on its own loop the task would wait behind this call.
    if (!loops_running_ || c->loop.InLoopThread()) {
      stop_accepting();
    } else {
      c->loop.Post(stop_accepting);
    }
  }
  // At least a second, so a zero drain does not warn about loops that are about to.
  const absl::Time closing_deadline = std::max(until, absl::Now() + absl::Seconds(1));
  for (const auto& done : closed) {
    if (!done->WaitForNotificationWithDeadline(closing_deadline)) {
      log::Warning("front door: an event loop did not stop accepting within the drain");
      break;
    }
  }
  while (in_flight_.load() > 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
}

void FrontDoor::Stop() {
  if (stopped_) return;
  stopped_ = true;
  shutting_down_ = true;
  for (auto& ctx : loops_) {
    LoopContext* c = ctx.get();
    c->loop.Post([c] {
      for (Connection* conn : c->connections) conn->AbortAll();
      for (Connection* conn : c->connections) delete conn;
      c->connections.clear();
      c->pool.CloseAll();
      c->own_server.CloseAll();
    });
    c->loop.Stop();
  }
  for (const auto& l : listeners_) {
    if (l->listener != nullptr) evconnlistener_free(l->listener);  // else closed by Shutdown
  }
  listeners_.clear();
  loops_.clear();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
  tls_ = nullptr;
}

}  // namespace crm::gateway
