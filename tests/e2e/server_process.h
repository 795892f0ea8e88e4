// Runs primserve-server as a child process on a free loopback port for end-to-end tests.
#ifndef PRIMSERVE_TESTS_E2E_SERVER_PROCESS_H_
#define PRIMSERVE_TESTS_E2E_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace primserve {
namespace testing {

// A free TCP port on 127.0.0.1 (bound then released; the kernel will not reuse it at once).
int FreePort();

class ServerProcess {
 public:
  // Starts `binary --address=127.0.0.1:<free port> --model_dir=<temp dir> extra_args...` and waits
  // until health reports SERVING (up to `timeout`). A `--model_dir=` in extra_args wins over the
  // temporary one (the last flag wins): pass another server's model_dir() to restart on its store.
  static absl::StatusOr<ServerProcess> Start(const std::string& binary, const std::vector<std::string>& extra_args,
                                             absl::Duration timeout = absl::Seconds(30));
  // As Start, plus `--admin_address=127.0.0.1:<second free port>`, and waits for SERVING there
  // (plaintext, no token) instead of on the data port: for servers started with TLS or tokens.
  static absl::StatusOr<ServerProcess> StartWithAdminPort(const std::string& binary,
                                                          const std::vector<std::string>& extra_args,
                                                          absl::Duration timeout = absl::Seconds(30));
  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ~ServerProcess();  // SIGKILLs the server if it is still running.

  std::string address() const;
  // "127.0.0.1:<admin port>" after StartWithAdminPort; empty after Start.
  std::string admin_address() const;
  // The temporary model directory given to the server (unless extra_args named another); it
  // and its files live as long as this object, also after the server has exited.
  std::string model_dir() const { return dir_ + "/models"; }
  int port() const { return port_; }
  void Signal(int signal_number) const;
  // Waits for exit (up to `timeout`); the exit code, or an error if killed by a signal / timed out.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);
  // The server's stderr so far.
  std::string Log() const;

 private:
  ServerProcess() = default;
  static absl::StatusOr<ServerProcess> Launch(const std::string& binary, const std::vector<std::string>& extra_args,
                                              absl::Duration timeout, bool admin_port);
  pid_t pid_ = -1;
  int port_ = 0;
  int admin_port_ = 0;
  std::string dir_;
};

// The server binary: $PRIMSERVE_SERVER, else the path CMake compiled in.
std::string ServerBinary();

}  // namespace testing
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_E2E_SERVER_PROCESS_H_
