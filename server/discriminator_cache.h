// DiscriminatorCache: compiled discriminator networks kept between calls, so that the oneDNN
// primitives and reordered weights each CompiledNetwork caches per batch chunk size (see
// core/discriminator.h) are built once per network, not once per request.
//
// Two bounded maps:
//   stored  model name -> the CompiledNetwork of the store entry it was compiled from. An entry
//           replaced by Register (a new ModelStore::Entry object) or deleted is recompiled /
//           dropped: the cache holds the entry weakly and compares identity, so it never serves
//           a stale network. At most `max_stored` networks (least recently used dropped first).
//   inline  an inline Network's deterministic serialization -> its CompiledNetwork, compared byte
//           for byte (no hash collisions can serve another network). At most `max_inline`
//           networks, each at most `max_inline_bytes` serialized (larger ones compile per call).
// Memory held: the networks' weights (in core and oneDNN formats) plus each CompiledNetwork's
// plan cache (CompileOptions::max_cached_plans plans; their idle workspaces are bounded process-
// wide by --max_idle_workspace_bytes, see SetIdleWorkspaceBudget).
//
// Thread-safe. Compilation runs outside the lock; two concurrent first calls may both compile
// (both results are correct; for a stored model the later insert is cached, for an inline
// network the first). Networks dropped from the cache are destroyed after its lock is released.
//
// Example:
//   DiscriminatorCache cache;
//   ASSIGN_OR_RETURN(auto compiled, cache.ForInline(request.network(), "network", limits));
#ifndef PRIMSERVE_SERVER_DISCRIMINATOR_CACHE_H_
#define PRIMSERVE_SERVER_DISCRIMINATOR_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/discriminator.h"
#include "primserve/v1/discriminator.pb.h"
#include "server/limits.h"
#include "server/model_store.h"

namespace primserve {

class DiscriminatorCache {
 public:
  explicit DiscriminatorCache(size_t max_stored = 64, size_t max_inline = 4,
                              int64_t max_inline_bytes = int64_t{16} << 20)
      : max_stored_(max_stored), max_inline_(max_inline), max_inline_bytes_(max_inline_bytes) {}
  DiscriminatorCache(const DiscriminatorCache&) = delete;
  DiscriminatorCache& operator=(const DiscriminatorCache&) = delete;

  // The compiled network of `entry` (a MODEL_KIND_DISCRIMINATOR entry of the store). Errors as
  // NetworkFromProto with `field` naming the network (the caller decides what a stored model
  // failing validation means).
  absl::StatusOr<std::shared_ptr<const CompiledNetwork>> ForStored(const ModelStore::EntryPtr& entry,
                                                                  absl::string_view field, const Limits& limits);

  // The compiled network of an inline `network`. Errors as NetworkFromProto naming `field`.
  absl::StatusOr<std::shared_ptr<const CompiledNetwork>> ForInline(const v1::Network& network,
                                                                  absl::string_view field, const Limits& limits);

  // Networks currently cached (for tests).
  size_t stored_size() const;
  // Drops the networks of stored models the store no longer holds (replaced or deleted, and no
  // call still using them).
  void DropGone();
  size_t inline_size() const;

 private:
  struct StoredItem {
    std::weak_ptr<const ModelStore::Entry> entry;
    std::shared_ptr<const CompiledNetwork> compiled;
    uint64_t last_use = 0;
  };
  struct InlineItem {
    std::shared_ptr<const CompiledNetwork> compiled;
    uint64_t last_use = 0;
  };

  const size_t max_stored_;
  const size_t max_inline_;
  const int64_t max_inline_bytes_;
  mutable absl::Mutex mu_;
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, StoredItem, std::less<>> stored_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, InlineItem, std::less<>> inline_ ABSL_GUARDED_BY(mu_);
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DISCRIMINATOR_CACHE_H_
