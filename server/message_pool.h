// MessagePool: request and response messages kept across calls of one method that carries large
// tensors (Echo, ApplyRope), so that each call parses its tensor's bytes into a buffer that
// already has the capacity and writes its answer into one that has it too.
//
// Why: gRPC's unary handler parses every request into a fresh message. For a tensor above 50 MB,
// protobuf reserves only 50 MB of a bytes field up front (a guard against hostile length
// prefixes) and regrows past it, so a 64 MiB request cost a 50 MB copy and a 100 MB allocation on
// top of the one copy it needs, and the response's bytes were fresh memory again. Parsing into a
// kept message is not enough by itself: Clear(), which every parse starts with, deletes
// submessages and so the tensor with its bytes. Lease::Parse therefore detaches the tensor
// field before clearing and merges the wire into it.
//
// Memory: at most `max_idle` pairs are kept, and a pair that holds over four times what its last
// call used goes back to the allocator instead, so a burst of large calls followed by small ones
// does not pin the large buffers.
//
// Example:
//   MessagePool<v1::EchoRequest, v1::EchoResponse> pool(2, "input");
//   MessagePool<...>::Lease lease = pool.Acquire();
//   if (!lease.Parse(wire)) ...;  // wire: the request's grpc::ByteBuffer
#ifndef PRIMSERVE_SERVER_MESSAGE_POOL_H_
#define PRIMSERVE_SERVER_MESSAGE_POOL_H_

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace primserve {

// Parses `wire` (a serialized message) into `message` as ParseFromZeroCopyStream would, except
// that when both the old contents and the wire have the singular message field `keep`, that
// submessage object is reused (cleared, keeping its strings' capacity) rather than deleted and
// allocated again. Returns false when the bytes do not parse.
bool ParseReusingField(grpc::ByteBuffer& wire, const google::protobuf::FieldDescriptor& keep,
                       google::protobuf::Message* message);

template <typename Request, typename Response>
class MessagePool {
 public:
  struct Pair {
    Request request;
    Response response;
  };

  // Returns its pair to the pool (or frees it) when destroyed.
  class Lease {
   public:
    Lease(MessagePool* pool, std::unique_ptr<Pair> pair) : pool_(pool), pair_(std::move(pair)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pair_ != nullptr) pool_->Return(std::move(pair_));
    }
    Request& request() { return pair_->request; }
    Response& response() { return pair_->response; }
    // The request from its wire bytes, reusing the pool's tensor (see the file comment).
    bool Parse(grpc::ByteBuffer& wire) { return ParseReusingField(wire, pool_->keep_, &pair_->request); }

   private:
    MessagePool* pool_;
    std::unique_ptr<Pair> pair_;
  };

  // `tensor_field`: the request's singular message field that carries the large tensor.
  MessagePool(size_t max_idle, const char* tensor_field)
      : max_idle_(max_idle), keep_(*Request::descriptor()->FindFieldByName(tensor_field)) {}

  Lease Acquire() {
    absl::MutexLock lock(&mu_);
    if (idle_.empty()) return Lease(this, std::make_unique<Pair>());
    std::unique_ptr<Pair> pair = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(pair));
  }

  size_t idle() const {
    absl::MutexLock lock(&mu_);
    return idle_.size();
  }

 private:
  // Worth keeping: it holds at most 4x what its last call used (plus 64 KiB of slack).
  static bool WorthKeeping(const Pair& pair) {
    const size_t used = pair.request.ByteSizeLong() + pair.response.ByteSizeLong();
    const size_t held = pair.request.SpaceUsedLong() + pair.response.SpaceUsedLong();
    return held <= 4 * used + (size_t{64} << 10);
  }

  void Return(std::unique_ptr<Pair> pair) {
    if (!WorthKeeping(*pair)) return;
    absl::MutexLock lock(&mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(pair));
  }

  const size_t max_idle_;
  const google::protobuf::FieldDescriptor& keep_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Pair>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_MESSAGE_POOL_H_
