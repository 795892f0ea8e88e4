// Typed calls to the Models service: the server's model store (--model_dir). Models get there
// through LogisticRegression.Fit / FitStream / FitFromStatistics with a `model_name`.
//
// Example:
//   ModelsClient models(CreateChannel(ChannelOptions()));
//   absl::StatusOr<v1::ListResponse> list = models.List();
//   for (const v1::ModelInfo& info : list->models()) std::cout << info.name() << "\n";
//   absl::StatusOr<v1::GetResponse> iris = models.Get("iris");   // iris->logistic().weights()
//   absl::Status deleted = models.Delete("iris");                // NOT_FOUND if there is none
#ifndef PRIMSERVE_CLIENT_MODELS_H_
#define PRIMSERVE_CLIENT_MODELS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/v1/models.grpc.pb.h"

namespace primserve {
namespace client {

class ModelsClient {
 public:
  explicit ModelsClient(std::shared_ptr<grpc::Channel> channel);

  // Stored models of `kind` (UNSPECIFIED: all) sorted by name, and the unreadable files.
  absl::StatusOr<v1::ListResponse> List(v1::ModelKind kind = v1::MODEL_KIND_UNSPECIFIED, const CallOptions& call = {});
  // INVALID_ARGUMENT for a bad name, NOT_FOUND when nothing is stored under it.
  absl::StatusOr<v1::GetResponse> Get(const std::string& name, const CallOptions& call = {});
  absl::Status Delete(const std::string& name, const CallOptions& call = {});

 private:
  std::unique_ptr<v1::Models::Stub> stub_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_MODELS_H_
