// ComputeStage: the bounded stage every compute-bearing call passes through.
//
// Execution model (why the sync API): primserve's handlers are synchronous CPU work on oneDNN /
// OpenMP, and the sync API gives each call its own thread from a pool gRPC grows and shrinks
// (bounded by the server's thread quota, see server.cc). Rather than re-plumbing every handler
// into callback reactors plus an executor, the stage bounds the threads that can be *computing*
// (`workers`, each running kernels on `ComputeThreads()` OpenMP threads, so workers x threads =
// cores and no core is oversubscribed) and the threads that may *wait* for a worker slot
// (`max_queue`). A call beyond both fails at once with RESOURCE_EXHAUSTED, so a flood costs one
// short-lived handler thread per excess call, never a growing backlog; gRPC's polling threads are
// never the ones waiting, because a waiting handler thread is not a poller.
//
// Slots are granted in arrival order. A waiting call gives up when its deadline passes
// (DEADLINE_EXCEEDED) or it is cancelled (CANCELLED; polled every kPollInterval).
//
// Example:
//   ComputeStage stage(/*workers=*/1, /*max_queue=*/64);
//   ComputeStage::Slot slot;
//   RETURN_IF_ERROR(stage.Acquire(deadline, cancelled, &slot));
//   ... compute; the slot is released when `slot` goes out of scope (or by slot.Release()).
#ifndef PRIMSERVE_SERVER_COMPUTE_STAGE_H_
#define PRIMSERVE_SERVER_COMPUTE_STAGE_H_

#include <cstdint>
#include <deque>
#include <functional>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace primserve {

class ComputeStage {
 public:
  static constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

  // Holds one worker slot; movable, released on destruction or by Release().
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : stage_(other.stage_) { other.stage_ = nullptr; }
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }
    void Release();
    bool held() const { return stage_ != nullptr; }

   private:
    friend class ComputeStage;
    ComputeStage* stage_ = nullptr;
  };

  // Called with (running, waiting) after every change, serialised (for gauges).
  using Observer = std::function<void(int64_t running, int64_t waiting)>;

  // workers >= 1, max_queue >= 0 (0: no waiting, a call needs a free worker at once).
  ComputeStage(int workers, int max_queue, Observer observer = nullptr);
  ComputeStage(const ComputeStage&) = delete;
  ComputeStage& operator=(const ComputeStage&) = delete;

  // Takes a worker slot into `*slot`, waiting in arrival order if all are busy.
  // RESOURCE_EXHAUSTED: max_queue calls already wait. DEADLINE_EXCEEDED: `deadline` passed while
  // waiting. CANCELLED: `cancelled` (may be null) returned true while waiting.
  absl::Status Acquire(absl::Time deadline, const std::function<bool()>& cancelled, Slot* slot);

  int workers() const { return workers_; }
  int max_queue() const { return max_queue_; }
  int64_t running() const;
  int64_t waiting() const;

 private:
  void ReleaseOne();
  void Notify() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int workers_;
  const int max_queue_;
  const Observer observer_;
  mutable absl::Mutex mu_;
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<uint64_t> queue_ ABSL_GUARDED_BY(mu_);  // Tickets of waiting calls, oldest first.
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_COMPUTE_STAGE_H_
