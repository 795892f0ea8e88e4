#include "server/message_pool.h"

#include <climits>
#include <cstdint>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace primserve {
namespace {

using google::protobuf::internal::WireFormatLite;

// Whether the top level of the serialized message has field `number`. Length-delimited fields
// are skipped, not copied, so this costs a walk over the top-level tags only.
bool HasTopLevelField(grpc::ByteBuffer& wire, int number) {
  grpc::ProtoBufferReader reader(&wire);
  google::protobuf::io::CodedInputStream in(&reader);
  in.SetTotalBytesLimit(INT_MAX);
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == number) return true;
    if (!WireFormatLite::SkipField(&in, tag)) return false;
  }
  return false;
}

}  // namespace

bool ParseReusingField(grpc::ByteBuffer& wire, const google::protobuf::FieldDescriptor& keep,
                       google::protobuf::Message* message) {
  const google::protobuf::Reflection* reflection = message->GetReflection();
  std::unique_ptr<google::protobuf::Message> kept;
  if (reflection->HasField(*message, &keep)) kept.reset(reflection->ReleaseMessage(message, &keep));
  message->Clear();
  // Put it back only when the wire sets the field, so that has_<field>() still says whether the
  // request carried it.
  if (kept != nullptr && HasTopLevelField(wire, keep.number())) {
    kept->Clear();  // A tensor's Clear() keeps its bytes' capacity.
    reflection->SetAllocatedMessage(message, kept.release(), &keep);
  }
  grpc::ProtoBufferReader reader(&wire);
  if (!reader.status().ok()) return false;
  google::protobuf::io::CodedInputStream in(&reader);
  in.SetTotalBytesLimit(INT_MAX);  // gRPC's message size limit has already applied.
  return message->MergeFromCodedStream(&in) && in.ConsumedEntireMessage();
}

}  // namespace primserve
