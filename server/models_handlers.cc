#include "server/models_handlers.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace primserve {

void ModelInfoFromEntry(const ModelStore::Entry& entry, v1::ModelInfo* info) {
  info->set_name(entry.name);
  info->set_kind(entry.model.kind());
  info->set_file_bytes(entry.file_bytes);
  info->set_created_unix_seconds(static_cast<double>(entry.model.created_unix_micros()) * 1e-6);
  if (entry.model.has_logistic()) {
    const v1::Tensor& weights = entry.model.logistic().weights();
    if (weights.shape_size() == 2) {
      info->set_num_classes(weights.shape(0));
      info->set_num_features(weights.shape(1));
    }
  }
  if (entry.model.has_discriminator()) {
    const auto& input_shape = entry.model.discriminator().input_shape();
    info->mutable_input_shape()->Add(input_shape.begin(), input_shape.end());
  }
}

absl::Status HandleListModels(const ModelStore& store, const v1::ListRequest& request, v1::ListResponse* response) {
  if (!v1::ModelKind_IsValid(request.kind())) {
    return absl::InvalidArgumentError(absl::StrCat("kind: unknown enum value ", request.kind()));
  }
  for (const ModelStore::EntryPtr& entry : store.List()) {
    if (request.kind() != v1::MODEL_KIND_UNSPECIFIED && entry->model.kind() != request.kind()) continue;
    ModelInfoFromEntry(*entry, response->add_models());
  }
  for (const ModelStore::Unreadable& file : store.unreadable()) {
    v1::UnreadableModel* unreadable = response->add_unreadable();
    unreadable->set_file(file.file);
    unreadable->set_reason(file.reason);
  }
  return absl::OkStatus();
}

absl::Status HandleGetModel(const ModelStore& store, const v1::GetRequest& request, v1::GetResponse* response) {
  ASSIGN_OR_RETURN(const ModelStore::EntryPtr entry, store.Get(request.name(), "name"));
  ModelInfoFromEntry(*entry, response->mutable_info());
  if (entry->model.has_logistic()) *response->mutable_logistic() = entry->model.logistic();
  if (entry->model.has_discriminator()) *response->mutable_discriminator() = entry->model.discriminator();
  return absl::OkStatus();
}

absl::Status HandleDeleteModel(ModelStore& store, const v1::DeleteRequest& request, v1::DeleteResponse*) {
  return store.Delete(request.name(), "name");
}

}  // namespace primserve
