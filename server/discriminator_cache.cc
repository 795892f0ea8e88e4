#include "server/discriminator_cache.h"

#include <utility>
#include <vector>

#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/discriminator_conversion.h"

namespace primserve {
namespace {

absl::StatusOr<std::shared_ptr<const CompiledNetwork>> Compile(const v1::Network& proto, absl::string_view field,
                                                               const Limits& limits) {
  ASSIGN_OR_RETURN(Network network, NetworkFromProto(proto, field, limits));
  return CompiledNetwork::Create(std::move(network));
}

using Freed = std::vector<std::shared_ptr<const CompiledNetwork>>;

// Drops the least recently used item while `map` holds `max` or more (room for one more). Their
// networks go to `freed`, to be destroyed once the cache's lock is released.
template <typename Map>
void MakeRoom(Map& map, size_t max, Freed& freed) {
  while (!map.empty() && map.size() >= max) {
    auto oldest = map.begin();
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    }
    freed.push_back(std::move(oldest->second.compiled));
    map.erase(oldest);
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CompiledNetwork>> DiscriminatorCache::ForStored(
    const ModelStore::EntryPtr& entry, absl::string_view field, const Limits& limits) {
  {
    absl::MutexLock lock(&mu_);
    auto it = stored_.find(entry->name);
    if (it != stored_.end() && it->second.entry.lock() == entry) {
      it->second.last_use = ++clock_;
      return it->second.compiled;
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const CompiledNetwork> compiled,
                   Compile(entry->model.discriminator(), field, limits));
  DropGone();
  Freed freed;  // Declared before the lock: destroyed after it is released.
  absl::MutexLock lock(&mu_);
  if (auto it = stored_.find(entry->name); it != stored_.end()) {  // Another version, or a concurrent compile.
    freed.push_back(std::move(it->second.compiled));
    stored_.erase(it);
  }
  if (max_stored_ == 0) return compiled;
  MakeRoom(stored_, max_stored_, freed);
  stored_[entry->name] = StoredItem{entry, compiled, ++clock_};
  return compiled;
}

void DiscriminatorCache::DropGone() {
  Freed gone;  // Destroyed after the lock is released.
  absl::MutexLock lock(&mu_);
  for (auto it = stored_.begin(); it != stored_.end();) {
    if (it->second.entry.expired()) {
      gone.push_back(std::move(it->second.compiled));
      it = stored_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<std::shared_ptr<const CompiledNetwork>> DiscriminatorCache::ForInline(const v1::Network& network,
                                                                                    absl::string_view field,
                                                                                    const Limits& limits) {
  const size_t bytes = network.ByteSizeLong();
  if (max_inline_ == 0 || bytes > static_cast<size_t>(max_inline_bytes_)) return Compile(network, field, limits);
  std::string key;
  {
    // Deterministic: equal messages give equal bytes (map ordering, field order).
    google::protobuf::io::StringOutputStream stream(&key);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    network.SerializeToCodedStream(&coded);
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = inline_.find(key);
    if (it != inline_.end()) {
      it->second.last_use = ++clock_;
      return it->second.compiled;
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const CompiledNetwork> compiled, Compile(network, field, limits));
  Freed freed;  // Declared before the lock: destroyed after it is released.
  absl::MutexLock lock(&mu_);
  if (auto it = inline_.find(key); it != inline_.end()) {  // Compiled by a concurrent call meanwhile.
    it->second.last_use = ++clock_;
    freed.push_back(std::move(compiled));
    return it->second.compiled;
  }
  MakeRoom(inline_, max_inline_, freed);
  inline_[std::move(key)] = InlineItem{compiled, ++clock_};
  return compiled;
}

size_t DiscriminatorCache::stored_size() const {
  absl::MutexLock lock(&mu_);
  return stored_.size();
}

size_t DiscriminatorCache::inline_size() const {
  absl::MutexLock lock(&mu_);
  return inline_.size();
}

}  // namespace primserve
