#include "libs/notify/smtp_sender.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "libs/api/validate.h"

namespace crm::notify {
namespace {

// An encoded word may be 75 characters (RFC 2047); "=?UTF-8?B?" + "?=" leave 63 for base64, so 45
// bytes of text (60 base64 characters) per word.
constexpr size_t kEncodedWordBytes = 45;
// RFC 2045's base64 line length.
constexpr size_t kBase64LineChars = 76;

bool IsPlainAddress(absl::string_view address) {
  const size_t at = address.rfind('@');
  if (at == absl::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  if (address.size() > 254) return false;
  for (const char c : address) {
    // No spaces, controls, brackets or quotes: the address goes into headers and the envelope
    // as it is.
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' ||
        c == '(' || c == ')' || c == ',' || c == ';' || c == '\\' || c == '[' || c == ']') {
      return false;
    }
  }
  return true;
}

// Control characters (CR and LF above all: a header must not be split) become spaces.
std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = ' ';
  }
  return out;
}

bool NeedsEncoding(absl::string_view text) {
  if (text.size() > 900 || absl::StrContains(text, "=?")) return true;
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// Length of the longest prefix of `text`, at most `limit` bytes, that does not end inside a UTF-8
// sequence.
size_t WholeCharacters(absl::string_view text, size_t limit) {
  if (text.size() <= limit) return text.size();
  size_t n = limit;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return n == 0 ? limit : n;
}

// "Subject: " + the subject, as encoded words folded one per line when it is not plain ASCII.
std::string SubjectHeader(absl::string_view subject) {
  const std::string text = OneLine(subject);
  if (!NeedsEncoding(text)) return absl::StrCat("Subject: ", text, "\r\n");
  std::string out = "Subject:";
  absl::string_view rest = text;
  while (!rest.empty()) {
    const size_t n = WholeCharacters(rest, kEncodedWordBytes);
    absl::StrAppend(&out, out.size() > 8 ? "\r\n " : " ", "=?UTF-8?B?",
                    absl::Base64Escape(rest.substr(0, n)), "?=");
    rest.remove_prefix(n);
  }
  if (text.empty()) absl::StrAppend(&out, " ");
  absl::StrAppend(&out, "\r\n");
  return out;
}

// The body in its canonical form (CRLF line ends), base64 in lines of 76.
std::string BodyBase64(absl::string_view body) {
  std::string canonical;
  canonical.reserve(body.size() + body.size() / 32);
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) canonical += '\r';
    canonical += body[i];
  }
  const std::string encoded = absl::Base64Escape(canonical);
  std::string out;
  for (size_t i = 0; i < encoded.size(); i += kBase64LineChars) {
    absl::StrAppend(&out, absl::string_view(encoded).substr(i, kBase64LineChars), "\r\n");
  }
  return out;
}

// Reads the message into libcurl's upload.
struct Upload {
  absl::string_view rest;
};
size_t ReadUpload(char* buffer, size_t size, size_t count, void* user) {
  Upload* upload = static_cast<Upload*>(user);
  const size_t n = std::min(size * count, upload->rest.size());
  std::memcpy(buffer, upload->rest.data(), n);
  upload->rest.remove_prefix(n);
  return n;
}

// The server's reply lines (libcurl tells a reply's code, not its words); the most recent last,
// a bounded few.
struct Replies {
  std::vector<std::string> lines;

  // The latest line with `code` (the reply that ended the exchange: a QUIT's 221 may follow it),
  // else the latest line.
  std::string With(long code) const {
    const std::string prefix = absl::StrCat(code);
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
      if (absl::StartsWith(*it, prefix)) return *it;
    }
    return lines.empty() ? "" : lines.back();
  }
};
int KeepReply(CURL*, curl_infotype type, char* data, size_t size, void* user) {
  if (type != CURLINFO_HEADER_IN) return 0;
  Replies* replies = static_cast<Replies*>(user);
  const absl::string_view line = absl::StripTrailingAsciiWhitespace(absl::string_view(data, size));
  if (line.empty()) return 0;
  if (replies->lines.size() == 16) replies->lines.erase(replies->lines.begin());
  replies->lines.emplace_back(line.substr(0, 300));
  return 0;
}

