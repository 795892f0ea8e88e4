#include "tests/e2e/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"

extern char** environ;

namespace primserve {
namespace testing {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

namespace {

bool PortAcceptsConnections(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::string ServerBinary() {
  const char* env = std::getenv("PRIMSERVE_SERVER");
  if (env != nullptr && *env != '\0') return env;
  return PRIMSERVE_SERVER_PATH;
}

absl::StatusOr<ServerProcess> ServerProcess::Start(const std::string& binary,
                                                   const std::vector<std::string>& extra_args,
                                                   absl::Duration timeout) {
  return Launch(binary, extra_args, timeout, /*admin_port=*/false);
}

absl::StatusOr<ServerProcess> ServerProcess::StartWithAdminPort(const std::string& binary,
                                                                const std::vector<std::string>& extra_args,
                                                                absl::Duration timeout) {
  return Launch(binary, extra_args, timeout, /*admin_port=*/true);
}

absl::StatusOr<ServerProcess> ServerProcess::Launch(const std::string& binary,
                                                    const std::vector<std::string>& extra_args,
                                                    absl::Duration timeout, bool admin_port) {
  ServerProcess server;
  char dir_template[] = "/tmp/primserve-e2e-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp failed");
  server.dir_ = dir_template;
  server.port_ = FreePort();
  std::vector<std::string> args = {binary, absl::StrCat("--address=127.0.0.1:", server.port_),
                                   absl::StrCat("--model_dir=", server.dir_, "/models")};
  if (admin_port) {
    server.admin_port_ = FreePort();
    args.push_back(absl::StrCat("--admin_address=", server.admin_address()));
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log_path = server.dir_ + "/server.log";
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = posix_spawn(&server.pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot spawn ", binary, ": ", strerror(rc)));

  // Wait for the listener before creating the channel: a channel whose first connect is refused
  // backs off for about a second or more before it tries again.
  const absl::Time deadline = absl::Now() + timeout;
  const int probe_port = admin_port ? server.admin_port_ : server.port_;
  while (absl::Now() < deadline && !PortAcceptsConnections(probe_port)) {
    int wstatus = 0;
    if (waitpid(server.pid_, &wstatus, WNOHANG) == server.pid_) {
      server.pid_ = -1;
      return absl::InternalError(absl::StrCat("server exited during start-up:\n", server.Log()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  client::ChannelOptions options;
  options.address = admin_port ? server.admin_address() : server.address();
  client::HealthClient health(client::CreateChannel(options));
  while (absl::Now() < deadline) {
    client::CallOptions call;
    call.timeout = absl::Milliseconds(500);
    absl::StatusOr<client::ServingStatus> status = health.Check("", call);
    if (status.ok() && *status == grpc::health::v1::HealthCheckResponse::SERVING) return server;
    int wstatus = 0;
    if (waitpid(server.pid_, &wstatus, WNOHANG) == server.pid_) {
      server.pid_ = -1;
      return absl::InternalError(absl::StrCat("server exited during start-up:\n", server.Log()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("server not SERVING within ", absl::FormatDuration(timeout),
                                                  ":\n", server.Log()));
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(other.pid_), port_(other.port_), admin_port_(other.admin_port_), dir_(std::move(other.dir_)) {
  other.pid_ = -1;
  other.dir_.clear();
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string ServerProcess::admin_address() const {
  return admin_port_ == 0 ? std::string() : absl::StrCat("127.0.0.1:", admin_port_);
}

void ServerProcess::Signal(int signal_number) const {
  if (pid_ > 0) kill(pid_, signal_number);
}

absl::StatusOr<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (pid_ > 0) {
    int wstatus = 0;
    const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
      return absl::InternalError(absl::StrCat("server killed by signal ", WTERMSIG(wstatus)));
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("server did not exit in time");
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::FailedPreconditionError("server not running");
}

std::string ServerProcess::Log() const {
  std::ifstream file(dir_ + "/server.log");
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

}  // namespace testing
}  // namespace primserve
