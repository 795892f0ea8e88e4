#include "server/message_pool.h"

#include <string>

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
  Pool pool(2, "input");
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
  Pool pool(2, "input");
  {
    Pool::Lease a = pool.Acquire(), b = pool.Acquire(), c = pool.Acquire();
    for (Pool::Lease* lease : {&a, &b, &c}) ExpectParsesLikeAFreshMessage(*lease, Request(100, false));
  }
  EXPECT_EQ(pool.idle(), 2u);
}

TEST(MessagePool, APairHoldingOverFourTimesWhatItUsedIsFreed) {
  Pool pool(2, "input");
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

}  // namespace
}  // namespace primserve
