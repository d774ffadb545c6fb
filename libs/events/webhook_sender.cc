#include "libs/events/webhook_sender.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "libs/api/validate.h"
#include "libs/auth/internal_keys.h"
#include "libs/base/status_macros.h"

namespace crm::events {
namespace {

constexpr absl::string_view kSecretPrefix = "whsec_";
constexpr size_t kMaxUrlChars = 2000;
constexpr size_t kBodyStartChars = 200;

bool HostChar(char c, bool ipv6) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         (ipv6 && c == ':');
}

bool IsIpLiteral(const std::string& host) {
  if (host.find(':') != std::string::npos) return true;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return c == '.' || absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// The shared TLS client settings: the system's CA store, TLS 1.2 or newer, peer verified.
SSL_CTX* ClientTlsContext() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_default_verify_paths(c);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    return c;
  }();
  return ctx;
}

struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct ConnectionFree {
  void operator()(evhttp_connection* c) const { evhttp_connection_free(c); }
};
struct EventFree {
  void operator()(event* e) const { event_free(e); }
};

// One POST while its loop runs.
struct Exchange {
  event_base* base = nullptr;
  bufferevent* tls = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  absl::Time deadline;
  bool done = false;
  WebhookAnswer answer;
};

const char* RequestErrorName(evhttp_request_error e) {
  switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timed out";
    case EVREQ_HTTP_EOF: return "connection closed before an answer";
    case EVREQ_HTTP_INVALID_HEADER: return "answer with an invalid header";
    case EVREQ_HTTP_BUFFER_ERROR: return "connection error";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "answer too long";
  }
  return "error";
}

std::string TlsError(bufferevent* tls) {
  if (tls == nullptr) return "";
  const unsigned long e = bufferevent_get_openssl_error(tls);
  if (e == 0) return "";
  char text[256];
  ERR_error_string_n(e, text, sizeof(text));
  return absl::StrCat(" (TLS: ", text, ")");
}

void OnRequestError(evhttp_request_error error, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  x->answer.error = absl::StrCat(RequestErrorName(error), TlsError(x->tls));
}

void OnAnswer(evhttp_request* req, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  x->done = true;
  const int status = req == nullptr ? 0 : evhttp_request_get_response_code(req);
  if (status == 0) {
    if (x->answer.error.empty()) {
      x->answer.error = absl::StrCat("connection refused or closed", TlsError(x->tls));
    }
  } else {
    x->answer.status = status;
    x->answer.error.clear();
    evbuffer* in = evhttp_request_get_input_buffer(req);
    std::string start(std::min(evbuffer_get_length(in), kBodyStartChars), '\0');
    evbuffer_copyout(in, start.data(), start.size());
    for (char c : start) {
      if (c >= 0x20 && c < 0x7f) x->answer.body_start.push_back(c);
    }
  }
  event_base_loopbreak(x->base);
}

void OnTick(evutil_socket_t, short, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  if (x->cancel != nullptr && x->cancel->load()) {
    x->answer.error = "cancelled (stopping)";
    event_base_loopbreak(x->base);
  } else if (absl::Now() >= x->deadline) {
    x->answer.error = "timed out";
    event_base_loopbreak(x->base);
  }
}

std::string HostHeader(const WebhookUrl& url) {
  const std::string host =
      url.host.find(':') != std::string::npos ? absl::StrCat("[", url.host, "]") : url.host;
  const bool default_port = url.port == (url.https ? 443 : 80);
  return default_port ? host : absl::StrCat(host, ":", url.port);
}

