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
#include "grpcpp/support/status.h"

namespace primserve {

// Parses `wire` (a serialized message) into `message` as ParseFromZeroCopyStream would, except
// that when both the old contents and the wire have the singular message field `keep`, that
// submessage object is reused (cleared, keeping its strings' capacity) rather than deleted and
// allocated again. Returns false when the bytes do not parse.
bool ParseReusingField(grpc::ByteBuffer& wire, const google::protobuf::FieldDescriptor& keep,
                       google::protobuf::Message* message);

// Serializes `message` into `wire` as gRPC's protobuf serializer would (the same message on the
// other side), except that when its singular field `tensor` (a v1.Tensor) holds at least
// kMinAliasedBytes of `data`, those bytes are not copied: the last slice of `wire` points into
// them and calls release(owner) when gRPC drops it; until then `message` must stay as it is.
// `message` must not live on an arena (its tensor is detached and put back while serializing).
// `aliased_bytes` says which: when false, release is not called and `message` is free at once.
// A status only from gRPC's own serializer (a message over 2 GiB).
inline constexpr size_t kMinAliasedBytes = size_t{1} << 20;
// Whether SerializeAliasingTensorData would reference `tensor`'s data (rather than copy it).
bool AliasesTensorData(const google::protobuf::Message& message, const google::protobuf::FieldDescriptor& tensor);
// gRPC's own serialization of `message` (every byte copied).
grpc::Status SerializeCopying(const google::protobuf::Message& message, grpc::ByteBuffer* wire);
grpc::Status SerializeAliasingTensorData(google::protobuf::Message& message,
                                         const google::protobuf::FieldDescriptor& tensor, void (*release)(void*),
                                         void* owner, grpc::ByteBuffer* wire, bool* aliased_bytes);

template <typename Request, typename Response>
class MessagePool {
 public:
  struct Pair {
    Request request;
    Response response;
  };

 private:
  // What leases return their pairs to. Shared, so that a lease whose response bytes gRPC is
  // still sending can outlive the pool (a server shutting down).
  struct Idle {
    explicit Idle(size_t max) : max_idle(max) {}

    void Return(std::unique_ptr<Pair> pair) {
      if (!WorthKeeping(*pair)) return;
      absl::MutexLock lock(&mu);
      if (pairs.size() < max_idle) pairs.push_back(std::move(pair));
    }

    const size_t max_idle;
    mutable absl::Mutex mu;
    std::vector<std::unique_ptr<Pair>> pairs ABSL_GUARDED_BY(mu);
  };

 public:
  // Returns its pair to the pool (or frees it) when destroyed.
  class Lease {
   public:
    Lease(const MessagePool* pool, std::unique_ptr<Pair> pair)
        : idle_(pool->idle_), keep_(pool->keep_), send_(pool->send_), pair_(std::move(pair)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pair_ != nullptr) idle_->Return(std::move(pair_));
    }
    Request& request() { return pair_->request; }
    Response& response() { return pair_->response; }
    // The request from its wire bytes, reusing the pool's tensor (see the file comment).
    bool Parse(grpc::ByteBuffer& wire) { return ParseReusingField(wire, keep_, &pair_->request); }

    // The response, serialized for sending (SerializeAliasingTensorData). When its tensor's
    // bytes are referenced rather than copied, the lease moves into the slice that references
    // them, and its pair returns to the pool when gRPC has sent them.
    // A copied (small) response returns the pair at once, with no heap lease.
    grpc::Status SerializeResponse(grpc::ByteBuffer* wire) && {
      if (!AliasesTensorData(pair_->response, send_)) {
        grpc::Status status = SerializeCopying(pair_->response, wire);
        idle_->Return(std::move(pair_));
        return status;
      }
      auto owner = std::make_unique<Lease>(std::move(*this));
      bool aliased = false;
      grpc::Status status = SerializeAliasingTensorData(owner->pair_->response, owner->send_, &Release, owner.get(),
                                                        wire, &aliased);
      if (aliased) owner.release();  // Now the slice's: deleted by Release.
      return status;
    }

   private:
    static void Release(void* lease) { delete static_cast<Lease*>(lease); }

    std::shared_ptr<Idle> idle_;
    const google::protobuf::FieldDescriptor& keep_;
    const google::protobuf::FieldDescriptor& send_;
    std::unique_ptr<Pair> pair_;
  };

  // `request_tensor` / `response_tensor`: the singular message fields that carry the large
  // tensor in and out.
  MessagePool(size_t max_idle, const char* request_tensor, const char* response_tensor)
      : idle_(std::make_shared<Idle>(max_idle)),
        keep_(*Request::descriptor()->FindFieldByName(request_tensor)),
        send_(*Response::descriptor()->FindFieldByName(response_tensor)) {}

  Lease Acquire() {
    absl::MutexLock lock(&idle_->mu);
    if (idle_->pairs.empty()) return Lease(this, std::make_unique<Pair>());
    std::unique_ptr<Pair> pair = std::move(idle_->pairs.back());
    idle_->pairs.pop_back();
    return Lease(this, std::move(pair));
  }

  size_t idle() const {
    absl::MutexLock lock(&idle_->mu);
    return idle_->pairs.size();
  }

 private:
  // Worth keeping: it holds at most 4x what its last call used (plus 64 KiB of slack).
  static bool WorthKeeping(const Pair& pair) {
    const size_t used = pair.request.ByteSizeLong() + pair.response.ByteSizeLong();
    const size_t held = pair.request.SpaceUsedLong() + pair.response.SpaceUsedLong();
    return held <= 4 * used + (size_t{64} << 10);
  }

  std::shared_ptr<Idle> idle_;
  const google::protobuf::FieldDescriptor& keep_;
  const google::protobuf::FieldDescriptor& send_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_MESSAGE_POOL_H_
