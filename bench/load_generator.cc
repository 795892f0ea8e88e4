// primserve-load: an end-to-end load generator over the C++ client library.
//
// `--concurrency` client threads share one channel (gRPC would share the TCP connection between
// channels with equal arguments anyway) and each sends calls back to back for `--duration`
// seconds after `--warmup`, cycling through the `--methods` mix. Every request is built once, so
// the figures are the client library's call (serialize, send, wait, parse the response into a
// client::Tensor) and the server, not request construction. Per method it prints calls/s, the
// payload rate (request + response tensor bytes over the wall time of the measured window) and
// latency percentiles, and, when `echo` is in the mix, each method's ratio to Echo measured in
// the same run (the transport baseline: same channel, same moment, same machine noise).
//
// Methods and their payload (`--payload_bytes` B, rounded down to whole 64-float rows):
//   echo        Diagnostics.Echo of a [B / 256, 64] float32 tensor (B bytes each way)
//   sinusoidal  PositionEncoding.Sinusoidal, length x dim (--sinusoidal_length/--sinusoidal_dim,
//               16 x 64 = a 4 KiB response); pair it with `echo --payload_bytes=4096`
//   apply_rope  PositionEncoding.ApplyRope of a [B / 256 / S, 1, S, 64] tensor (B bytes each way),
//               S = --rope_seq_len (a batch of sequences, as attention layers rotate them), or
//               [1, 1, B / 256, 64] when S does not divide the rows (or --rope_seq_len=0). The
//               server computes a cos/sin table of S x 32 entries per call, so one long sequence
//               (S = B / 256) measures the table, not the transport: 8.4M sincos at 64 MiB.
//   attend      Attention.Attend, softmax, q = k = v = [1, --attend_heads, --attend_seq, 64]
//
// Example:
//   primserve-load --target=localhost:50051 --methods=echo,sinusoidal --payload_bytes=4096
//       --concurrency=8 --duration=5 --csv=results.csv --label=scaling
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "primserve/client/attention.h"
#include "primserve/client/channel.h"
#include "primserve/client/diagnostics.h"
#include "primserve/client/position_encoding.h"

ABSL_FLAG(std::string, target, "localhost:50051", "server address (host:port)");
ABSL_FLAG(int, concurrency, 1, "client threads, each with one call in flight");
ABSL_FLAG(double, duration, 5.0, "measured seconds");
ABSL_FLAG(double, warmup, 0.5, "seconds of calls before measuring (not counted)");
ABSL_FLAG(std::string, methods, "echo", "comma-separated mix: echo, sinusoidal, apply_rope, attend");
ABSL_FLAG(int64_t, payload_bytes, 4096, "tensor bytes of echo and apply_rope requests (and responses)");
ABSL_FLAG(int64_t, sinusoidal_length, 16, "Sinusoidal length");
ABSL_FLAG(int64_t, sinusoidal_dim, 64, "Sinusoidal dim");
ABSL_FLAG(int64_t, rope_seq_len, 4096, "apply_rope sequence length S (0: one sequence of all the rows)");
ABSL_FLAG(int64_t, attend_seq, 128, "Attend sequence length (q = k = v)");
ABSL_FLAG(int64_t, attend_heads, 4, "Attend heads (head_dim 64, batch 1)");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{64} << 20, "client message limit (match the server's)");
ABSL_FLAG(int, max_attempts, primserve::client::kDefaultMaxAttempts, "client attempts per call (1: no retries)");
ABSL_FLAG(double, timeout, 60.0, "per-call deadline in seconds");
ABSL_FLAG(std::string, label, "", "free text copied into every CSV / JSON row (e.g. the sweep name)");
ABSL_FLAG(std::string, csv, "", "append one row per method to this CSV file (header written if new)");
ABSL_FLAG(std::string, json, "", "write the results as a JSON array to this file");

