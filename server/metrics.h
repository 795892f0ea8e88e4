// Metrics: the server's Prometheus metrics (prometheus-cpp), served as text at /metrics on
// --metrics_address.
//
//   primserve_requests_total{method,code}            calls finished, by gRPC status code name
//                                                    (calls refused by the token check included)
//   primserve_request_queue_seconds{method}          time waiting for a compute worker
//   primserve_request_compute_seconds{method}        time in the handler (kernels included)
//   primserve_request_received_bytes_total{method}   request message bytes
//   primserve_request_sent_bytes_total{method}       response message bytes
//   primserve_in_flight_requests                     calls admitted and not finished
//   primserve_compute_running / _queue_depth         compute-stage workers busy / calls waiting
//   primserve_build_info{version,onednn,isa}         1
//   process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
//   process_cpu_seconds_total                        the standard process metrics, from /proc
//   primserve_heap_allocated_bytes                   live heap bytes, by the allocator's count
//                                                    (server/allocator.h): unlike the resident
//                                                    set, without the allocator's cached memory
//
// Thread-safe; per-method series are created on a method's first call.
#ifndef PRIMSERVE_SERVER_METRICS_H_
#define PRIMSERVE_SERVER_METRICS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/status_code_enum.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace primserve {

class Metrics {
 public:
  struct Call {
    absl::string_view method;  // "primserve.v1.Attention/Attend"
    grpc::StatusCode code = grpc::StatusCode::OK;
    double queue_seconds = 0;
    double compute_seconds = 0;
    int64_t received_bytes = 0;
    int64_t sent_bytes = 0;
  };

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void Record(const Call& call);
  // A call refused before any handler ran (a missing or bad bearer token, a data method on the
  // admin port): counted in primserve_requests_total only, with no latency or byte samples.
  void RecordRefused(absl::string_view method, grpc::StatusCode code);
  prometheus::Gauge& in_flight() { return in_flight_; }
  void SetComputeStage(int64_t running, int64_t waiting);

  // Serves /metrics over HTTP on `address` ("host:port"; port 0 picks one). UNAVAILABLE if it
  // cannot listen. Returns the bound port.
  absl::StatusOr<int> Expose(const std::string& address);
  // The text exposition format, as /metrics serves it.
  std::string Text() const;

 private:
  struct MethodSeries {
    std::array<prometheus::Counter*, 17> requests{};  // By grpc::StatusCode; created on first use.
    // Created by the method's first handled call: a method whose calls were all refused before
    // any handler (auth) has no latency or byte series.
    prometheus::Histogram* queue = nullptr;
    prometheus::Histogram* compute = nullptr;
    prometheus::Counter* received = nullptr;
    prometheus::Counter* sent = nullptr;
  };
  MethodSeries& Series(absl::string_view method) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountRequest(MethodSeries& series, absl::string_view method, grpc::StatusCode code)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& compute_seconds_;
  prometheus::Family<prometheus::Counter>& received_bytes_;
  prometheus::Family<prometheus::Counter>& sent_bytes_;
  prometheus::Gauge& in_flight_;
  prometheus::Gauge& compute_running_;
  prometheus::Gauge& queue_depth_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, MethodSeries> series_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<prometheus::Collectable> process_;  // process_resident_memory_bytes, ...
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_METRICS_H_
