// An HTTP receiver of webhooks for tests (event webhooks, the SMS and push gateway of
// notifications).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "tests/support/loopback_socket.h"

namespace crm::testing {

// An outside system receiving webhooks on a free loopback port: one connection at a time, each
// POST recorded and answered with the status the test set (200 by default), then closed.
// Thread-safe.
class WebhookReceiver {
 public:
  struct Request {
    std::string target;
    // Names in lower case.
    std::map<std::string, std::string> headers;
    std::string body;
    int answered = 0;
  };

  WebhookReceiver() {
    listener_ = testing::BindLoopback(&port_);
    REQUIRE(listener_ >= 0);
    REQUIRE(listen(listener_, 16) == 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~WebhookReceiver() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
  }

  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  void AnswerWith(int status) {
    absl::MutexLock lock(&mu_);
    status_ = status;
  }
  std::vector<Request> Received(const std::string& target = "") const {
    absl::MutexLock lock(&mu_);
    std::vector<Request> out;
    for (const Request& r : requests_) {
      if (target.empty() || r.target == target) out.push_back(r);
    }
    return out;
  }
  size_t CountAnswered(int status, const std::string& target = "") const {
    size_t n = 0;
    for (const Request& r : Received(target)) n += r.answered == status ? 1 : 0;
    return n;
  }

 private:
  void Serve() {
    for (;;) {
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      timeval tv{10, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      Request request;
      if (ReadRequest(fd, &request)) {
        int status;
        {
          absl::MutexLock lock(&mu_);
          status = status_;
          request.answered = status;
          requests_.push_back(request);
        }
        const std::string body = status < 300 ? "ok" : "refused by the test";
        const std::string answer =
            absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(),
                         "\r\nConnection: close\r\n\r\n", body);
        (void)!write(fd, answer.data(), answer.size());
      }
      close(fd);
    }
  }

  static bool ReadRequest(int fd, Request* out) {
    std::string data;
    char buf[4096];
    size_t header_end;
    while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) return false;
      data.append(buf, static_cast<size_t>(n));
    }
    std::vector<std::string> lines = absl::StrSplit(data.substr(0, header_end), "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    if (first.size() != 3 || first[0] != "POST") return false;
    out->target = first[1];
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      out->headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    if (!absl::SimpleAtoi(out->headers["content-length"], &length)) return false;
    out->body = data.substr(header_end + 4);
    while (out->body.size() < length) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) return false;
      out->body.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
  mutable absl::Mutex mu_;
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::testing