namespace primserve {
namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

// One method of the mix: a prebuilt request and a call that returns the payload bytes moved
// (request + response tensor bytes) or the call's error.
struct Method {
  std::string name;
  std::function<absl::StatusOr<int64_t>()> call;
};

// Samples of one (thread, method): latencies in ms and bytes moved.
struct Samples {
  std::vector<double> latency_ms;
  int64_t bytes = 0;
  int64_t errors = 0;
  std::string first_error;
};

struct Result {
  std::string method;
  int64_t calls = 0, errors = 0;
  double seconds = 0, calls_per_s = 0, mb_per_s = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
  // Bytes over the summed latencies of this method's calls: the rate one call stream sees,
  // meaningful in a mixed run where the others share the window (mb_per_s is the aggregate).
  double stream_mb_per_s = 0;
  std::string first_error;
};

client::Tensor RandomTensor(std::vector<int64_t> shape) {
  client::Tensor t;
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  t.shape = std::move(shape);
  t.values.resize(static_cast<size_t>(n));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : t.values) v = dist(rng);
  return t;
}

int64_t Bytes(const client::Tensor& t) { return static_cast<int64_t>(t.values.size() * sizeof(float)); }

absl::StatusOr<std::vector<Method>> BuildMethods(const std::shared_ptr<grpc::Channel>& channel) {
  const int64_t rows = std::max<int64_t>(1, absl::GetFlag(FLAGS_payload_bytes) / (64 * 4));
  client::CallOptions call;
  call.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  std::vector<Method> methods;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_methods), ',', absl::SkipEmpty())) {
    if (name == "echo") {
      auto client = std::make_shared<client::DiagnosticsClient>(channel);
      auto request = std::make_shared<v1::EchoRequest>();
      const client::Tensor input = RandomTensor({rows, 64});
      *request->mutable_input() = client::ToProto(input);
      methods.push_back({"echo", [client, request, call, in = Bytes(input)]() -> absl::StatusOr<int64_t> {
                           absl::StatusOr<client::Tensor> out = client->Echo(*request, call);
                           if (!out.ok()) return out.status();
                           return in + Bytes(*out);
                         }});
    } else if (name == "sinusoidal") {
      auto client = std::make_shared<client::PositionEncodingClient>(channel);
      auto request = std::make_shared<v1::SinusoidalRequest>();
      request->set_length(absl::GetFlag(FLAGS_sinusoidal_length));
      request->set_dim(absl::GetFlag(FLAGS_sinusoidal_dim));
      methods.push_back({"sinusoidal", [client, request, call]() -> absl::StatusOr<int64_t> {
                           absl::StatusOr<client::Tensor> out = client->Sinusoidal(*request, call);
                           if (!out.ok()) return out.status();
                           return Bytes(*out);
                         }});
    } else if (name == "apply_rope") {
      auto client = std::make_shared<client::PositionEncodingClient>(channel);
      auto request = std::make_shared<v1::ApplyRopeRequest>();
      const int64_t seq = absl::GetFlag(FLAGS_rope_seq_len);
      const client::Tensor input = seq > 0 && seq < rows && rows % seq == 0 ? RandomTensor({rows / seq, 1, seq, 64})
                                                                           : RandomTensor({1, 1, rows, 64});
      *request->mutable_input() = client::ToProto(input);
      methods.push_back({"apply_rope", [client, request, call, in = Bytes(input)]() -> absl::StatusOr<int64_t> {
                           absl::StatusOr<client::Tensor> out = client->ApplyRope(*request, call);
                           if (!out.ok()) return out.status();
                           return in + Bytes(*out);
                         }});
    } else if (name == "attend") {
      auto client = std::make_shared<client::AttentionClient>(channel);
      auto request = std::make_shared<v1::AttendRequest>();
      const client::Tensor qkv =
          RandomTensor({1, absl::GetFlag(FLAGS_attend_heads), absl::GetFlag(FLAGS_attend_seq), 64});
      *request->mutable_query() = client::ToProto(qkv);
      *request->mutable_key() = client::ToProto(qkv);
      *request->mutable_value() = client::ToProto(qkv);
      methods.push_back({"attend", [client, request, call, in = 3 * Bytes(qkv)]() -> absl::StatusOr<int64_t> {
                           absl::StatusOr<client::AttendResult> out = client->Attend(*request, call);
                           if (!out.ok()) return out.status();
                           return in + Bytes(out->output);
                         }});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--methods: unknown method '", name, "'; expected echo, sinusoidal, apply_rope or attend"));
    }
  }
  if (methods.empty()) return absl::InvalidArgumentError("--methods: expected at least one method");
  return methods;
}

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::vector<Result> Run(const std::vector<Method>& methods) {
  const int threads = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const auto warmup = std::chrono::duration<double>(absl::GetFlag(FLAGS_warmup));
  const auto duration = std::chrono::duration<double>(absl::GetFlag(FLAGS_duration));
  const Clock::time_point begin = Clock::now();
  const Clock::time_point measure_from = begin + std::chrono::duration_cast<Clock::duration>(warmup);
  const Clock::time_point measure_until = measure_from + std::chrono::duration_cast<Clock::duration>(duration);
  std::vector<std::vector<Samples>> samples(static_cast<size_t>(threads), std::vector<Samples>(methods.size()));
  std::atomic<int64_t> last_end_ns{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      // Threads start at different points of the mix so that a mixed run is mixed at every moment.
      size_t next = static_cast<size_t>(t) % methods.size();
      for (;;) {
        const Clock::time_point start = Clock::now();
        if (start >= measure_until) break;
        absl::StatusOr<int64_t> bytes = methods[next].call();
        const Clock::time_point end = Clock::now();
        if (start >= measure_from) {
          Samples& s = samples[static_cast<size_t>(t)][next];
          if (bytes.ok()) {
            s.latency_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
            s.bytes += *bytes;
          } else {
            if (s.errors++ == 0) s.first_error = bytes.status().ToString();
          }
          const int64_t end_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(end - begin).count();
          int64_t seen = last_end_ns.load();
          while (end_ns > seen && !last_end_ns.compare_exchange_weak(seen, end_ns)) {
          }
        }
        next = (next + 1) % methods.size();
      }
    });
  }
  for (std::thread& w : workers) w.join();
  // The window ends at the last measured completion (a 64 MiB call may outlast `duration`).
  const double window_s = std::max(
      1e-9, static_cast<double>(last_end_ns.load()) * 1e-9 - std::chrono::duration<double>(warmup).count());
  std::vector<Result> results;
  for (size_t m = 0; m < methods.size(); ++m) {
    Result r;
    r.method = methods[m].name;
    std::vector<double> all;
    int64_t bytes = 0;
    for (const auto& per_thread : samples) {
      const Samples& s = per_thread[m];
      all.insert(all.end(), s.latency_ms.begin(), s.latency_ms.end());
      bytes += s.bytes;
      r.errors += s.errors;
      if (r.first_error.empty()) r.first_error = s.first_error;
    }
    std::sort(all.begin(), all.end());
    r.calls = static_cast<int64_t>(all.size());
    r.seconds = window_s;
    r.calls_per_s = static_cast<double>(r.calls) / window_s;
    r.mb_per_s = static_cast<double>(bytes) / window_s / 1e6;
    r.p50 = Percentile(all, 50);
    r.p90 = Percentile(all, 90);
    r.p99 = Percentile(all, 99);
    r.max = all.empty() ? 0 : all.back();
    double sum = 0;
    for (double v : all) sum += v;
    r.mean = all.empty() ? 0 : sum / static_cast<double>(all.size());
    r.stream_mb_per_s = sum > 0 ? static_cast<double>(bytes) / (sum * 1e-3) / 1e6 : 0;
    results.push_back(r);
  }
  return results;
}

