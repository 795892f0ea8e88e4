// The model-store file reader and the Models service: bytes -> a `<name>.model` file ->
// ModelStore::Open (the start-up load) -> Models.List / Get / Delete and the conversions a
// stored model meets when it is used (LogisticModelFromProto, NetworkFromProto).
//
// Byte 0 even: the rest is the whole file, header included (magic, version, sizes, CRC).
// Byte 0 odd: the rest is the payload (a serialized StoredModel); the harness writes a valid
// header around it (kind = (byte 0 >> 1) % 4, so also mismatching and unknown kinds) with the
// right CRC-32C, so that mutations reach the payload parser instead of dying at the checksum.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "server/crc32c.h"
#include "server/discriminator_conversion.h"
#include "server/logistic_conversion.h"
#include "server/models_handlers.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace primserve;

std::string WithHeader(absl::string_view payload, uint32_t kind) {
  std::string file(ModelStore::kHeaderBytes, '\0');
  std::memcpy(file.data(), "PSMODEL\n", 8);
  const uint32_t version = ModelStore::kFormatVersion;
  const uint64_t payload_bytes = payload.size();
  std::memcpy(file.data() + 8, &version, 4);
  std::memcpy(file.data() + 12, &kind, 4);
  std::memcpy(file.data() + 16, &payload_bytes, 8);
  const uint32_t crc = Crc32cExtend(Crc32c(absl::string_view(file.data(), 24)), payload);
  std::memcpy(file.data() + 24, &crc, 4);
  file.append(payload.data(), payload.size());
  return file;
}

void WriteFileOrDie(const std::string& path, absl::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  size_t done = 0;
  while (ok && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  if (fd >= 0) ::close(fd);
  if (!ok) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// The directory the fuzzed file is written to; emptied after every input.
const std::string& Directory() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/primserve-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*dir, ignored);
    });
    return new std::string(pattern);
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InitOnce();
  const fuzz::FuzzInput input(data, size);
  const std::string file = input.Select(2) == 0 ? std::string(input.payload())
                                                : WithHeader(input.payload(), (data[0] >> 1) % 4);
  // The decoder alone, then the whole start-up load of a directory holding that file.
  (void)ModelStore::DecodeFile(file);
  const std::string& dir = Directory();
  WriteFileOrDie(dir + "/fuzzed.model", file);
  absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir);
  if (!store.ok()) std::abort();  // The directory exists: Open must not fail on a file's contents.

  const Limits limits = fuzz::FuzzLimits();
  v1::ListRequest list;
  v1::ListResponse listed;
  (void)HandleListModels(**store, list, &listed);
  for (const ModelStore::EntryPtr& entry : (*store)->List()) {
    v1::GetRequest get;
    get.set_name(entry->name);
    v1::GetResponse got;
    (void)HandleGetModel(**store, get, &got);
    if (entry->model.has_logistic()) (void)LogisticModelFromProto(entry->model.logistic(), "stored model", limits);
    if (entry->model.has_discriminator()) (void)NetworkFromProto(entry->model.discriminator(), "stored model", limits);
  }
  v1::DeleteRequest remove;
  remove.set_name("fuzzed");
  v1::DeleteResponse removed;
  (void)HandleDeleteModel(**store, remove, &removed);
  ::unlink((dir + "/fuzzed.model").c_str());  // In case Delete refused (it must not).
  return 0;
}
