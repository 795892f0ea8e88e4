// CallTracker: admission and drain. Every RPC is admitted through it; once draining starts
// new calls are refused (UNAVAILABLE) while admitted calls run to completion, and Drain()
// waits for them.
//
// Why not rely on grpc::Server::Shutdown(deadline) alone: in gRPC 1.51 a pending shutdown
// deadline keeps an executor thread polling until the deadline passes, so a process that
// drained in 50 ms would still take the whole grace period to exit. Draining here first lets
// the final Shutdown use a deadline of "now".
#ifndef PRIMSERVE_SERVER_CALL_TRACKER_H_
#define PRIMSERVE_SERVER_CALL_TRACKER_H_

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace primserve {

class CallTracker {
 public:
  // Admits a call unless draining; the returned object releases it when destroyed.
  class Admission {
   public:
    explicit Admission(CallTracker* tracker) : tracker_(tracker) {}
    Admission(Admission&& other) noexcept : tracker_(other.tracker_) { other.tracker_ = nullptr; }
    Admission& operator=(Admission&& other) noexcept {
      if (this != &other) {
        if (tracker_ != nullptr) tracker_->Release();
        tracker_ = other.tracker_;
        other.tracker_ = nullptr;
      }
      return *this;
    }
    ~Admission() {
      if (tracker_ != nullptr) tracker_->Release();
    }
    explicit operator bool() const { return tracker_ != nullptr; }

   private:
    CallTracker* tracker_;
  };

  Admission Admit();
  // Refuses new calls from now on (Drain does too; this is for doing it before other steps).
  void StopAdmitting();
  // Refuses new calls from now on and waits until the admitted ones finish or `deadline`
  // passes. Returns the number still running at return; those are then cancelled by the
  // server's shutdown, and grace_over() turns true.
  int64_t Drain(absl::Time deadline);
  int64_t in_flight() const;
  bool draining() const;
  // A drain ran out of time with calls still running: a call cancelled from now on was cancelled
  // by the shutdown, not (only) by its caller.
  bool grace_over() const;

 private:
  void Release();

  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool grace_over_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_CALL_TRACKER_H_
