#include "server/compute_stage.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace primserve {

ComputeStage::Slot& ComputeStage::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    stage_ = other.stage_;
    other.stage_ = nullptr;
  }
  return *this;
}

void ComputeStage::Slot::Release() {
  if (stage_ != nullptr) std::exchange(stage_, nullptr)->ReleaseOne();
}

ComputeStage::ComputeStage(int workers, int max_queue, Observer observer)
    : workers_(std::max(workers, 1)), max_queue_(std::max(max_queue, 0)), observer_(std::move(observer)) {}

absl::Status ComputeStage::Acquire(absl::Time deadline, const std::function<bool()>& cancelled, Slot* slot) {
  slot->Release();
  absl::MutexLock lock(&mu_);
  if (queue_.empty() && running_ < workers_) {
    ++running_;
    Notify();
    slot->stage_ = this;
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(queue_.size()) >= max_queue_) {
    return absl::ResourceExhaustedError(absl::StrCat("queue full: ", queue_.size(), " waiting for ", workers_,
                                                     " busy compute worker(s) (--max_queue=", max_queue_,
                                                     "); retry later or on another replica"));
  }
  const uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  Notify();
  auto my_turn = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return running_ < workers_ && queue_.front() == ticket;
  };
  const absl::Time start = absl::Now();
  absl::Status status;
  while (true) {
    if (mu_.AwaitWithDeadline(absl::Condition(&my_turn), std::min(deadline, absl::Now() + kPollInterval))) break;
    if (absl::Now() >= deadline) {
      status = absl::DeadlineExceededError(absl::StrCat("deadline passed after waiting ",
                                                        absl::FormatDuration(absl::Now() - start),
                                                        " in the compute queue; the call did not start"));
      break;
    }
    if (cancelled) {
      mu_.Unlock();  // The cancellation poll may take tens of microseconds; do not block others.
      const bool stop = cancelled();
      mu_.Lock();
      if (stop) {
        status = absl::CancelledError("cancelled while waiting in the compute queue; the call did not start");
        break;
      }
    }
  }
  queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
  if (status.ok()) {
    ++running_;
    slot->stage_ = this;
  }
  Notify();
  return status;
}

void ComputeStage::ReleaseOne() {
  absl::MutexLock lock(&mu_);
  --running_;
  Notify();
}

void ComputeStage::Notify() {
  if (observer_) observer_(running_, static_cast<int64_t>(queue_.size()));
}

int64_t ComputeStage::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int64_t ComputeStage::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size());
}

}  // namespace primserve
