#include "tests/support/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "libs/auth/internal_keys.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace crm::testing {

const std::string& TestInternalKeyFile() {
  static const std::string* path = [] {
    static TempDir dir;
    auto* p = new std::string(dir.Sub("internal-key"));
    std::string secret;
    for (int i = 0; i < 48; ++i)
      secret.push_back(
          "abcdefghijklmnopqrstuvwxyz0123456789"[absl::Uniform(absl::BitGen(), 0, 36)]);
    FILE* f = std::fopen(p->c_str(), "w");
    std::fputs(secret.c_str(), f);
    std::fclose(f);
    auth::InternalKeys::Install(*auth::InternalKeys::FromText(secret));
    return p;
  }();
  return *path;
}

namespace {

// Whether a listener could bind `port` on loopback now (0: the kernel's pick); the port bound, or
// 0.
int BindOnce(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(addr);
  int bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    bound = ntohs(addr.sin_port);
  }
  close(fd);
  return bound;
}

// The lowest port the kernel hands out for port 0 and for outgoing connections.
int EphemeralLow() {
  int low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &low) != 1) low = 32768;
    std::fclose(f);
  }
  return low;
}

// Claims `port` for this test process until it exits, against every other test process on the
// machine (ctest -j runs several, each picking ports for the servers it starts): an exclusive flock
// on a file named after the port. Two processes could otherwise both find a port free and pick it
// in the moments before either binds it, and the second server would fail to start. The kernel
// drops the lock when the process ends, however it ends. Whether the claim was granted.
bool ClaimForThisProcess(int port) {
  static const std::string* dir = [] {
    auto* d = new std::string("/tmp/crm-port-claims");
    if (mkdir(d->c_str(), 01777) == 0) chmod(d->c_str(), 01777);  // shared by every user's tests
    return d;
  }();
  static auto* mu = new absl::Mutex();
  static auto* held = new std::map<int, int>();  // port -> its locked descriptor, kept open
  absl::MutexLock lock(mu);
  if (held->count(port) > 0) return false;  // already given out by this process
  const int fd = open(absl::StrCat(*dir, "/", port).c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    // No claims where the folder cannot be written (a read-only /tmp): the pick is only checked
    // free, as before claims, rather than no port at all.
    (*held)[port] = -1;
    return true;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  (*held)[port] = fd;
  return true;
}

}  // namespace

std::vector<std::string> ThreadNames(pid_t pid) {
  std::vector<std::string> names;
  std::error_code ignored;  // a thread that ended while listed
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ignored)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(std::move(name));
  }
  return names;
}

int PickFreePort() {
  // Below the ephemeral range: a port picked here and bound moments later (or bound again after a
  // restart) cannot meanwhile be handed to another test's server asking for port 0, or be taken as
  // the local port of some connection. Ports under kLowest are for scripts that need fixed ones
  // (tests/e2e/prometheus_local_run.sh uses 21050-21190).
  constexpr int kLowest = 22000;
  static const int ephemeral_low = EphemeralLow();
  if (ephemeral_low - kLowest >= 1000) {
    thread_local absl::BitGen gen;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const int port = absl::Uniform(gen, kLowest, ephemeral_low);
      if (ClaimForThisProcess(port) && BindOnce(port) == port) return port;
    }
  }
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = BindOnce(0);
    if (port != 0 && ClaimForThisProcess(port)) return port;
  }
  return 0;
}

absl::Status MakeDevCertificates(const std::string& dir, const std::vector<std::string>& names) {
  std::string command = absl::StrCat("bash ", CRM_SOURCE_ROOT, "/deploy/local/dev-pki.sh ", dir,
                                     " ", absl::StrJoin(names, " "));
  if (std::system(command.c_str()) != 0)
    return absl::InternalError(absl::StrCat("deploy/local/dev-pki.sh failed: ", command));
  return absl::OkStatus();
}

