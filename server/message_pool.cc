#include "server/message_pool.h"

#include <climits>
#include <cstdint>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"
#include "primserve/v1/tensor.pb.h"

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

bool AliasesTensorData(const google::protobuf::Message& message, const google::protobuf::FieldDescriptor& tensor) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  if (!reflection->HasField(message, &tensor)) return false;
  const auto* proto = google::protobuf::DynamicCastToGenerated<v1::Tensor>(&reflection->GetMessage(message, &tensor));
  return proto != nullptr && proto->data().size() >= kMinAliasedBytes;
}

grpc::Status SerializeCopying(const google::protobuf::Message& message, grpc::ByteBuffer* wire) {
  bool own_buffer = false;
  return grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, wire, &own_buffer);
}

grpc::Status SerializeAliasingTensorData(google::protobuf::Message& message,
                                         const google::protobuf::FieldDescriptor& tensor, void (*release)(void*),
                                         void* owner, grpc::ByteBuffer* wire, bool* aliased_bytes) {
  *aliased_bytes = false;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  if (!AliasesTensorData(message, tensor)) return SerializeCopying(message, wire);
  auto* aliased = google::protobuf::DynamicCastToGenerated<v1::Tensor>(reflection->MutableMessage(&message, &tensor));
  // Everything but the data bytes, serialized as usual: the message without the tensor, then
  // the tensor without its data (both detached for the moment, not copied).
  std::string data;
  data.swap(*aliased->mutable_data());
  std::string head;
  {
    std::unique_ptr<google::protobuf::Message> detached(reflection->ReleaseMessage(&message, &tensor));
    message.AppendToString(&head);
    reflection->SetAllocatedMessage(&message, detached.release(), &tensor);
  }
  std::string tensor_head = aliased->SerializeAsString();
  aliased->mutable_data()->swap(data);
  const std::string& bytes = aliased->data();
  // Then the tensor field, with the data field last (protobuf parses fields in any order).
  {
    google::protobuf::io::StringOutputStream stream(&head);
    google::protobuf::io::CodedOutputStream out(&stream);
    const size_t data_field = WireFormatLite::TagSize(v1::Tensor::kDataFieldNumber, WireFormatLite::TYPE_BYTES) +
                              google::protobuf::io::CodedOutputStream::VarintSize64(bytes.size()) + bytes.size();
    WireFormatLite::WriteTag(tensor.number(), WireFormatLite::WIRETYPE_LENGTH_DELIMITED, &out);
    out.WriteVarint64(tensor_head.size() + data_field);
    out.WriteRaw(tensor_head.data(), static_cast<int>(tensor_head.size()));
    WireFormatLite::WriteTag(v1::Tensor::kDataFieldNumber, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, &out);
    out.WriteVarint64(bytes.size());
  }
  grpc::Slice slices[] = {grpc::Slice(head),
                          grpc::Slice(const_cast<char*>(bytes.data()), bytes.size(), release, owner)};
  *wire = grpc::ByteBuffer(slices, 2);
  *aliased_bytes = true;
  return grpc::Status::OK;
}

}  // namespace primserve
