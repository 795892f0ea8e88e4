// primserve-server: serves the primserve gRPC services.
//
// Every flag can also come from the environment as PRIMSERVE_<FLAG NAME IN CAPITALS>
// (e.g. PRIMSERVE_ADDRESS=0.0.0.0:6000); a flag on the command line wins over the environment.
// SIGTERM / SIGINT: health turns NOT_SERVING, new calls are refused, in-flight calls get
// --drain_seconds to finish, and the process exits 0. A second signal during the drain stops the
// process at once (exit status 128 + the signal's number).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "core/number_format.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/server.h"

ABSL_FLAG(std::string, address, "0.0.0.0:50051", "host:port of the gRPC data port");
ABSL_FLAG(std::string, admin_address, "",
          "host:port that also serves health and reflection (empty: only --address)");
ABSL_FLAG(std::string, model_dir, "models", "model repository directory (created if missing)");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{64} << 20, "largest request or response message");
ABSL_FLAG(int, compute_threads, 0, "threads per kernel / oneDNN primitive (0: available cores)");
ABSL_FLAG(int, compute_workers, 0,
          "calls computing at once, each on compute_threads threads (0: cores / compute_threads)");
ABSL_FLAG(int, max_queue, 64, "calls that may wait for a compute worker; more get RESOURCE_EXHAUSTED at once");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port serving Prometheus text at /metrics over HTTP (empty: no metrics listener)");
ABSL_FLAG(double, max_connection_age_seconds, 300,
          "connections get a graceful GOAWAY after this long, so clients re-resolve and reach new replicas");
ABSL_FLAG(double, max_connection_age_grace_seconds, 60, "time calls in flight get after that GOAWAY");
ABSL_FLAG(int64_t, max_attention_weights, primserve::kDefaultMaxWeightElements,
          "largest Attend weights tensor (elements) returned with return_weights; RESOURCE_EXHAUSTED above");
ABSL_FLAG(int64_t, max_idle_workspace_bytes, primserve::kDefaultIdleWorkspaceBudget,
          "discriminator work buffers kept between calls for reuse, over all networks; the coldest are freed "
          "past it");
ABSL_FLAG(double, drain_seconds, 10.0, "after SIGTERM, how long in-flight calls may run before they are cancelled");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve TLS on --address (with --tls_key; --admin_address stays plaintext)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require client certificates signed by it (mTLS; needs --tls_cert)");
ABSL_FLAG(std::string, auth_token_file, "",
          "file of bearer tokens, one per line ('#' comments); calls need 'authorization: Bearer <token>' "
          "(health and reflection exempt)");

