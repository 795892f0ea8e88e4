#include "server/call_cancellation.h"

#include <memory>

namespace primserve {

CallCancellation::CallCancellation(const grpc::ServerContext* context)
    : context_(context),
      deadline_(context != nullptr ? context->deadline() : std::chrono::system_clock::time_point::max()),
      next_check_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

std::function<bool()> CallCancellation::For(const grpc::ServerContext* context) {
  auto cancellation = std::make_shared<CallCancellation>(context);
  return [cancellation] { return cancellation->Cancelled(); };
}

bool CallCancellation::Cancelled() {
  if (cancelled_.load(std::memory_order_relaxed)) return true;
  if (context_ == nullptr) return false;
  if (std::chrono::system_clock::now() > deadline_) {
    cancelled_.store(true, std::memory_order_relaxed);
    return true;
  }
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  if (now < next_check_.load(std::memory_order_relaxed)) return false;
  // One poller at a time; the others go on computing rather than queue behind it.
  if (!mu_.TryLock()) return false;
  next_check_.store(now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(kRecheckInterval).count(),
                    std::memory_order_relaxed);
  if (context_->IsCancelled()) cancelled_.store(true, std::memory_order_relaxed);
  mu_.Unlock();
  return cancelled_.load(std::memory_order_relaxed);
}

}  // namespace primserve
