#include "tests/support/tcp_balancer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace crm::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

// Writes all of `data` to `fd`; false when the peer is gone.
bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

TcpBalancer::~TcpBalancer() { Stop(); }

absl::Status TcpBalancer::Start() {
  listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (listener_ < 0 || wake_ < 0)
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address = Loopback(0);
  socklen_t length = sizeof(address);
  if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener_, 64) != 0 ||
      getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen: ", std::strerror(errno)));
  }
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { Accept(); });
  return absl::OkStatus();
}

void TcpBalancer::AddBackend(int backend_port) {
  absl::MutexLock lock(&mu_);
  backends_.push_back(backend_port);
}

int TcpBalancer::ConnectionsTo(int backend_port) {
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(backend_port);
  return it == connections_.end() ? 0 : it->second;
}

int TcpBalancer::NextBackend() {
  absl::MutexLock lock(&mu_);
  if (backends_.empty()) return 0;
  return backends_[next_++ % backends_.size()];
}

void TcpBalancer::Accept() {
  for (;;) {
    pollfd fds[2] = {{listener_, POLLIN, 0}, {wake_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const int backend_port = NextBackend();
    const int backend = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in address = Loopback(backend_port);
    // No backend, or it refuses: the client sees its connection closed, as behind a Service whose
    // pod is gone.
    if (backend_port == 0 || backend < 0 ||
        connect(backend, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      close(client);
      if (backend >= 0) close(backend);
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(client);
      close(backend);
      return;
    }
    ++connections_[backend_port];
    open_.insert(client);
    open_.insert(backend);
    relays_.emplace_back([this, client, backend] { Relay(client, backend); });
  }
}

void TcpBalancer::Relay(int client, int backend) {
  // Index 0: client to backend; 1: backend to client. A direction ends when its reader sees end of
  // stream, which is passed on as a half close, so each side still reads what the other sent last.
  const int from[2] = {client, backend};
  const int to[2] = {backend, client};
  bool open[2] = {true, true};
  char buffer[64 << 10];
  while (open[0] || open[1]) {
    pollfd fds[3] = {{open[0] ? from[0] : -1, POLLIN, 0},
                     {open[1] ? from[1] : -1, POLLIN, 0},
                     {wake_, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[2].revents != 0) break;
    bool broken = false;
    for (int d = 0; d < 2 && !broken; ++d) {
      if (!open[d] || fds[d].revents == 0) continue;
      const ssize_t n = recv(from[d], buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        broken = !SendAll(to[d], buffer, static_cast<size_t>(n));
      } else if (n == 0) {
        shutdown(to[d], SHUT_WR);
        open[d] = false;
      } else {
        broken = true;  // reset by the peer
      }
    }
    if (broken) break;
  }
  absl::MutexLock lock(&mu_);
  open_.erase(client);
  open_.erase(backend);
  close(client);
  close(backend);
}

void TcpBalancer::Stop() {
  std::vector<std::thread> relays;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || listener_ < 0) return;
    stopping_ = true;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = write(wake_, &one, sizeof(one));
    // Unblocks a relay stuck in send() to a peer that no longer reads.
    for (int fd : open_) shutdown(fd, SHUT_RDWR);
    relays.swap(relays_);
  }
  if (acceptor_.joinable()) acceptor_.join();
  for (std::thread& relay : relays) relay.join();
  close(listener_);
  close(wake_);
}

}  // namespace crm::testing
