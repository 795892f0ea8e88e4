// What a server tells a reflection client (grpc.reflection.v1alpha, as grpcurl, grpc_cli and
// Postman ask): the services it lists, and whether it describes a symbol. One stream per call,
// with a 10 s deadline.
//
// Example:
//   absl::StatusOr<std::vector<std::string>> names = ListedServices(channel);
//   ASSERT_TRUE(names.ok()) << names.status();
//   EXPECT_THAT(*names, Contains("primserve.v1.Attention"));
#ifndef PRIMSERVE_TESTS_E2E_REFLECTION_CLIENT_H_
#define PRIMSERVE_TESTS_E2E_REFLECTION_CLIENT_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "tests/e2e/reflection_subset.grpc.pb.h"

namespace primserve {
namespace testing {

namespace reflection_internal {

using Request = grpc::reflection::v1alpha::ServerReflectionRequest;
using Response = grpc::reflection::v1alpha::ServerReflectionResponse;

// One request and its response on a stream of its own; an error when the stream fails.
inline absl::StatusOr<Response> Ask(const std::shared_ptr<grpc::Channel>& channel, const Request& request) {
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  Response response;
  const bool answered = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) return absl::UnavailableError(absl::StrCat("reflection: ", status.error_message()));
  if (!answered) return absl::UnavailableError("reflection: the stream ended without a response");
  return response;
}

}  // namespace reflection_internal

// The names of the services the server lists (list_services "*").
inline absl::StatusOr<std::vector<std::string>> ListedServices(const std::shared_ptr<grpc::Channel>& channel) {
  reflection_internal::Request request;
  request.set_list_services("*");
  absl::StatusOr<reflection_internal::Response> response = reflection_internal::Ask(channel, request);
  if (!response.ok()) return response.status();
  std::vector<std::string> names;
  for (const auto& service : response->list_services_response().service()) names.push_back(service.name());
  return names;
}

// OK when the server answers file_containing_symbol for `symbol` with at least one file
// descriptor; NOT_FOUND with the server's message when it answers with an error.
inline absl::Status DescribesSymbol(const std::shared_ptr<grpc::Channel>& channel, const std::string& symbol) {
  reflection_internal::Request request;
  request.set_file_containing_symbol(symbol);
  absl::StatusOr<reflection_internal::Response> response = reflection_internal::Ask(channel, request);
  if (!response.ok()) return response.status();
  if (response->has_error_response()) {
    return absl::NotFoundError(absl::StrCat(symbol, ": ", response->error_response().error_message()));
  }
  if (response->file_descriptor_response().file_descriptor_proto_size() == 0) {
    return absl::NotFoundError(absl::StrCat(symbol, ": no file descriptor in the answer"));
  }
  return absl::OkStatus();
}

}  // namespace testing
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_E2E_REFLECTION_CLIENT_H_
