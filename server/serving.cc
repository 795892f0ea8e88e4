#include "server/serving.h"

#include <chrono>
#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "core/parallel.h"
#include "server/call_cancellation.h"
#include "server/log.h"
#include "server/status_mapping.h"

namespace primserve {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;

// 16 hex digits from a per-thread generator seeded once from the OS.
std::string GenerateRequestId() {
  thread_local std::mt19937_64 generator(std::random_device{}());
  return absl::StrFormat("%016x", generator());
}

// Printable ASCII only, at most kMaxRequestIdBytes: the id is echoed into logs and metadata.
bool UsableRequestId(grpc::string_ref id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

absl::Time Deadline(const grpc::ServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

double Milliseconds(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

}  // namespace

CallScope::CallScope(Serving& serving, grpc::ServerContext* context, const Method& method, int64_t request_bytes)
    : serving_(serving),
      context_(context),
      method_(method),
      start_(absl::Now()),
      queued_(absl::ZeroDuration()),
      compute_start_(start_),
      received_bytes_(request_bytes) {
  serving_.metrics.in_flight().Increment();
  if (context_ != nullptr) {
    const auto& metadata = context_->client_metadata();
    const auto it = metadata.find("x-request-id");
    if (it != metadata.end() && UsableRequestId(it->second)) request_id_.assign(it->second.data(), it->second.size());
  }
  if (request_id_.empty()) request_id_ = GenerateRequestId();
}

absl::Status CallScope::Begin() {
  admission_ = serving_.tracker.Admit();
  if (!admission_) return absl::UnavailableError("primserve is shutting down; retry on another replica");
  if (method_.computes) {
    absl::Status status = AcquireSlot();
    if (!status.ok()) return status;
    // The kernels of this call run on the configured OpenMP team size (an OpenMP setting is
    // per thread, and gRPC's handler threads are not the thread that configured it).
    BindComputeThreads();
  }
  compute_start_ = absl::Now();
  return absl::OkStatus();
}

absl::Status CallScope::AcquireSlot() {
  const absl::Time deadline = context_ != nullptr ? Deadline(context_) : absl::InfiniteFuture();
  const absl::Time queued_at = absl::Now();
  if (queued_at >= deadline) {
    return absl::DeadlineExceededError("the deadline had passed before the call could start");
  }
  std::function<bool()> cancelled;
  if (context_ != nullptr) cancelled = [this] { return context_->IsCancelled(); };
  absl::Status status = serving_.stage.Acquire(deadline, cancelled, &slot_);
  queued_ += absl::Now() - queued_at;
  if (status.ok() && absl::Now() >= deadline) {
    slot_.Release();
    return absl::DeadlineExceededError(absl::StrCat("the deadline passed while the call waited ",
                                                    absl::FormatDuration(queued_), " for a compute worker"));
  }
  return status;
}

grpc::Status CallScope::End(const absl::Status& handler_status, int64_t response_bytes) {
  slot_.Release();
  const absl::Time end = absl::Now();
  // Kernels report "cancelled" when their cancellation poll fires; when that was the deadline,
  // say so (the client sees DEADLINE_EXCEEDED either way; logs and metrics should agree).
  absl::Status status = handler_status;
  // Likewise when the shutdown's grace period (--drain_seconds) ran out.
  if (status.code() == absl::StatusCode::kCancelled && context_ != nullptr && end >= Deadline(context_)) {
    status = absl::DeadlineExceededError(absl::StrCat("the deadline passed ", absl::FormatDuration(end - start_),
                                                      " after the call arrived; its work was abandoned"));
  } else if (status.code() == absl::StatusCode::kCancelled && serving_.tracker.grace_over()) {
    status = absl::CancelledError(absl::StrCat("the server shut down: its drain period (--drain_seconds) ended ",
                                               absl::FormatDuration(end - start_),
                                               " after the call arrived; its work was abandoned"));
  }
  admission_ = CallTracker::Admission(nullptr);
  grpc::Status wire = ToGrpcStatus(status);
  // Not on UNAVAILABLE: response headers commit a call, and gRPC clients then no longer retry it
  // (a draining replica's refusal must stay retryable on another replica).
  if (context_ != nullptr && status.code() != absl::StatusCode::kUnavailable) {
    context_->AddInitialMetadata("x-request-id", request_id_);
  }
  Metrics::Call call;
  call.method = method_.name;
  call.code = wire.error_code();
  call.queue_seconds = absl::ToDoubleSeconds(queued_);
  call.compute_seconds = absl::ToDoubleSeconds(std::max(end - compute_start_, absl::ZeroDuration()));
  call.received_bytes = received_bytes_;
  call.sent_bytes = response_bytes;
  serving_.metrics.Record(call);
  serving_.metrics.in_flight().Decrement();
  const LogLevel level = status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown ||
                                 status.code() == absl::StatusCode::kDataLoss
                             ? LogLevel::kWarning
                             : LogLevel::kInfo;
  if (LogEnabled(level)) {
    LogLine(level, absl::StrFormat("rpc %s %s %.3f ms (queue %.3f ms) in %d out %d id=%s peer=%s%s%s", method_.name,
                                   absl::StatusCodeToString(status.code()), Milliseconds(end - start_),
                                   Milliseconds(queued_), received_bytes_, response_bytes, request_id_,
                                   context_ != nullptr ? context_->peer() : std::string("-"),
                                   status.ok() ? "" : ": ", status.ok() ? "" : wire.error_message()));
  }
  return wire;
}

grpc::Status RefuseUnparsed(Serving& serving, grpc::ServerContext* context, const Method& method, int64_t bytes,
                            const std::string& type) {
  CallScope call(serving, context, method, bytes);
  return call.End(absl::InvalidArgumentError(absl::StrCat("the request's ", bytes, " bytes do not parse as a ", type,
                                                          " message")),
                  0);
}

grpc::Status RecordUnreceived(Serving& serving, grpc::ServerContext* context, const Method& method) {
  CallScope call(serving, context, method, 0);
  return call.End(absl::ResourceExhaustedError("the request message was not received: larger than "
                                               "--max_message_bytes, or the client cancelled while sending it"),
                  0);
}

int MethodIndex(const std::string& service_full_name, const std::string& method) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_full_name);
  const google::protobuf::MethodDescriptor* found = service == nullptr ? nullptr : service->FindMethodByName(method);
  if (found == nullptr) {
    Log(LogLevel::kError, "no method ", method, " in service ", service_full_name);
    std::abort();  // A programming error, caught by any test that starts a server.
  }
  return found->index();
}

}  // namespace primserve