Process::Process(std::string binary, std::vector<std::string> args,
                 std::map<std::string, std::string> env)
    : binary_(std::move(binary)), args_(std::move(args)), env_(std::move(env)) {}

Process::~Process() {
  if (pid_ > 0) Kill();
  if (reader_.joinable()) reader_.join();
}

std::string Process::BuildPath(const std::string& relative) {
  // Tests run from CTest's working directory inside the build tree; CRM_BUILD_DIR overrides.
  const char* dir = std::getenv("CRM_BUILD_DIR");
  if (dir != nullptr && *dir != '\0') return absl::StrCat(dir, "/", relative);
  return absl::StrCat(CRM_BUILD_ROOT, "/", relative);
}

absl::Status Process::Start() {
  int pipefd[2];
  if (pipe(pipefd) != 0) return absl::InternalError("pipe");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    if (env_.count(key) == 0) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env_) env_strings.push_back(k + "=" + v);
  if (env_.count("CRM_INTERNAL_KEY_FILE") == 0 && std::getenv("CRM_INTERNAL_KEY_FILE") == nullptr) {
    env_strings.push_back("CRM_INTERNAL_KEY_FILE=" + TestInternalKeyFile());
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {binary_};
  argv_strings.insert(argv_strings.end(), args_.begin(), args_.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork");
  if (pid_ == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    // A clean signal state for the child (the test runner may block signals).
    for (int sig : {SIGTERM, SIGINT, SIGSEGV, SIGABRT, SIGPIPE}) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(binary_.c_str(), argv.data(), envp.data());
    std::fprintf(stderr, "exec %s: %s\n", binary_.c_str(), std::strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);
  reader_ = std::thread([this, fd = pipefd[0]] { ReadLoop(fd); });
  return absl::OkStatus();
}

void Process::ReadLoop(int fd) {
  std::string pending;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      absl::MutexLock lock(&mu_);
      lines_.push_back(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
  close(fd);
}

absl::Status Process::WaitForLog(const std::string& needle, absl::Duration timeout) {
  return WaitForLogAfter(0, needle, timeout).status();
}

size_t Process::log_lines() const {
  absl::MutexLock lock(&mu_);
  return lines_.size();
}

absl::StatusOr<std::string> Process::WaitForLogAfter(size_t after, const std::string& needle,
                                                     absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t checked = after;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      for (; checked < lines_.size(); ++checked) {
        if (lines_[checked].find(needle) != std::string::npos) return lines_[checked];
      }
    }
    int status;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(
          absl::StrCat(binary_, " exited before logging ", needle, ":\n", output()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(binary_, " did not log ", needle, ":\n", output()));
}

absl::Status Process::WaitServing(absl::Duration timeout) {
  if (auto s = WaitForLog("\"message\":\"serving\"", timeout); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  static const std::regex port_re("\"port\":([0-9]+)");
  static const std::regex metrics_re("\"metrics_port\":([0-9]+)");
  for (const auto& line : lines_) {
    if (line.find("\"message\":\"serving\"") == std::string::npos) continue;
    std::smatch m;
    if (std::regex_search(line, m, port_re)) (void)absl::SimpleAtoi(m[1].str(), &port_);
    if (std::regex_search(line, m, metrics_re)) (void)absl::SimpleAtoi(m[1].str(), &metrics_port_);
  }
  return port_ > 0 ? absl::OkStatus() : absl::InternalError("serving line without a port");
}

int Process::WaitExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < deadline) {
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (reader_.joinable()) reader_.join();
      return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -1000;
}

int Process::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return 0;
  return WaitExit(timeout);
}

int Process::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  const int code = WaitExit(timeout);
  if (code == -1000) Kill();
  return code;
}

void Process::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
}

std::string Process::output() const {
  absl::MutexLock lock(&mu_);
  return absl::StrJoin(lines_, "\n");
}

}  // namespace crm::testing
