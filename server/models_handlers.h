// Models handlers: the model store (server/model_store.h) over the wire. No network involved.
// Statuses: INVALID_ARGUMENT for a bad `name` (or an unknown `kind` in List), NOT_FOUND for a
// name with no model, and the store's write statuses for Delete.
#ifndef PRIMSERVE_SERVER_MODELS_HANDLERS_H_
#define PRIMSERVE_SERVER_MODELS_HANDLERS_H_

#include "absl/status/status.h"
#include "primserve/v1/models.pb.h"
#include "server/model_store.h"

namespace primserve {

absl::Status HandleListModels(const ModelStore& store, const v1::ListRequest& request, v1::ListResponse* response);

absl::Status HandleGetModel(const ModelStore& store, const v1::GetRequest& request, v1::GetResponse* response);

absl::Status HandleDeleteModel(ModelStore& store, const v1::DeleteRequest& request, v1::DeleteResponse* response);

// The description of a stored entry (num_features / num_classes from a logistic model's shape,
// input_shape from a discriminator's network).
void ModelInfoFromEntry(const ModelStore::Entry& entry, v1::ModelInfo* info);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_MODELS_HANDLERS_H_
