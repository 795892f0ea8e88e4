// ThreadSanitizer annotations for Debian's Abseil synchronization (scripts/sanitize.sh tsan
// builds this into libtsan_absl_sync.so and LD_PRELOADs it into the TSan test run).
//
// Why: TSan sees a lock only through instrumented code or its pthread interceptors. Debian's
// libabsl_synchronization is not built with TSan, and absl::Mutex does not use pthreads (its own
// atomics and futex waits), so every access guarded by an absl::Mutex (ours, and gRPC's, whose
// mutexes are absl::Mutex in 1.51) would be reported as a race. These interposers call the real
// function (found with dlsym(RTLD_NEXT)) and tell TSan the lock's happens-before edges: release
// before giving the lock up, acquire after getting it. Nothing is suppressed: a real race on
// data some thread touches without the lock is still reported.
//
// The symbols are those of Debian 12's libabsl-dev (inline namespace absl::debian3); the script
// checks that the library exports them, so another Abseil build fails loudly instead of
// silently checking nothing. __tsan_* are weak so that uninstrumented processes the test run
// starts (ctest, bash) load this library harmlessly.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace {

void Acquire(void* mu) {
  if (__tsan_acquire != nullptr) __tsan_acquire(mu);
}
void Release(void* mu) {
  if (__tsan_release != nullptr) __tsan_release(mu);
}

template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found after this library\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// The real function, looked up once per interposer.
#define PRIMSERVE_REAL(type, name) static const auto real = Real<type>(name)

}  // namespace

extern "C" {

// absl::Mutex::Lock / ReaderLock / TryLock: acquire once the lock is held.
void _ZN4absl7debian35Mutex4LockEv(void* mu) {
  PRIMSERVE_REAL(void (*)(void*), "_ZN4absl7debian35Mutex4LockEv");
  real(mu);
  Acquire(mu);
}
void _ZN4absl7debian35Mutex10ReaderLockEv(void* mu) {
  PRIMSERVE_REAL(void (*)(void*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(mu);
  Acquire(mu);
}
bool _ZN4absl7debian35Mutex7TryLockEv(void* mu) {
  PRIMSERVE_REAL(bool (*)(void*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(mu);
  if (locked) Acquire(mu);
  return locked;
}
bool _ZN4absl7debian35Mutex13ReaderTryLockEv(void* mu) {
  PRIMSERVE_REAL(bool (*)(void*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(mu);
  if (locked) Acquire(mu);
  return locked;
}

// absl::Mutex::Unlock / ReaderUnlock: release before the lock is given up. (A reader's release
// also orders later readers after it: that can hide a reader-reader pair, never invent a race.)
void _ZN4absl7debian35Mutex6UnlockEv(void* mu) {
  PRIMSERVE_REAL(void (*)(void*), "_ZN4absl7debian35Mutex6UnlockEv");
  Release(mu);
  real(mu);
}
void _ZN4absl7debian35Mutex12ReaderUnlockEv(void* mu) {
  PRIMSERVE_REAL(void (*)(void*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(mu);
  real(mu);
}

// LockWhen: like Lock. Await, AwaitWithDeadline and CondVar::Wait give the held lock up while
// waiting and hold it again on return: release before, acquire after. absl::Time (an int64 and
// a uint32) is passed as the two registers of a 16-byte trivially copyable struct.
struct Time {
  long long hi;
  unsigned lo;
};
void _ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(void* mu, const void* cond) {
  PRIMSERVE_REAL(void (*)(void*, const void*), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  real(mu, cond);
  Acquire(mu);
}
bool _ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(void* mu, const void* cond,
                                                                              Time deadline) {
  PRIMSERVE_REAL(bool (*)(void*, const void*, Time),
                 "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool met = real(mu, cond, deadline);
  Acquire(mu);  // Held on return either way.
  return met;
}
bool _ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(void* mu, const void* cond,
                                                                             Time timeout) {
  PRIMSERVE_REAL(bool (*)(void*, const void*, Time),
                 "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool met = real(mu, cond, timeout);
  Acquire(mu);
  return met;
}
void _ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(void* mu, const void* cond) {
  PRIMSERVE_REAL(void (*)(void*, const void*), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Release(mu);
  real(mu, cond);
  Acquire(mu);
}
bool _ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(void* mu, const void* cond, Time deadline) {
  PRIMSERVE_REAL(bool (*)(void*, const void*, Time),
                 "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Release(mu);
  const bool met = real(mu, cond, deadline);
  Acquire(mu);
  return met;
}
bool _ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(void* mu, const void* cond,
                                                                             Time timeout) {
  PRIMSERVE_REAL(bool (*)(void*, const void*, Time),
                 "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Release(mu);
  const bool met = real(mu, cond, timeout);
  Acquire(mu);
  return met;
}
void _ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(void* cv, void* mu) {
  PRIMSERVE_REAL(void (*)(void*, void*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(cv, mu);
  Acquire(mu);
}
bool _ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(void* cv, void* mu, Time deadline) {
  PRIMSERVE_REAL(bool (*)(void*, void*, Time), "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool timed_out = real(cv, mu, deadline);
  Acquire(mu);
  return timed_out;
}
bool _ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(void* cv, void* mu, Time timeout) {
  PRIMSERVE_REAL(bool (*)(void*, void*, Time), "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool timed_out = real(cv, mu, timeout);
  Acquire(mu);
  return timed_out;
}

}  // extern "C"