// A TLS bufferevent that checks the server's certificate names `host`; null on failure.
bufferevent* NewTlsBufferevent(event_base* base, const std::string& host) {
  SSL* ssl = SSL_new(ClientTlsContext());
  if (ssl == nullptr) return nullptr;
  if (IsIpLiteral(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());
  }
  bufferevent* bev = bufferevent_openssl_socket_new(
      base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (bev == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  // Many servers close without a TLS close_notify; the HTTP answer is complete by then.
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

// A URL's host[:port] or [IPv6 address][:port], split but with the port not yet read.
struct UrlAuthority {
  absl::string_view host;  // an IPv6 address without its brackets
  absl::string_view port;  // empty when not given
};

// INVALID_ARGUMENT naming `field` when `authority` holds a user name or password, has no host or
// one with characters a host name or address cannot have.
absl::StatusOr<UrlAuthority> ParseAuthority(absl::string_view field, absl::string_view authority) {
  if (authority.find('@') != absl::string_view::npos) {
    return api::Invalid(field, "must not hold a user name or password");
  }
  UrlAuthority out{authority, {}};
  const bool ipv6 = absl::StartsWith(authority, "[");
  if (ipv6) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return api::Invalid(field, "has an unclosed [");
    out.host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return api::Invalid(field, "has text after ]");
      out.port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
    out.host = authority.substr(0, colon);
    out.port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return api::Invalid(field, "has no host");
  for (char c : out.host) {
    if (!HostChar(c, ipv6)) return api::Invalid(field, "has a host with characters not allowed");
  }
  return out;
}

}  // namespace

absl::StatusOr<WebhookUrl> ParseWebhookUrl(absl::string_view field, absl::string_view url) {
  if (url.empty()) return api::Invalid(field, "must not be empty");
  if (url.size() > kMaxUrlChars) {
    return api::Invalid(field, absl::StrCat("longer than ", kMaxUrlChars, " characters"));
  }
  for (char c : url) {
    if (c <= 0x20 || c >= 0x7f) {
      return api::Invalid(field,
                          "has spaces, control or non-ASCII characters (percent-encode them)");
    }
  }
  WebhookUrl out;
  absl::string_view rest = url;
  const std::string lower_start = absl::AsciiStrToLower(url.substr(0, 8));
  if (absl::StartsWith(lower_start, "https://")) {
    out.https = true;
    rest.remove_prefix(8);
  } else if (absl::StartsWith(lower_start, "http://")) {
    rest.remove_prefix(7);
  } else {
    return api::Invalid(field, "must start with http:// or https://");
  }
  if (rest.find('#') != absl::string_view::npos) return api::Invalid(field, "has a fragment (#)");
  const size_t authority_end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, authority_end);
  absl::string_view target =
      authority_end == absl::string_view::npos ? "" : rest.substr(authority_end);
  CRM_ASSIGN_OR_RETURN(const UrlAuthority parts, ParseAuthority(field, authority));
  out.host = absl::AsciiStrToLower(parts.host);
  out.port = out.https ? 443 : 80;
  if (!parts.port.empty() &&
      (!absl::SimpleAtoi(parts.port, &out.port) || out.port < 1 || out.port > 65535)) {
    return api::Invalid(field, "has a port that is not 1-65535");
  }
  out.target = target.empty()     ? "/"
               : target[0] == '?' ? absl::StrCat("/", target)
                                  : std::string(target);
  return out;
}

std::string WebhookSecretFromKey(absl::string_view key) {
  return absl::StrCat(kSecretPrefix, absl::Base64Escape(key));
}

absl::StatusOr<std::string> WebhookKeyFromSecret(absl::string_view secret) {
  std::string key;
  if (!absl::ConsumePrefix(&secret, kSecretPrefix) || !absl::Base64Unescape(secret, &key) ||
      key.empty()) {
    return absl::InvalidArgumentError("a webhook secret is \"whsec_\" and base64");
  }
  return key;
}

std::string SignWebhook(absl::string_view key, absl::string_view id, int64_t unix_seconds,
                        absl::string_view body) {
  return absl::StrCat("v1,", absl::Base64Escape(auth::HmacSha256(
                                 key, absl::StrCat(id, ".", unix_seconds, ".", body))));
}

std::string WebhookDestination(absl::string_view webhook_id) {
  return absl::StrCat("webhook:", webhook_id);
}

WebhookPost WebhookPostOf(const WebhookTarget& target, const v1::Event& event,
                          int64_t unix_seconds) {
  v1::Event outside = event;
  outside.clear_traceparent();
  WebhookPost post;
  post.url = target.url;
  post.id = event.event_id();
  post.unix_seconds = unix_seconds;
  // Printing a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(outside, &post.body);
  post.signature = SignWebhook(target.key, post.id, unix_seconds, post.body);
  return post;
}

WebhookAnswer PostWebhook(const WebhookPost& post, absl::Duration timeout,
                          const std::atomic<bool>* cancel) {
  Exchange x;
  x.cancel = cancel;
  x.deadline = absl::Now() + timeout;
  std::unique_ptr<event_base, EventBaseFree> base(event_base_new());
  if (base == nullptr) return WebhookAnswer{0, "no event loop", ""};
  x.base = base.get();
  if (post.url.https) {
    x.tls = NewTlsBufferevent(base.get(), post.url.host);
    if (x.tls == nullptr) return WebhookAnswer{0, "TLS set-up failed", ""};
  }
  // With a bufferevent the connection owns it (and frees it with itself).
  std::unique_ptr<evhttp_connection, ConnectionFree> conn(evhttp_connection_base_bufferevent_new(
      base.get(), nullptr, x.tls, post.url.host.c_str(), static_cast<uint16_t>(post.url.port)));
  if (conn == nullptr) return WebhookAnswer{0, "connection set-up failed", ""};
  const timeval tv = absl::ToTimeval(timeout);
  evhttp_connection_set_timeout_tv(conn.get(), &tv);
  // A receiver has nothing long to say; a huge answer must not cost this process memory.
  evhttp_connection_set_max_headers_size(conn.get(), 16 << 10);
  evhttp_connection_set_max_body_size(conn.get(), 64 << 10);
  evhttp_request* req = evhttp_request_new(OnAnswer, &x);
  evhttp_request_set_error_cb(req, OnRequestError);
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  const std::string host = HostHeader(post.url);
  const std::string timestamp = absl::StrCat(post.unix_seconds);
  const std::string length = absl::StrCat(post.body.size());
  evhttp_add_header(headers, "Host", host.c_str());
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "Content-Length", length.c_str());
  evhttp_add_header(headers, "User-Agent", "crm-webhooks/1");
  evhttp_add_header(headers, "Connection", "close");
  evhttp_add_header(headers, "webhook-id", post.id.c_str());
  evhttp_add_header(headers, "webhook-timestamp", timestamp.c_str());
  evhttp_add_header(headers, "webhook-signature", post.signature.c_str());
  evbuffer_add(evhttp_request_get_output_buffer(req), post.body.data(), post.body.size());
  if (evhttp_make_request(conn.get(), req, EVHTTP_REQ_POST, post.url.target.c_str()) != 0) {
    return WebhookAnswer{0, "request not sent", ""};
  }
  std::unique_ptr<event, EventFree> tick(event_new(base.get(), -1, EV_PERSIST, OnTick, &x));
  const timeval every = absl::ToTimeval(absl::Milliseconds(50));
  event_add(tick.get(), &every);
  event_base_dispatch(base.get());
  if (!x.done && x.answer.error.empty()) x.answer.error = "no answer";
  // Order matters: the request (owned by the connection) before the loop.
  tick.reset();
  conn.reset();
  return x.answer;
}

}  // namespace crm::events