void Print(const std::vector<Result>& results) {
  std::printf("target %s, concurrency %d, %.1f s (+%.1f s warmup), payload %lld bytes\n",
              absl::GetFlag(FLAGS_target).c_str(), absl::GetFlag(FLAGS_concurrency), absl::GetFlag(FLAGS_duration),
              absl::GetFlag(FLAGS_warmup), static_cast<long long>(absl::GetFlag(FLAGS_payload_bytes)));
  std::printf("%-12s %8s %6s %10s %10s %10s %9s %9s %9s %9s\n", "method", "calls", "errors", "calls/s", "MB/s",
              "stream MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms");
  const Result* echo = nullptr;
  for (const Result& r : results) {
    if (r.method == "echo") echo = &r;
    std::printf("%-12s %8lld %6lld %10.1f %10.1f %10.1f %9.3f %9.3f %9.3f %9.3f\n", r.method.c_str(),
                static_cast<long long>(r.calls), static_cast<long long>(r.errors), r.calls_per_s, r.mb_per_s,
                r.stream_mb_per_s, r.p50, r.p90, r.p99, r.max);
  }
  for (const Result& r : results) {
    if (!r.first_error.empty()) std::printf("%s: first error: %s\n", r.method.c_str(), r.first_error.c_str());
  }
  if (echo == nullptr || echo->calls == 0) return;
  std::printf("ratio to echo (same run): p50 latency, calls/s, stream MB/s\n");
  for (const Result& r : results) {
    if (&r == echo || r.calls == 0) continue;
    std::printf("%-12s p50 %.2fx  calls/s %.2fx  stream MB/s %.2fx\n", r.method.c_str(), r.p50 / echo->p50,
                r.calls_per_s / echo->calls_per_s,
                echo->stream_mb_per_s > 0 ? r.stream_mb_per_s / echo->stream_mb_per_s : 0.0);
  }
}

