// Shared pieces of the libFuzzer targets (tests/fuzz/*_fuzzer.cc).
//
// Input layout of the per-service targets: byte 0 selects the RPC (modulo the service's RPC
// count), the rest is the serialized request proto exactly as gRPC would hand it to the
// service. FitStream's payload is a sequence of messages, each a 2-byte little-endian length
// and that many bytes (see SplitMessages). tests/fuzz/make_corpus.py writes seeds in this layout.
//
// Every target runs the server's handler functions (the code behind each service's one-line
// method) with small limits, so that a valid request computes in microseconds and the fuzzer
// spends its time on parsing and validation: the path where a hostile request lands first.
//
// Example:
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     FuzzInput input(data, size);
//     v1::SinusoidalRequest request;
//     if (!input.Parse(&request)) return 0;
//     ...
//   }
#ifndef PRIMSERVE_TESTS_FUZZ_FUZZ_UTIL_H_
#define PRIMSERVE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/parallel.h"
#include "google/protobuf/message_lite.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/model_store.h"

namespace primserve {
namespace fuzz {

// One message of 64 KiB: at most 16384 float32 elements per tensor. Large enough for every
// validation branch (shapes, ranks, broadcasting, sizes over the limit), small enough that a
// valid request computes quickly even under ASan.
inline Limits FuzzLimits() { return Limits::ForMessageBytes(int64_t{1} << 16, int64_t{1} << 12); }

// Quiet logs (a line per input would flood the fuzzer's output) and one compute thread (the
// fuzzer looks for input-dependent bugs; thread interleavings are the TSan suite's job).
inline void InitOnce() {
  static const bool done = [] {
    SetLogLevel(LogLevel::kError);
    SetComputeThreads(1);
    return true;
  }();
  (void)done;
}

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : selector_(size > 0 ? data[0] : 0),
        payload_(reinterpret_cast<const char*>(data) + (size > 0 ? 1 : 0), size > 0 ? size - 1 : 0) {}

  // The RPC to call: one of `count`.
  int Select(int count) const { return selector_ % count; }
  absl::string_view payload() const { return payload_; }

  // False when the payload is not a valid message of that type (gRPC would have rejected it).
  bool Parse(google::protobuf::MessageLite* message) const {
    return message->ParseFromArray(payload_.data(), static_cast<int>(payload_.size()));
  }

 private:
  uint8_t selector_;
  absl::string_view payload_;
};

// The stream of a client-streaming RPC: [u16 little-endian length][bytes]..., at most
// `max_messages`; a truncated last record is kept as it is (a message cut short).
inline std::vector<absl::string_view> SplitMessages(absl::string_view bytes, size_t max_messages) {
  std::vector<absl::string_view> messages;
  while (bytes.size() >= 2 && messages.size() < max_messages) {
    const size_t length = static_cast<uint8_t>(bytes[0]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[1])) << 8);
    bytes.remove_prefix(2);
    messages.push_back(bytes.substr(0, length));
    bytes.remove_prefix(std::min(length, bytes.size()));
  }
  return messages;
}

// A model store in a fresh temporary directory holding the `seeds` (name -> model), so that
// requests naming a stored model reach the stored-model paths. Reset() deletes whatever an
// input stored and restores the seeds an input deleted or replaced, so every input starts from
// the same store. The directory is removed at exit.
class SeededStore {
 public:
  explicit SeededStore(std::vector<std::pair<std::string, v1::StoredModel>> seeds) : seeds_(std::move(seeds)) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/primserve-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) Die("mkdtemp failed");
    dir_ = pattern;
    absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir_);
    if (!store.ok()) Die(std::string(store.status().message()));
    store_ = *std::move(store);
    Reset();
  }
  ~SeededStore() {
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  ModelStore* get() { return store_.get(); }

  void Reset() {
    for (const ModelStore::EntryPtr& entry : store_->List()) {
      if (!IsSeed(entry->name)) (void)store_->Delete(entry->name);
    }
    for (const auto& [name, model] : seeds_) {
      absl::StatusOr<ModelStore::EntryPtr> entry = store_->Get(name);
      if (entry.ok() && SameContents((*entry)->model, model)) continue;
      if (entry.ok()) (void)store_->Delete(name);
      if (absl::Status put = store_->Put(name, model); !put.ok()) Die(std::string(put.message()));
    }
  }

 private:
  static void Die(const std::string& why) {
    std::fprintf(stderr, "fuzz: cannot set up the model store: %s\n", why.c_str());
    std::abort();
  }
  bool IsSeed(const std::string& name) const {
    for (const auto& seed : seeds_) {
      if (seed.first == name) return true;
    }
    return false;
  }
  static bool SameContents(v1::StoredModel a, v1::StoredModel b) {
    a.clear_created_unix_micros();
    b.clear_created_unix_micros();
    return a.SerializeAsString() == b.SerializeAsString();
  }

  std::vector<std::pair<std::string, v1::StoredModel>> seeds_;
  std::string dir_;
  std::unique_ptr<ModelStore> store_;
};

}  // namespace fuzz
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_FUZZ_FUZZ_UTIL_H_
