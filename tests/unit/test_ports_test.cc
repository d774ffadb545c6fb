// PickFreePort (tests/support/process.h): the ports tests start servers on. ctest runs several test
// processes at once, each picking ports before its servers bind them; a port two of them picked
// makes one server fail to start (libs/rpc refuses a port in use), a failure by chance.

#include <sys/wait.h>
#include <unistd.h>

#include <initializer_list>
#include <set>
#include <vector>

#include "catch2/catch.hpp"
#include "tests/support/process.h"

namespace crm {
namespace {

constexpr int kPicks = 300;

std::vector<int> Pick(int n) {
  std::vector<int> ports;
  for (int i = 0; i < n; ++i) ports.push_back(testing::PickFreePort());
  return ports;
}

TEST_CASE("test ports: two test processes picking at once never get the same port") {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  // The child keeps its claims until this process has picked: a process that has ended holds no
  // port, and its ports may then be picked again (as they should).
  int done_fds[2];
  REQUIRE(pipe(done_fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(pipe_fds[0]);
    close(done_fds[1]);
    const std::vector<int> ports = Pick(kPicks);
    const ssize_t size = static_cast<ssize_t>(ports.size() * sizeof(int));
    const bool written = write(pipe_fds[1], ports.data(), ports.size() * sizeof(int)) == size;
    char done = 0;
    const bool waited = read(done_fds[0], &done, 1) >= 0;  // 0 bytes when the parent closes it
    _exit(written && waited ? 0 : 1);
  }
  close(pipe_fds[1]);
  close(done_fds[0]);
  // Picked while the other process picks: neither binds what it picked, as a test between its pick
  // and its server's start.
  const std::vector<int> mine = Pick(kPicks);
  close(done_fds[1]);
  std::vector<int> theirs(kPicks);
  size_t got = 0;
  while (got < theirs.size() * sizeof(int)) {
    const ssize_t n = read(pipe_fds[0], reinterpret_cast<char*>(theirs.data()) + got,
                           theirs.size() * sizeof(int) - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(pipe_fds[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  REQUIRE(got == theirs.size() * sizeof(int));

  // Without the claim, 300 random picks each from the ~10,000 ports below the ephemeral range would
  // share about 8.
  std::set<int> all;
  for (const std::vector<int>& ports : {mine, theirs}) {
    for (int port : ports) {
      INFO(port);
      CHECK(port > 0);
      CHECK(all.insert(port).second);
    }
  }
  CHECK(all.size() == 2 * kPicks);
}

}  // namespace
}  // namespace crm