void WriteCsv(const std::string& path, const std::vector<Result>& results) {
  const bool fresh = !std::ifstream(path).good();
  std::ofstream out(path, std::ios::app);
  if (fresh) {
    out << "label,method,concurrency,payload_bytes,seconds,calls,errors,calls_per_s,mb_per_s,p50_ms,p90_ms,p99_ms,"
           "max_ms,mean_ms,stream_mb_per_s\n";
  }
  for (const Result& r : results) {
    out << absl::GetFlag(FLAGS_label) << ',' << r.method << ',' << absl::GetFlag(FLAGS_concurrency) << ','
        << absl::GetFlag(FLAGS_payload_bytes) << ',' << r.seconds << ',' << r.calls << ',' << r.errors << ','
        << r.calls_per_s << ',' << r.mb_per_s << ',' << r.p50 << ',' << r.p90 << ',' << r.p99 << ',' << r.max << ','
        << r.mean << ',' << r.stream_mb_per_s << '\n';
  }
}

void WriteJson(const std::string& path, const std::vector<Result>& results) {
  std::ofstream out(path);
  out << "[\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    out << absl::StrCat("  {\"label\": \"", absl::GetFlag(FLAGS_label), "\", \"method\": \"", r.method,
                        "\", \"concurrency\": ", absl::GetFlag(FLAGS_concurrency),
                        ", \"payload_bytes\": ", absl::GetFlag(FLAGS_payload_bytes), ", \"seconds\": ", r.seconds,
                        ", \"calls\": ", r.calls, ", \"errors\": ", r.errors, ", \"calls_per_s\": ", r.calls_per_s,
                        ", \"mb_per_s\": ", r.mb_per_s, ", \"p50_ms\": ", r.p50, ", \"p90_ms\": ", r.p90,
                        ", \"p99_ms\": ", r.p99, ", \"max_ms\": ", r.max, ", \"mean_ms\": ", r.mean,
                        ", \"stream_mb_per_s\": ", r.stream_mb_per_s, "}")
        << (i + 1 < results.size() ? ",\n" : "\n");
  }
  out << "]\n";
}

int Main() {
  client::ChannelOptions options;
  options.address = absl::GetFlag(FLAGS_target);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::CreateChannelOrError(options);
  if (!channel.ok()) {
    std::fprintf(stderr, "primserve-load: %s\n", channel.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<std::vector<Method>> methods = BuildMethods(*channel);
  if (!methods.ok()) {
    std::fprintf(stderr, "primserve-load: %s\n", methods.status().ToString().c_str());
    return 2;
  }
  const std::vector<Result> results = Run(*methods);
  Print(results);
  if (!absl::GetFlag(FLAGS_csv).empty()) WriteCsv(absl::GetFlag(FLAGS_csv), results);
  if (!absl::GetFlag(FLAGS_json).empty()) WriteJson(absl::GetFlag(FLAGS_json), results);
  // A failing call or a method that never completed fails the run (the smoke test relies on it).
  for (const Result& r : results) {
    if (r.errors > 0 || r.calls == 0) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace primserve

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: absl::Mutex deadlock detection (a global lock
  // graph updated on every lock, gRPC's too) is on unless turned off; see server/main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage("primserve-load --target=host:port --methods=echo,sinusoidal --concurrency=8 ...");
  absl::ParseCommandLine(argc, argv);
  return primserve::bench::Main();
}
