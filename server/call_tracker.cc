#include "server/call_tracker.h"

namespace primserve {

CallTracker::Admission CallTracker::Admit() {
  absl::MutexLock lock(&mu_);
  if (draining_) return Admission(nullptr);
  ++in_flight_;
  return Admission(this);
}

void CallTracker::Release() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void CallTracker::StopAdmitting() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

int64_t CallTracker::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
  grace_over_ = in_flight_ > 0;
  return in_flight_;
}

int64_t CallTracker::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool CallTracker::grace_over() const {
  absl::MutexLock lock(&mu_);
  return grace_over_;
}

bool CallTracker::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

}  // namespace primserve