namespace {

constexpr const char* kEnvFlags[] = {"address",           "admin_address",         "model_dir",
                                     "max_message_bytes", "max_attention_weights", "compute_threads",
                                     "compute_workers",   "max_queue",             "metrics_address",
                                     "max_connection_age_seconds", "max_connection_age_grace_seconds",
                                     "max_idle_workspace_bytes", "drain_seconds", "log_level",
                                     "tls_cert",          "tls_key",               "tls_client_ca",
                                     "auth_token_file"};

// PRIMSERVE_<NAME> environment variables become flag values before the command line is parsed.
bool ApplyEnvironmentOverrides() {
  for (const char* name : kEnvFlags) {
    const std::string env_name = "PRIMSERVE_" + absl::AsciiStrToUpper(name);
    const char* value = std::getenv(env_name.c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      primserve::Log(primserve::LogLevel::kError, env_name, ": cannot parse \"", value, "\": ", error);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which turns on absl::Mutex deadlock detection: every
  // lock of every absl::Mutex, gRPC's own included, then updates a process-wide lock graph under
  // one global lock. Serving does not need it (tests and sanitizers find lock-order bugs), and on
  // 2 cores it made small-call throughput fall as concurrency rose.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage("numerical primitives over gRPC. Flags may also be set as "
                               "PRIMSERVE_<FLAG> environment variables.");
  // absl's --help lists flags of files named after the program; ours live in server/main.cc.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "server/main.cc"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  if (!ApplyEnvironmentOverrides()) return 2;
  absl::ParseCommandLine(argc, argv);

  absl::StatusOr<primserve::LogLevel> level = primserve::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) {
    primserve::Log(primserve::LogLevel::kError, level.status().message());
    return 2;
  }
  primserve::SetLogLevel(*level);
  // Checked before the server starts: a bad flag must never get as far as a listening port.
  const double drain_seconds = absl::GetFlag(FLAGS_drain_seconds);
  if (!(std::isfinite(drain_seconds) && drain_seconds >= 0)) {
    primserve::Log(primserve::LogLevel::kError, "cannot start: drain_seconds: expected a finite number >= 0, got ",
                   primserve::NumberToString(drain_seconds));
    return 2;
  }

  // Block the signals before any thread starts, so that every thread inherits the mask and
  // only the waiter below receives them (synchronously, outside async-signal context).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A file-size limit (RLIMIT_FSIZE) must fail a model write with EFBIG, not kill the server.
  signal(SIGXFSZ, SIG_IGN);

  primserve::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.admin_address = absl::GetFlag(FLAGS_admin_address);
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.compute_threads = absl::GetFlag(FLAGS_compute_threads);
  options.compute_workers = absl::GetFlag(FLAGS_compute_workers);
  options.max_queue = absl::GetFlag(FLAGS_max_queue);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.max_connection_age = absl::Seconds(absl::GetFlag(FLAGS_max_connection_age_seconds));
  options.max_connection_age_grace = absl::Seconds(absl::GetFlag(FLAGS_max_connection_age_grace_seconds));
  options.max_attention_weights = absl::GetFlag(FLAGS_max_attention_weights);
  options.max_idle_workspace_bytes = absl::GetFlag(FLAGS_max_idle_workspace_bytes);
  options.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.security.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  absl::StatusOr<std::unique_ptr<primserve::PrimServer>> server = primserve::PrimServer::Start(options);
  if (!server.ok()) {
    primserve::Log(primserve::LogLevel::kError, "cannot start: ", server.status().ToString());
    return 1;
  }

  const absl::Duration grace = absl::Seconds(drain_seconds);
  auto name = [](int signal_number) { return signal_number == SIGTERM ? "SIGTERM" : "SIGINT"; };
  std::atomic<bool> stopped{false};
  std::thread drainer;
  // The first signal starts the drain; a second one, during the drain, ends the process at once
  // (an operator's second Ctrl-C), exiting with 128 + the signal's number (as shells report it).
  std::thread waiter([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    primserve::Log(primserve::LogLevel::kInfo, "received ", name(signal_number),
                   ": health NOT_SERVING, draining in-flight calls for up to ", absl::FormatDuration(grace),
                   " (a second signal stops at once)");
    drainer = std::thread([&] { (*server)->Shutdown(grace); });
    const timespec poll{0, 100 * 1000 * 1000};
    while (!stopped.load()) {
      signal_number = sigtimedwait(&signals, nullptr, &poll);
      if (signal_number == SIGTERM || signal_number == SIGINT) {
        primserve::Log(primserve::LogLevel::kWarning, "received a second signal (", name(signal_number),
                       "): stopping now, without waiting for in-flight calls");
        std::fflush(stderr);
        std::_Exit(128 + signal_number);
      }
    }
  });
  (*server)->Wait();
  stopped.store(true);
  waiter.join();
  if (drainer.joinable()) drainer.join();
  primserve::Log(primserve::LogLevel::kInfo, "primserve stopped");
  std::fflush(stderr);
  // Every call has finished and nothing is left to write. Skip the destructors: after a shutdown
  // with live client connections, gRPC 1.51 joins an executor thread that polls an internal
  // ~10 s timer, which would delay the exit for no benefit (measured: 9.5 s).
#if defined(__SANITIZE_ADDRESS__)
  __lsan_do_leak_check();
#endif
  std::_Exit(0);
}
