#include "server/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <exception>
#include <filesystem>
#include <system_error>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/dnnl_context.h"
#include "server/allocator.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

namespace primserve {
namespace {

// 100 us .. 60 s: a Sinusoidal call is tens of microseconds, a large fit tens of seconds.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *buckets;
}

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",      "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  return index >= 0 && index < 17 ? kNames[index] : "UNKNOWN";
}

// The standard process metrics (names as the Prometheus client libraries export them), read from
// /proc at scrape time: resident memory, open file descriptors, CPU seconds.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    auto add = [&](const char* name, const char* help, prometheus::MetricType type, double value) {
      prometheus::MetricFamily family{name, help, type, {}};
      family.metric.emplace_back();
      if (type == prometheus::MetricType::Counter) {
        family.metric.back().counter.value = value;
      } else {
        family.metric.back().gauge.value = value;
      }
      families.push_back(std::move(family));
    };
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    long long pages_total = 0, pages_resident = 0;
    if (std::FILE* statm = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(statm, "%lld %lld", &pages_total, &pages_resident) == 2) {
        add("process_resident_memory_bytes", "Resident memory size in bytes", prometheus::MetricType::Gauge,
            static_cast<double>(pages_resident) * page);
        add("process_virtual_memory_bytes", "Virtual memory size in bytes", prometheus::MetricType::Gauge,
            static_cast<double>(pages_total) * page);
      }
      std::fclose(statm);
    }
    std::error_code error;
    double fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
         !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
      ++fds;
    }
    if (!error) add("process_open_fds", "Open file descriptors", prometheus::MetricType::Gauge, fds);
    struct rusage usage {};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
      add("process_cpu_seconds_total", "User and system CPU time in seconds", prometheus::MetricType::Counter, cpu);
    }
    if (const std::optional<double> heap = HeapAllocatedBytes()) {
      add("primserve_heap_allocated_bytes", "Bytes in live heap allocations, by the allocator's count",
          prometheus::MetricType::Gauge, *heap);
    }
    return families;
  }
};

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("primserve_requests_total")
                    .Help("Calls finished, by method and gRPC status code")
                    .Register(*registry_)),
      queue_seconds_(prometheus::BuildHistogram()
                         .Name("primserve_request_queue_seconds")
                         .Help("Time a call waited for a compute worker")
                         .Register(*registry_)),
      compute_seconds_(prometheus::BuildHistogram()
                           .Name("primserve_request_compute_seconds")
                           .Help("Time a call spent in its handler, kernels included")
                           .Register(*registry_)),
      received_bytes_(prometheus::BuildCounter()
                          .Name("primserve_request_received_bytes_total")
                          .Help("Request message bytes received")
                          .Register(*registry_)),
      sent_bytes_(prometheus::BuildCounter()
                      .Name("primserve_request_sent_bytes_total")
                      .Help("Response message bytes sent")
                      .Register(*registry_)),
      in_flight_(prometheus::BuildGauge()
                     .Name("primserve_in_flight_requests")
                     .Help("Calls admitted and not yet finished")
                     .Register(*registry_)
                     .Add({})),
      compute_running_(prometheus::BuildGauge()
                           .Name("primserve_compute_running")
                           .Help("Compute workers busy")
                           .Register(*registry_)
                           .Add({})),
      queue_depth_(prometheus::BuildGauge()
                       .Name("primserve_compute_queue_depth")
                       .Help("Calls waiting for a compute worker")
                       .Register(*registry_)
                       .Add({})) {
  prometheus::BuildGauge()
      .Name("primserve_build_info")
      .Help("Build information; the value is always 1")
      .Register(*registry_)
      .Add({{"version", PRIMSERVE_VERSION}, {"onednn", DnnlVersionString()}, {"isa", DnnlIsaName()}})
      .Set(1);
  process_ = std::make_shared<ProcessCollector>();
}

Metrics::~Metrics() = default;

Metrics::MethodSeries& Metrics::Series(absl::string_view method) {
  return series_.try_emplace(method).first->second;
}

void Metrics::CountRequest(MethodSeries& series, absl::string_view method, grpc::StatusCode code) {
  const int index = static_cast<int>(code);
  prometheus::Counter*& requests = series.requests[index >= 0 && index < 17 ? index : 2];
  if (requests == nullptr) requests = &requests_.Add({{"method", std::string(method)}, {"code", CodeName(code)}});
  requests->Increment();
}

void Metrics::RecordRefused(absl::string_view method, grpc::StatusCode code) {
  absl::MutexLock lock(&mu_);
  CountRequest(Series(method), method, code);
}

void Metrics::Record(const Call& call) {
  absl::MutexLock lock(&mu_);
  MethodSeries& series = Series(call.method);
  CountRequest(series, call.method, call.code);
  if (series.queue == nullptr) {
    const prometheus::Labels labels = {{"method", std::string(call.method)}};
    series.queue = &queue_seconds_.Add(labels, LatencyBuckets());
    series.compute = &compute_seconds_.Add(labels, LatencyBuckets());
    series.received = &received_bytes_.Add(labels);
    series.sent = &sent_bytes_.Add(labels);
  }
  series.queue->Observe(call.queue_seconds);
  series.compute->Observe(call.compute_seconds);
  series.received->Increment(static_cast<double>(call.received_bytes));
  series.sent->Increment(static_cast<double>(call.sent_bytes));
}

void Metrics::SetComputeStage(int64_t running, int64_t waiting) {
  compute_running_.Set(static_cast<double>(running));
  queue_depth_.Set(static_cast<double>(waiting));
}

absl::StatusOr<int> Metrics::Expose(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics_address: cannot serve /metrics on ", address, " (", e.what(), ")"));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(process_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string Metrics::Text() const {
  std::ostringstream out;
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : process_->Collect()) families.push_back(std::move(family));
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace primserve
