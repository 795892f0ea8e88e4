// Uses the installed primserve client: starts the server given as argv[1] on a fixed loopback
// port, computes a sinusoidal table and checks the MATH.md golden p_1.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string port = std::to_string(20000 + getpid() % 20000);
  std::string address_flag = "--address=127.0.0.1:" + port;
  std::string dir_flag = "--model_dir=/tmp/primserve-consumer-" + port;
  char* args[] = {argv[1], address_flag.data(), dir_flag.data(), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, argv[1], nullptr, nullptr, args, environ) != 0) return 3;

  primserve::client::ChannelOptions options;
  options.address = "127.0.0.1:" + port;
  auto channel = primserve::client::CreateChannel(options);
  primserve::client::CallOptions call;
  call.timeout = absl::Seconds(20);
  // Health with wait-for-ready semantics: retry until the server answers.
  primserve::client::HealthClient health(channel);
  bool serving = false;
  for (int i = 0; i < 200 && !serving; ++i) {
    auto status = health.Check("", call);
    serving = status.ok() && *status == grpc::health::v1::HealthCheckResponse::SERVING;
    if (!serving) usleep(100000);
  }
  primserve::client::PositionEncodingClient client(channel);
  absl::StatusOr<primserve::client::Tensor> table = client.Sinusoidal(2, 4, call);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  if (!serving || !table.ok()) {
    std::fprintf(stderr, "consumer: %s\n", table.ok() ? "server never SERVING" : table.status().ToString().c_str());
    return 1;
  }
  const double p1[] = {0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004};
  for (int i = 0; i < 4; ++i) {
    if (std::fabs(table->values[4 + i] - p1[i]) > 1e-7) {
      std::fprintf(stderr, "consumer: p_1[%d] = %.9g, expected %.10f\n", i, table->values[4 + i], p1[i]);
      return 1;
    }
  }
  std::printf("consumer: find_package(primserve) client got p_1 = [%.9g, %.9g, %.9g, %.9g]\n", table->values[4],
              table->values[5], table->values[6], table->values[7]);
  return 0;
}
