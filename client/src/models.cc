#include "primserve/client/models.h"

#include <utility>

namespace primserve {
namespace client {

ModelsClient::ModelsClient(std::shared_ptr<grpc::Channel> channel) : stub_(v1::Models::NewStub(std::move(channel))) {}

absl::StatusOr<v1::ListResponse> ModelsClient::List(v1::ModelKind kind, const CallOptions& call) {
  v1::ListRequest request;
  request.set_kind(kind);
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::ListResponse response;
  const grpc::Status status = stub_->List(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::GetResponse> ModelsClient::Get(const std::string& name, const CallOptions& call) {
  v1::GetRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::GetResponse response;
  const grpc::Status status = stub_->Get(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status ModelsClient::Delete(const std::string& name, const CallOptions& call) {
  v1::DeleteRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::DeleteResponse response;
  return FromGrpcStatus(stub_->Delete(&context, request, &response));
}

}  // namespace client
}  // namespace primserve
