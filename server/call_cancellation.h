// CallCancellation: "should this call stop?" for kernels that poll between steps (see
// AttentionOptions::cancelled), from a grpc::ServerContext.
//
// True once the deadline has passed (checked on every poll: a clock read) or once gRPC reports
// the call cancelled (the client went away, or a shutdown ran past its grace period). That
// second check runs for one caller at a time and at most once per kRecheckInterval: in the sync
// API, ServerContext::IsCancelled() plucks the call's completion queue (measured ~60 us, about
// one attention tile; polled per tile it doubled an 8192 x 64 attention), and gRPC allows at
// most 6 concurrent pluckers per completion queue, fewer than the kernel's threads.
//
// Example:
//   options.cancelled = CallCancellation::For(context);
#ifndef PRIMSERVE_SERVER_CALL_CANCELLATION_H_
#define PRIMSERVE_SERVER_CALL_CANCELLATION_H_

#include <atomic>
#include <chrono>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

namespace primserve {

class CallCancellation {
 public:
  static constexpr std::chrono::milliseconds kRecheckInterval{20};

  // `context` may be null (never cancelled); it must outlive this object.
  explicit CallCancellation(const grpc::ServerContext* context);
  CallCancellation(const CallCancellation&) = delete;
  CallCancellation& operator=(const CallCancellation&) = delete;

  // Thread-safe; cheap except for one caller per interval.
  bool Cancelled();

  // A callable for AttentionOptions::cancelled that owns its CallCancellation.
  static std::function<bool()> For(const grpc::ServerContext* context);

 private:
  const grpc::ServerContext* const context_;
  const std::chrono::system_clock::time_point deadline_;
  std::atomic<bool> cancelled_{false};
  std::atomic<std::chrono::steady_clock::rep> next_check_;
  absl::Mutex mu_;  // Serialises IsCancelled().
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_CALL_CANCELLATION_H_