struct EasyCleanup {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct ListFree {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string ServerUrl(const SmtpOptions& options) {
  const std::string host =
      absl::StrContains(options.host, ':') ? absl::StrCat("[", options.host, "]") : options.host;
  return absl::StrCat(options.tls == SmtpOptions::Tls::kImplicit ? "smtps://" : "smtp://", host,
                      ":", options.port);
}

}  // namespace

std::string SmtpMessageId(absl::string_view from, absl::string_view notification_id) {
  // Letters, digits, '-' and '_' as they are; anything else as =XX, so distinct ids stay distinct
  // and the result is a dot-atom.
  std::string local;
  for (const char c : notification_id) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_') {
      local += c;
    } else {
      absl::StrAppendFormat(&local, "=%02X", static_cast<unsigned char>(c));
    }
  }
  if (local.empty()) local = "none";
  const size_t at = from.rfind('@');
  const absl::string_view domain =
      at == absl::string_view::npos ? "localhost" : from.substr(at + 1);
  return absl::StrCat("<", local, "@", domain, ">");
}

absl::StatusOr<std::string> SmtpMessageText(absl::string_view from, const OutgoingMessage& message,
                                            absl::Time now) {
  if (!IsPlainAddress(message.to)) {
    return api::Invalid("to",
                        absl::StrCat("\"", OneLine(message.to), "\" is not an e-mail address"));
  }
  std::string text;
  absl::StrAppend(
      &text, "From: ", from, "\r\n", "To: ", message.to, "\r\n", SubjectHeader(message.subject),
      "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()), "\r\n",
      "Message-ID: ", SmtpMessageId(from, message.notification_id), "\r\n");
  if (!message.language.empty() &&
      absl::c_all_of(message.language, [](char c) { return absl::ascii_isalnum(c) || c == '-'; })) {
    absl::StrAppend(&text, "Content-Language: ", message.language, "\r\n");
  }
  absl::StrAppend(&text,
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=UTF-8\r\n"
                  "Content-Transfer-Encoding: base64\r\n"
                  "\r\n",
                  BodyBase64(message.body));
  return text;
}

absl::StatusOr<std::unique_ptr<SmtpSender>> SmtpSender::Create(SmtpOptions options) {
  if (options.host.empty()) return api::Invalid("host", "must be set");
  if (options.port < 1 || options.port > 65535) {
    return api::Invalid("port", absl::StrCat(options.port, " is not a TCP port"));
  }
  if (!IsPlainAddress(options.from)) {
    return api::Invalid("from", absl::StrCat("\"", OneLine(options.from),
                                             "\" is not an e-mail address (write it bare, "
                                             "news@shop.example)"));
  }
  if (options.timeout <= absl::ZeroDuration()) return api::Invalid("timeout", "must be positive");
  InitCurlOnce();
  return std::unique_ptr<SmtpSender>(new SmtpSender(std::move(options)));
}

SmtpSender::SmtpSender(SmtpOptions options)
    : options_(std::move(options)), url_(ServerUrl(options_)) {}

SendResult SmtpSender::Send(const OutgoingMessage& message) {
  absl::StatusOr<std::string> text = SmtpMessageText(options_.from, message, absl::Now());
  if (!text.ok()) return {SendResult::Outcome::kRejected, std::string(text.status().message())};

  std::unique_ptr<CURL, EasyCleanup> curl(curl_easy_init());
  if (curl == nullptr) return {SendResult::Outcome::kRetry, "libcurl: no handle"};
  CURL* c = curl.get();
  const std::string mail_from = absl::StrCat("<", options_.from, ">");
  std::unique_ptr<curl_slist, ListFree> rcpt(
      curl_slist_append(nullptr, absl::StrCat("<", message.to, ">").c_str()));
  Upload upload{*text};
  Replies replies;
  char error[CURL_ERROR_SIZE] = "";
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(options_.timeout));

  curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  // Signals are the process's own business; the timeouts work without them.
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  if (options_.tls != SmtpOptions::Tls::kNone) curl_easy_setopt(c, CURLOPT_USE_SSL, CURLUSESSL_ALL);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.user.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, options_.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, options_.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.get());
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(c, CURLOPT_READDATA, &upload);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, KeepReply);
  curl_easy_setopt(c, CURLOPT_DEBUGDATA, &replies);
  curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);

  const CURLcode result = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (result == CURLE_OK) return {SendResult::Outcome::kSent, replies.With(250)};
  const std::string where = absl::StrCat("smtp ", options_.host, ":", options_.port, ": ");
  if (code >= 500 && code < 600) {
    return {SendResult::Outcome::kRejected, absl::StrCat(where, replies.With(code))};
  }
  if (code >= 400 && code < 500) {
    return {SendResult::Outcome::kRetry, absl::StrCat(where, replies.With(code))};
  }
  // No reply to judge by: the connection, TLS or the timeout failed.
  return {SendResult::Outcome::kRetry,
          absl::StrCat(where, error[0] != '\0' ? error : curl_easy_strerror(result))};
}

}  // namespace crm::notify
