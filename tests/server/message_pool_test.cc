#include "server/message_pool.h"

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "gtest/gtest.h"
#include "primserve/v1/diagnostics.pb.h"
#include "primserve/v1/position_encoding.pb.h"

namespace primserve {
namespace {

using Pool = MessagePool<v1::ApplyRopeRequest, v1::ApplyRopeResponse>;

grpc::ByteBuffer Wire(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

v1::ApplyRopeRequest Request(size_t bytes, bool inverse) {
  v1::ApplyRopeRequest request;
  request.mutable_input()->add_shape(static_cast<int64_t>(bytes / 4));
  request.mutable_input()->set_data(std::string(bytes, '\x01'));
  request.set_inverse(inverse);
  return request;
}

// Parses `sent` into a leased request and checks it equals what a fresh parse gives.
void ExpectParsesLikeAFreshMessage(Pool::Lease& lease, const v1::ApplyRopeRequest& sent) {
  grpc::ByteBuffer wire = Wire(sent);
  ASSERT_TRUE(lease.Parse(wire));
  EXPECT_EQ(lease.request().SerializeAsString(), sent.SerializeAsString());
  EXPECT_EQ(lease.request().has_input(), sent.has_input());
}

TEST(MessagePool, ParsesLikeAFreshMessageAndReusesTheTensorsBytes) {
  Pool pool(2, "input", "output");
  const char* bytes_before = nullptr;
  {
    Pool::Lease lease = pool.Acquire();
    ExpectParsesLikeAFreshMessage(lease, Request(1 << 20, true));
    bytes_before = lease.request().input().data().data();
  }
  ASSERT_EQ(pool.idle(), 1u);
  Pool::Lease lease = pool.Acquire();
  // A smaller tensor, no `inverse`: every field of the last call is gone, and the bytes land in
  // the buffer the last call left (no allocation).
  ExpectParsesLikeAFreshMessage(lease, Request(600 << 10, false));
  EXPECT_EQ(lease.request().input().data().data(), bytes_before);
  // A request without the tensor field still reads as having none.
  v1::ApplyRopeRequest no_input;
  no_input.add_positions(3.0);
  ExpectParsesLikeAFreshMessage(lease, no_input);
  // Bytes that are not a message are refused.
  grpc::Slice junk(std::string("\xff\xff\xff"));
  grpc::ByteBuffer bad(&junk, 1);
  EXPECT_FALSE(lease.Parse(bad));
}

TEST(MessagePool, KeepsAtMostMaxIdlePairs) {
  Pool pool(2, "input", "output");
  {
    Pool::Lease a = pool.Acquire(), b = pool.Acquire(), c = pool.Acquire();
    for (Pool::Lease* lease : {&a, &b, &c}) ExpectParsesLikeAFreshMessage(*lease, Request(100, false));
  }
  EXPECT_EQ(pool.idle(), 2u);
}

TEST(MessagePool, APairHoldingOverFourTimesWhatItUsedIsFreed) {
  Pool pool(2, "input", "output");
  {
    Pool::Lease lease = pool.Acquire();
    ExpectParsesLikeAFreshMessage(lease, Request(8 << 20, false));
  }
  ASSERT_EQ(pool.idle(), 1u);
  {
    // A small call on the large pair: 8 MiB held for 1 KiB used, so it goes back to the allocator.
    Pool::Lease lease = pool.Acquire();
    ExpectParsesLikeAFreshMessage(lease, Request(1024, false));
    EXPECT_GE(lease.request().input().data().capacity(), size_t{8} << 20);
  }
  EXPECT_EQ(pool.idle(), 0u);
  {
    Pool::Lease lease = pool.Acquire();
    ExpectParsesLikeAFreshMessage(lease, Request(1024, false));
  }
  EXPECT_EQ(pool.idle(), 1u);  // A fresh small pair is kept.
}

// What a receiver makes of `wire`: the message protobuf parses from its bytes.
v1::ApplyRopeResponse Received(const grpc::ByteBuffer& wire) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(wire.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  v1::ApplyRopeResponse response;
  EXPECT_TRUE(response.ParseFromString(bytes));
  return response;
}

// A response as ApplyRope leaves it: shape, dtype, `bytes` of data (and a stray `values` entry,
// so that every tensor field but data goes through the header).
void FillResponse(v1::ApplyRopeResponse* response, size_t bytes) {
  v1::Tensor* output = response->mutable_output();
  output->add_shape(3);
  output->add_shape(static_cast<int64_t>(bytes / 12));
  output->set_dtype(v1::DATA_TYPE_FLOAT32);
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 131 + (i >> 9));
  output->set_data(std::move(data));
  output->add_values(2.5f);
}

TEST(MessagePool, ALargeResponseIsSentFromItsOwnBytesAndTheLeaseWaitsForThem) {
  Pool pool(2, "input", "output");
  for (size_t bytes : {kMinAliasedBytes, (size_t{1} << 21) + 12 * 7, size_t{3} << 22}) {
    SCOPED_TRACE(bytes);
    Pool::Lease lease = pool.Acquire();
    ExpectParsesLikeAFreshMessage(lease, Request(bytes, false));
    FillResponse(&lease.response(), bytes);
    const v1::ApplyRopeResponse expected = lease.response();
    const char* data = lease.response().output().data().data();
    grpc::ByteBuffer wire;
    ASSERT_TRUE(std::move(lease).SerializeResponse(&wire).ok());
    // The same message on the other side, and the tensor's bytes are the response's own.
    EXPECT_EQ(Received(wire).SerializeAsString(), expected.SerializeAsString());
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(wire.Dump(&slices).ok());
    EXPECT_EQ(reinterpret_cast<const char*>(slices.back().begin()), data);
    EXPECT_EQ(slices.back().size(), bytes);
    // The pair is out until gRPC lets go of the bytes, then back in the pool for the next call.
    EXPECT_EQ(pool.idle(), 0u);
    slices.clear();
    wire.Clear();
    EXPECT_EQ(pool.idle(), 1u);
  }
}

TEST(MessagePool, SmallOrTensorlessResponsesAreCopiedAndTheLeaseReturnsAtOnce) {
  Pool pool(2, "input", "output");
  for (size_t bytes : {size_t{0}, size_t{12}, kMinAliasedBytes - 12}) {
    SCOPED_TRACE(bytes);
    Pool::Lease lease = pool.Acquire();
    if (bytes > 0) FillResponse(&lease.response(), bytes);
    const v1::ApplyRopeResponse expected = lease.response();
    grpc::ByteBuffer wire;
    ASSERT_TRUE(std::move(lease).SerializeResponse(&wire).ok());
    EXPECT_EQ(pool.idle(), 1u);
    EXPECT_EQ(Received(wire).SerializeAsString(), expected.SerializeAsString());
    EXPECT_EQ(Received(wire).has_output(), bytes > 0);
    pool.Acquire();  // Takes the pair and returns it (the next loop's lease gets it again).
  }
}

TEST(MessagePool, BytesStillBeingSentOutliveThePool) {
  grpc::ByteBuffer wire;
  v1::ApplyRopeResponse expected;
  {
    Pool pool(2, "input", "output");
    Pool::Lease lease = pool.Acquire();
    FillResponse(&lease.response(), size_t{2} << 20);
    expected = lease.response();
    ASSERT_TRUE(std::move(lease).SerializeResponse(&wire).ok());
  }
  // The pool is gone (a server shutting down); the bytes are intact and freeing them is safe
  // (the sanitizer builds would catch a use after free).
  EXPECT_EQ(Received(wire).SerializeAsString(), expected.SerializeAsString());
  wire.Clear();
}

}  // namespace
}  // namespace primserve
