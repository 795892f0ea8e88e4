#include "primserve/client/attention.h"

#include <utility>

namespace primserve {
namespace client {

AttentionClient::AttentionClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Attention::NewStub(std::move(channel))) {}

absl::StatusOr<AttendResult> AttentionClient::Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                                     const v1::AttendRequest& options, const CallOptions& call) {
  v1::AttendRequest request = options;
  *request.mutable_query() = ToProto(query);
  *request.mutable_key() = ToProto(key);
  *request.mutable_value() = ToProto(value);
  return Attend(request, call);
}

absl::StatusOr<AttendResult> AttentionClient::Attend(const v1::AttendRequest& request, const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::AttendResponse response;
  const grpc::Status status = stub_->Attend(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  AttendResult result;
  absl::StatusOr<Tensor> output = FromProto(response.output());
  if (!output.ok()) return output.status();
  result.output = *std::move(output);
  if (response.has_weights()) {
    absl::StatusOr<Tensor> weights = FromProto(response.weights());
    if (!weights.ok()) return weights.status();
    result.weights = *std::move(weights);
  }
  return result;
}

absl::StatusOr<v1::EstimateCostResponse> AttentionClient::EstimateCost(const v1::EstimateCostRequest& request,
                                                                       const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::EstimateCostResponse response;
  const grpc::Status status = stub_->EstimateCost(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::EstimateCostResponse> AttentionClient::EstimateCost(int64_t seq_len, int64_t head_size,
                                                                       int64_t num_heads, const CallOptions& call) {
  v1::EstimateCostRequest request;
  request.set_seq_len(seq_len);
  request.set_head_size(head_size);
  request.set_num_heads(num_heads);
  return EstimateCost(request, call);
}

}  // namespace client
}  // namespace primserve
