#include "tests/support/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/temp_dir.h"

namespace crm::testing {

absl::StatusOr<double> SampleIn(absl::string_view page, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    double v = 0;
    if (absl::SimpleAtod(line, &v)) return v;
  }
  return absl::NotFoundError(absl::StrCat(series, " is not in the page"));
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("write failed");
  }
  std::string raw;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) raw.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos || raw.size() < 12)
    return absl::DataLossError("malformed HTTP response");
  HttpResponse r;
  if (!absl::SimpleAtoi(raw.substr(9, 3), &r.status))
    return absl::DataLossError("malformed status line");
  r.headers = raw.substr(0, header_end);
  r.body = raw.substr(header_end + 4);
  // Chunked bodies: strip the chunk framing.
  if (r.headers.find("chunked") != std::string::npos) {
    std::string body;
    size_t pos = 0;
    while (pos < r.body.size()) {
      const size_t eol = r.body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const size_t len = std::stoul(r.body.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) break;
      body.append(r.body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    r.body = body;
  }
  return r;
}

CommandResult RunCommand(const std::string& command, const std::string& input) {
  TempDir dir;
  const std::string in_path = dir.Sub("stdin");
  {
    std::ofstream f(in_path, std::ios::binary);
    f << input;
  }
  CommandResult result;
  FILE* p = popen(absl::StrCat("(", command, ") < '", in_path, "' 2>&1").c_str(), "r");
  if (p == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.output.append(buf, n);
  const int status = pclose(p);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace crm::testing
