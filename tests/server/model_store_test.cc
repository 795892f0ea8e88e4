// The model store on a real directory: names, the file format (round trip, every kind of
// corruption skipped on load), restart, replacement rules, write failures that leave nothing
// behind, and concurrent writers and readers.
#include "server/model_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crc32c.h"
#include "tests/server/model_dir_files.h"

namespace primserve {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

v1::StoredModel Logistic(int64_t classes, int64_t features, float seed) {
  v1::StoredModel model;
  model.set_kind(v1::MODEL_KIND_LOGISTIC);
  v1::LogisticModel* logistic = model.mutable_logistic();
  logistic->mutable_weights()->add_shape(classes);
  logistic->mutable_weights()->add_shape(features);
  for (int64_t i = 0; i < classes * features; ++i) logistic->mutable_weights()->add_values(seed + 0.5f * i);
  logistic->mutable_bias()->add_shape(classes);
  for (int64_t c = 0; c < classes; ++c) {
    logistic->mutable_bias()->add_values(-seed - c);
    logistic->add_priors(1.0 / static_cast<double>(classes));
  }
  return model;
}

// Equal contents, ignoring the creation time the store sets.
bool SameModel(v1::StoredModel a, v1::StoredModel b) {
  a.clear_created_unix_micros();
  b.clear_created_unix_micros();
  return a.SerializeAsString() == b.SerializeAsString();
}

std::string ReadAll(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

void WriteAll(const fs::path& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << bytes;
}

std::vector<std::string> Names(const ModelStore& store) {
  std::vector<std::string> names;
  for (const ModelStore::EntryPtr& entry : store.List()) names.push_back(entry->name);
  return names;
}

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/primserve-model-store-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    root_ = dir_template;
    dir_ = root_ / "models";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  std::unique_ptr<ModelStore> Open() {
    absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir_.string());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  fs::path root_;
  fs::path dir_;
};

TEST(Crc32c, KnownVectorsAndChaining) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);  // The CRC-32C check value.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros.
  EXPECT_EQ(Crc32cExtend(Crc32c("1234"), "56789"), 0xE3069283u);
}

TEST(ModelStoreName, AcceptsTheDocumentedAlphabetOnly) {
  const std::vector<std::string> goods = {"a", "iris", "iris-v1.2_final", "...", ".hidden", "A9", std::string(128, 'x')};
  for (const std::string& good : goods) {
    SCOPED_TRACE(good);
    EXPECT_TRUE(ModelStore::ValidateName(good, "model_name").ok());
  }
  const std::vector<std::string> bads = {"", ".", "..", "../x", "a/b", "/etc/passwd", "a b", "x\\y",
                                        "caf\xc3\xa9", std::string("a\0b", 3), std::string(129, 'x'), "x:y", "~"};
  for (const std::string& bad : bads) {
    SCOPED_TRACE(bad);
    const absl::Status status = ModelStore::ValidateName(bad, "model_name");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("model_name: expected a model name matching"));
  }
  EXPECT_THAT(std::string(ModelStore::ValidateName("../x", "name").message()), HasSubstr("got \"../x\""));
}

TEST(ModelStoreFile, RoundTripsAndRejectsEveryCorruption) {
  const v1::StoredModel model = Logistic(3, 4, 1.5f);
  const std::string bytes = ModelStore::EncodeFile(model);
  ASSERT_GT(bytes.size(), ModelStore::kHeaderBytes);
  EXPECT_EQ(bytes.substr(0, 8), "PSMODEL\n");
  absl::StatusOr<v1::StoredModel> back = ModelStore::DecodeFile(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(SameModel(*back, model));

  struct Case {
    std::string name;
    std::string bytes;
    absl::StatusCode code;
    std::string message;
  };
  std::string flipped_payload = bytes;
  flipped_payload[bytes.size() / 2 + 16] ^= 0x01;
  std::string flipped_kind = bytes;
  flipped_kind[12] = 2;
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  std::string newer = bytes;
  newer[8] = 2;
  const std::vector<Case> cases = {
      {"empty", "", absl::StatusCode::kDataLoss, "truncated: 0 bytes"},
      {"partial header", bytes.substr(0, 31), absl::StatusCode::kDataLoss, "truncated: 31 bytes"},
      {"header only", bytes.substr(0, 32), absl::StatusCode::kDataLoss, "truncated"},
      {"last byte missing", bytes.substr(0, bytes.size() - 1), absl::StatusCode::kDataLoss, "truncated"},
      {"trailing byte", bytes + "x", absl::StatusCode::kDataLoss, "trailing bytes"},
      {"bit flip", flipped_payload, absl::StatusCode::kDataLoss, "checksum mismatch"},
      {"kind flip", flipped_kind, absl::StatusCode::kDataLoss, "checksum mismatch"},
      {"bad magic", bad_magic, absl::StatusCode::kDataLoss, "bad magic"},
      {"newer version", newer, absl::StatusCode::kFailedPrecondition, "format version 2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status = ModelStore::DecodeFile(c.bytes).status();
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST_F(ModelStoreTest, PutGetListDeleteRoundTrip) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::is_directory(dir_));  // Created by Open.
  EXPECT_THAT(store->List(), IsEmpty());
  ASSERT_TRUE(store->Put("iris", Logistic(3, 4, 1)).ok());
  ASSERT_TRUE(store->Put("adult.v2", Logistic(2, 7, 2)).ok());
  EXPECT_THAT(Names(*store), ElementsAre("adult.v2", "iris"));
  EXPECT_THAT(ModelDirFiles(dir_), ElementsAre("adult.v2.model", "iris.model"));

  absl::StatusOr<ModelStore::EntryPtr> iris = store->Get("iris");
  ASSERT_TRUE(iris.ok()) << iris.status();
  EXPECT_TRUE(SameModel((*iris)->model, Logistic(3, 4, 1)));
  EXPECT_GT((*iris)->model.created_unix_micros(), 0);
  EXPECT_EQ((*iris)->file_bytes, static_cast<int64_t>(fs::file_size(dir_ / "iris.model")));

  const absl::Status missing = store->Get("nope", "model_name").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("model_name: no model named \"nope\""));
  EXPECT_EQ(store->Get("../iris").status().code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(store->Delete("iris").ok());
  EXPECT_EQ(store->Get("iris").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Delete("iris").code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ModelDirFiles(dir_), ElementsAre("adult.v2.model"));
  // The entry handed out before the delete stays valid.
  EXPECT_EQ((*iris)->name, "iris");
}

TEST_F(ModelStoreTest, PathTraversalNamesNeverTouchTheFileSystem) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  for (const char* name : {"../x", "..", ".", "a/b", "../../etc/passwd", ""}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(store->Put(name, Logistic(2, 2, 1)).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->Get(name).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->Delete(name).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(ModelDirFiles(dir_), IsEmpty());
  EXPECT_THAT(ModelDirFiles(root_), ElementsAre("models"));
}

TEST_F(ModelStoreTest, ARestartedStoreServesEveryStoredModel) {
  {
    std::unique_ptr<ModelStore> store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Put(absl::StrCat("m", i), Logistic(2 + i, 3, i)).ok());
    ASSERT_TRUE(store->Put("m2", Logistic(4, 5, 42)).ok());  // Replaced: the new one survives.
  }
  std::unique_ptr<ModelStore> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Names(*reopened), ElementsAre("m0", "m1", "m2", "m3", "m4"));
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ModelStore::EntryPtr> entry = reopened->Get(absl::StrCat("m", i));
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_TRUE(SameModel((*entry)->model, i == 2 ? Logistic(4, 5, 42) : Logistic(2 + i, 3, i))) << i;
  }
  EXPECT_THAT(reopened->unreadable(), IsEmpty());
}

TEST_F(ModelStoreTest, CorruptFilesAreSkippedAndReportedNotFatal) {
  {
    std::unique_ptr<ModelStore> store = Open();
    ASSERT_NE(store, nullptr);
    for (const char* name : {"good", "truncated", "flipped", "empty"}) ASSERT_TRUE(store->Put(name, Logistic(3, 8, 1)).ok());
  }
  const std::string bytes = ReadAll(dir_ / "truncated.model");
  WriteAll(dir_ / "truncated.model", bytes.substr(0, bytes.size() / 2));
  std::string flipped = bytes;
  flipped[40] ^= 0x10;
  WriteAll(dir_ / "flipped.model", flipped);
  WriteAll(dir_ / "empty.model", "");
  WriteAll(dir_ / "bad name!.model", bytes);                     // Not a valid model name.
  fs::create_directory(dir_ / "subdir.model");                    // Not a regular file.
  WriteAll(dir_ / "README.txt", "not a model");                   // Ignored: not *.model.
  WriteAll(dir_ / "good.model.123-4.tmp", bytes.substr(0, 10));   // A crash mid-write: removed.

  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(Names(*store), ElementsAre("good"));
  std::vector<std::string> files;
  std::string reasons;
  for (const ModelStore::Unreadable& u : store->unreadable()) {
    files.push_back(u.file);
    reasons += u.file + ": " + u.reason + "\n";
  }
  EXPECT_THAT(files, ElementsAre("bad name!.model", "empty.model", "flipped.model", "subdir.model",
                                 "truncated.model"));
  EXPECT_THAT(reasons, HasSubstr("truncated.model: truncated"));
  EXPECT_THAT(reasons, HasSubstr("flipped.model: checksum mismatch"));
  EXPECT_THAT(reasons, HasSubstr("empty.model: truncated: 0 bytes"));
  EXPECT_FALSE(fs::exists(dir_ / "good.model.123-4.tmp"));
  EXPECT_TRUE(fs::exists(dir_ / "README.txt"));

  // A corrupt file can be replaced by a new fit of that name, or deleted.
  ASSERT_TRUE(store->Put("truncated", Logistic(2, 2, 9)).ok());
  ASSERT_TRUE(store->Delete("flipped").ok());
  EXPECT_FALSE(fs::exists(dir_ / "flipped.model"));
  files.clear();
  for (const ModelStore::Unreadable& u : store->unreadable()) files.push_back(u.file);
  EXPECT_THAT(files, ElementsAre("bad name!.model", "empty.model", "subdir.model"));
  EXPECT_THAT(Names(*Open()), ElementsAre("good", "truncated"));
}

// A file whose checksum holds but whose model the content check refuses (written by hand, or
// by another build) is unreadable like a corrupt one: not listed, Get says why, and a later
// valid file of that name is served.
TEST_F(ModelStoreTest, AModelFailingTheContentCheckIsUnreadableNotListed) {
  {
    std::unique_ptr<ModelStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("good", Logistic(3, 4, 1)).ok());
  }
  v1::StoredModel bad = Logistic(3, 4, 1);
  bad.mutable_logistic()->mutable_bias()->add_values(7.0f);  // 4 biases for 3 classes.
  WriteAll(dir_ / "bad.model", ModelStore::EncodeFile(bad));
  int checks = 0;
  auto check = [&checks](const v1::StoredModel& model) {
    ++checks;
    const auto& logistic = model.logistic();
    if (logistic.bias().values_size() != logistic.weights().shape(0)) {
      return absl::InvalidArgumentError(absl::StrCat("model.bias: expected ", logistic.weights().shape(0),
                                                     " values, got ", logistic.bias().values_size()));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::unique_ptr<ModelStore>> opened =
      ModelStore::Open(dir_.string(), ModelStore::kDefaultMaxFileBytes, check);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ModelStore& store = **opened;
  EXPECT_EQ(checks, 2);
  EXPECT_THAT(Names(store), ElementsAre("good"));
  ASSERT_EQ(store.unreadable().size(), 1u);
  EXPECT_EQ(store.unreadable()[0].file, "bad.model");
  EXPECT_EQ(store.unreadable()[0].reason, "invalid model: model.bias: expected 3 values, got 4");
  const absl::Status get = store.Get("bad", "model_name").status();
  EXPECT_EQ(get.code(), absl::StatusCode::kFailedPrecondition) << get;
  EXPECT_THAT(std::string(get.message()), HasSubstr("model.bias: expected 3 values, got 4"));
  EXPECT_EQ(checks, 2);  // Not checked again until the file changes.
  // Fixed on disk (another replica, or by hand): read, checked and served.
  WriteAll(dir_ / "bad.model", ModelStore::EncodeFile(Logistic(3, 4, 2)));
  absl::StatusOr<ModelStore::EntryPtr> fixed = store.Get("bad", "model_name");
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_TRUE(SameModel((*fixed)->model, Logistic(3, 4, 2)));
  EXPECT_THAT(store.unreadable(), IsEmpty());
  EXPECT_EQ(checks, 3);
}

TEST_F(ModelStoreTest, AModelOfAnotherKindIsNotReplaced) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  v1::StoredModel discriminator;
  discriminator.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  ASSERT_TRUE(store->Put("d", discriminator).ok());
  const absl::Status replaced = store->Put("d", Logistic(2, 2, 1));
  EXPECT_EQ(replaced.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(replaced.message()), HasSubstr("MODEL_KIND_DISCRIMINATOR"));
  EXPECT_EQ((*store->Get("d"))->model.kind(), v1::MODEL_KIND_DISCRIMINATOR);
  EXPECT_EQ(store->Put("u", v1::StoredModel()).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelStoreTest, OpenFailsCleanlyWhenTheDirectoryCannotBeCreated) {
  WriteAll(root_ / "file", "x");
  absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open((root_ / "file" / "models").string());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("model_dir: cannot create"));
}

// Root ignores permission bits, so an unwritable directory is made by replacing it with a
// regular file after Open: every create in it fails with ENOTDIR.
TEST_F(ModelStoreTest, AnUnwritableDirectoryIsFailedPreconditionAndChangesNothing) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("kept", Logistic(2, 3, 1)).ok());
  fs::remove_all(dir_);
  WriteAll(dir_, "now a file");
  const absl::Status status = store->Put("new", Logistic(2, 3, 2));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("not writable"));
  EXPECT_EQ(store->Get("new").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Get("kept").ok());
  const absl::Status replaced = store->Put("kept", Logistic(2, 3, 3));
  EXPECT_EQ(replaced.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(SameModel((*store->Get("kept"))->model, Logistic(2, 3, 1)));
}

// A file-size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC: the
// status is RESOURCE_EXHAUSTED, no temporary file is left and the old model is intact.
TEST_F(ModelStoreTest, AFullFileSystemIsResourceExhaustedAndLeavesNothingHalfWritten) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("big", Logistic(2, 3, 1)).ok());
  const std::string before = ReadAll(dir_ / "big.model");

  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct sigaction ignore = {}, old_action = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old_action), 0);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status status = store->Put("big", Logistic(10, 1000, 2));  // ~40 KB.
  setrlimit(RLIMIT_FSIZE, &saved);
  sigaction(SIGXFSZ, &old_action, nullptr);

  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("file system is full"));
  EXPECT_THAT(ModelDirFiles(dir_), ElementsAre("big.model"));
  EXPECT_EQ(ReadAll(dir_ / "big.model"), before);
  EXPECT_TRUE(SameModel((*store->Get("big"))->model, Logistic(2, 3, 1)));
  EXPECT_TRUE(SameModel((*Open()->Get("big"))->model, Logistic(2, 3, 1)));
}

TEST_F(ModelStoreTest, ConcurrentWritersAndReadersStayConsistent) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kWriters = 6;
  constexpr int kPutsPerWriter = 30;
  constexpr int kNames = 5;  // Shared between writers: same-name puts race.
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPutsPerWriter; ++i) {
        const std::string name = absl::StrCat("shared", (w + i) % kNames);
        if (!store->Put(name, Logistic(2 + w, 3, static_cast<float>(1000 * w + i))).ok()) ++failures;
        if (!store->Put(absl::StrCat("own", w, "_", i), Logistic(2, 2, static_cast<float>(i))).ok()) ++failures;
        if (i % 7 == 0 && !store->Delete(absl::StrCat("own", w, "_", i)).ok()) ++failures;
      }
    });
  }
  std::thread reader([&] {
    while (!done.load()) {
      for (const ModelStore::EntryPtr& entry : store->List()) {
        if (entry->model.logistic().weights().values_size() == 0) ++failures;
      }
      absl::StatusOr<ModelStore::EntryPtr> entry = store->Get("shared0");
      if (!entry.ok() && entry.status().code() != absl::StatusCode::kNotFound) ++failures;
    }
  });
  for (std::thread& t : threads) t.join();
  done.store(true);
  reader.join();
  EXPECT_EQ(failures.load(), 0);

  // Memory matches disk: every file decodes to the entry in memory, and no temporary remains.
  const std::vector<ModelStore::EntryPtr> entries = store->List();
  EXPECT_EQ(entries.size(), static_cast<size_t>(kNames + kWriters * (kPutsPerWriter - 5)));
  EXPECT_EQ(ModelDirFiles(dir_).size(), entries.size());
  std::unique_ptr<ModelStore> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(reopened->unreadable(), IsEmpty());
  for (const ModelStore::EntryPtr& entry : entries) {
    absl::StatusOr<ModelStore::EntryPtr> on_disk = reopened->Get(entry->name);
    ASSERT_TRUE(on_disk.ok()) << entry->name;
    EXPECT_EQ((*on_disk)->model.SerializeAsString(), entry->model.SerializeAsString()) << entry->name;
  }
}

// Replicas on one volume: each store's temporary names are its own (every pod's server runs as
// pid 1, so pid-based names collided and one of two same-name writes failed with EEXIST), and a
// store that opens leaves a write another process still holds alone.
TEST_F(ModelStoreTest, StoresSharingADirectoryDoNotCollideOrRemoveLiveWrites) {
  std::unique_ptr<ModelStore> first = Open();
  std::unique_ptr<ModelStore> second = Open();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (ModelStore* store : {first.get(), second.get()}) {
    writers.emplace_back([&, store] {
      for (int i = 0; i < 40; ++i) {
        if (!store->Put("shared", Logistic(2, 3, static_cast<float>(i))).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);

  const std::string bytes = ReadAll(dir_ / "shared.model");
  const fs::path live = dir_ / "shared.model.0123456789abcdef-7.tmp";
  const fs::path dead = dir_ / "shared.model.fedcba9876543210-3.tmp";
  WriteAll(live, bytes.substr(0, 10));
  WriteAll(dead, bytes.substr(0, 10));
  const int held = ::open(live.c_str(), O_RDONLY | O_CLOEXEC);  // Another open file: another writer.
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX | LOCK_NB), 0);
  ASSERT_NE(Open(), nullptr);
  EXPECT_TRUE(fs::exists(live)) << "a write in progress was removed";
  EXPECT_FALSE(fs::exists(dead)) << "a crashed write's file was kept";
  ::close(held);  // The writer is gone without renaming: its file is stale now.
  std::unique_ptr<ModelStore> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_FALSE(fs::exists(live));
  EXPECT_THAT(reopened->unreadable(), IsEmpty());
  EXPECT_TRUE(reopened->Get("shared").ok());
}

// Two replicas on one volume: what one stores, replaces or deletes, the other serves at its next
// Get or List, without a restart (each Get stats the file and reads it again when it changed).
TEST_F(ModelStoreTest, AReplicaSeesAnotherReplicasWritesWithoutARestart) {
  std::unique_ptr<ModelStore> a = Open();
  std::unique_ptr<ModelStore> b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->Get("iris").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(a->Put("iris", Logistic(3, 4, 1.0f)).ok());
  absl::StatusOr<ModelStore::EntryPtr> seen = b->Get("iris");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ((*seen)->model.logistic().weights().values(0), 1.0f);
  EXPECT_THAT(Names(*b), ElementsAre("iris"));
  absl::StatusOr<ModelStore::EntryPtr> again = b->Get("iris");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), seen->get()) << "an unchanged file was read again";

  ASSERT_TRUE(a->Put("iris", Logistic(3, 4, 7.0f)).ok());  // Replaced through the other replica.
  absl::StatusOr<ModelStore::EntryPtr> replaced = b->Get("iris");
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ((*replaced)->model.logistic().weights().values(0), 7.0f);
  EXPECT_EQ((*seen)->model.logistic().weights().values(0), 1.0f);  // Entries held stay valid.

  // B's own write is seen by A, and B does not re-read the file it wrote: Put recorded the
  // version the file has in place.
  ASSERT_TRUE(b->Put("digits", Logistic(10, 4, 2.0f)).ok());
  absl::StatusOr<ModelStore::EntryPtr> own = b->Get("digits");
  ASSERT_TRUE(own.ok());
  struct stat info;
  ASSERT_EQ(::stat((dir_ / "digits.model").c_str(), &info), 0);
  EXPECT_EQ((*own)->version.inode, static_cast<uint64_t>(info.st_ino));
  EXPECT_EQ((*own)->version.size, static_cast<int64_t>(info.st_size));
  EXPECT_EQ((*own)->version.mtime_ns, static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec);
  EXPECT_EQ(b->Get("digits")->get(), own->get());
  EXPECT_THAT(Names(*a), ElementsAre("digits", "iris"));

  ASSERT_TRUE(a->Delete("iris").ok());  // Deleted through the other replica.
  EXPECT_EQ(b->Get("iris").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Names(*b), ElementsAre("digits"));
  ASSERT_TRUE(a->Delete("digits").ok());  // B may delete what A stored, and the other way round.
  ASSERT_TRUE(b->Put("x", Logistic(2, 2, 0.0f)).ok());
  ASSERT_TRUE(a->Delete("x").ok());
  EXPECT_THAT(Names(*b), IsEmpty());

  // A file damaged on the volume is reported once per version, and served again once rewritten.
  ASSERT_TRUE(a->Put("fragile", Logistic(2, 2, 3.0f)).ok());
  ASSERT_TRUE(b->Get("fragile").ok());
  const std::string bytes = ReadAll(dir_ / "fragile.model");
  WriteAll(dir_ / "fragile.model.partial", bytes.substr(0, bytes.size() / 2));
  fs::rename(dir_ / "fragile.model.partial", dir_ / "fragile.model");
  const absl::Status damaged = b->Get("fragile").status();
  EXPECT_EQ(damaged.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(damaged.message()),
              HasSubstr("name: the model store's file \"fragile.model\" cannot be loaded: truncated"));
  ASSERT_EQ(b->unreadable().size(), 1u);
  EXPECT_EQ(b->unreadable()[0].file, "fragile.model");
  ASSERT_TRUE(a->Put("fragile", Logistic(2, 2, 4.0f)).ok());
  absl::StatusOr<ModelStore::EntryPtr> mended = b->Get("fragile");
  ASSERT_TRUE(mended.ok()) << mended.status();
  EXPECT_EQ((*mended)->model.logistic().weights().values(0), 4.0f);
  EXPECT_THAT(b->unreadable(), IsEmpty());

  // A damaged file both replicas report, deleted through one: the other stops reporting it.
  WriteAll(dir_ / "broken.model", "not a model");
  EXPECT_THAT(Names(*a), ElementsAre("fragile"));
  EXPECT_THAT(Names(*b), ElementsAre("fragile"));
  ASSERT_EQ(b->unreadable().size(), 1u);
  ASSERT_TRUE(a->Delete("broken").ok());
  EXPECT_THAT(Names(*b), ElementsAre("fragile"));
  EXPECT_THAT(b->unreadable(), IsEmpty());
}

// A replaced file that cannot be read right now (here: out of file descriptors, EMFILE) must not
// cost the model it replaces: the old one is served until the new one can be read.
TEST_F(ModelStoreTest, AFailedReadOfAReplacedFileKeepsServingTheOldModel) {
  std::unique_ptr<ModelStore> a = Open();
  std::unique_ptr<ModelStore> b = Open();
  ASSERT_TRUE(a->Put("iris", Logistic(3, 4, 1.0f)).ok());
  ASSERT_TRUE(b->Get("iris").ok());
  ASSERT_TRUE(a->Put("iris", Logistic(3, 4, 2.0f)).ok());
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int lowest_free = ::dup(0);  // A new descriptor gets the lowest free number.
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // Every open() now fails with EMFILE.
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  absl::StatusOr<ModelStore::EntryPtr> during = b->Get("iris");
  std::vector<ModelStore::Unreadable> unreadable_during = b->unreadable();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ((*during)->model.logistic().weights().values(0), 1.0f);
  EXPECT_THAT(unreadable_during, IsEmpty());
  // The file is not tried again (nor a warning logged) on every lookup: once a second at most.
  absl::StatusOr<ModelStore::EntryPtr> soon = b->Get("iris");
  ASSERT_TRUE(soon.ok()) << soon.status();
  EXPECT_EQ((*soon)->model.logistic().weights().values(0), 1.0f);
  absl::SleepFor(ModelStore::kReadRetryInterval + absl::Milliseconds(100));
  absl::StatusOr<ModelStore::EntryPtr> after = b->Get("iris");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->model.logistic().weights().values(0), 2.0f);
}

// Files that are no model cost next to nothing: a 1 GiB file of zeros is refused after its
// 32-byte header (it used to be read whole: 4.3 GB resident for three concurrent lookups of a
// 2 GiB one), and a FIFO is refused without waiting for a writer.
TEST_F(ModelStoreTest, JunkFilesAreRefusedByTheirHeaderAndFifosDoNotBlock) {
  fs::create_directories(dir_);
  {
    std::ofstream junk(dir_ / "junk.model", std::ios::binary);
  }
  fs::resize_file(dir_ / "junk.model", std::uintmax_t{1} << 30);  // Sparse: reading it would fill pages.
  ASSERT_EQ(::mkfifo((dir_ / "pipe.model").c_str(), 0644), 0);
  rusage before;
  ::getrusage(RUSAGE_SELF, &before);
  // A limit above the file's size: the header, not the size, refuses it.
  absl::StatusOr<std::unique_ptr<ModelStore>> opened = ModelStore::Open(dir_.string(), int64_t{2} << 30);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<ModelStore> store = *std::move(opened);
  EXPECT_EQ(store->Get("junk").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Get("pipe").status().code(), absl::StatusCode::kFailedPrecondition);
  rusage after;
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak resident memory";
  std::string reasons;
  for (const ModelStore::Unreadable& u : store->unreadable()) reasons += u.file + ": " + u.reason + "\n";
  EXPECT_THAT(reasons, HasSubstr("junk.model: bad magic"));
  EXPECT_THAT(reasons, HasSubstr("pipe.model: not a regular file"));
}

// A model file may have --max_message_bytes + 1 MiB (what Get could send): a larger one, even
// with a valid header announcing its size, is refused by that size before it is read (each
// lookup read it whole, up to 2 GiB), and Put refuses to write one.
TEST_F(ModelStoreTest, FilesOverTheSizeLimitAreNeitherReadNorWritten) {
  fs::create_directories(dir_);
  const int64_t size = int64_t{1} << 30;
  std::string header = ModelStore::EncodeFile(Logistic(2, 2, 1.0f)).substr(0, ModelStore::kHeaderBytes);
  const uint64_t payload = static_cast<uint64_t>(size) - ModelStore::kHeaderBytes;
  for (int i = 0; i < 8; ++i) header[16 + i] = static_cast<char>((payload >> (8 * i)) & 0xff);
  WriteAll(dir_ / "huge.model", header);
  fs::resize_file(dir_ / "huge.model", static_cast<std::uintmax_t>(size));  // Sparse.
  ASSERT_TRUE(ModelStore::CheckHeader(header, static_cast<uint64_t>(size)).ok());  // Only the size gives it away.
  rusage before;
  ::getrusage(RUSAGE_SELF, &before);
  absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir_.string(), 64 << 10);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Get("huge").status().code(), absl::StatusCode::kFailedPrecondition);
  rusage after;
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 16 * 1024) << "KiB of peak resident memory";
  ASSERT_EQ((*store)->unreadable().size(), 1u);
  EXPECT_THAT((*store)->unreadable()[0].reason, HasSubstr("file has 1073741824 bytes, more than the 65536"));

  EXPECT_TRUE((*store)->Put("small", Logistic(2, 3, 1.0f)).ok());
  const absl::Status big = (*store)->Put("big", Logistic(10, 2000, 1.0f), "model_name");  // 80 KB of weights.
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(big.message()), HasSubstr("model_name: the model's file would have"));
  EXPECT_FALSE(fs::exists(dir_ / "big.model"));
  EXPECT_THAT(Names(**store), ElementsAre("small"));
}

// Lookups arriving together for a file replaced through another replica read it once.
TEST_F(ModelStoreTest, ConcurrentLookupsOfAChangedFileReadItOnce) {
  std::unique_ptr<ModelStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("shared", Logistic(2, 4, 1.0f)).ok());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    // Another replica's write (a new inode renamed into place) of a 4 MB model: long enough to
    // read that the lookups below overlap.
    const v1::StoredModel model = Logistic(10, 100000, 2.0f + round);
    WriteAll(dir_ / "shared.model.tmp", ModelStore::EncodeFile(model));
    fs::rename(dir_ / "shared.model.tmp", dir_ / "shared.model");
    const int64_t reads_before = store->files_read();
    std::atomic<int> ready{0}, good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        ready.fetch_add(1);
        while (ready.load() < 8) std::this_thread::yield();
        absl::StatusOr<ModelStore::EntryPtr> entry = store->Get("shared");
        if (entry.ok() && (*entry)->model.logistic().weights().values(0) == model.logistic().weights().values(0)) {
          good.fetch_add(1);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(good.load(), 8);
    EXPECT_EQ(store->files_read() - reads_before, 1);
  }
}

// The listener (the discriminator cache drops compiled networks with it) hears of every model
// the store lets go: replaced or deleted here, or seen replaced or deleted on disk; it runs after
// the store released the old entry, and not for lookups that change nothing.
TEST_F(ModelStoreTest, TheChangeListenerHearsOfEveryModelLetGo) {
  std::unique_ptr<ModelStore> a = Open();
  std::unique_ptr<ModelStore> b = Open();
  int changes = 0;
  std::weak_ptr<const ModelStore::Entry> watched;
  bool released_first = true;
  b->SetChangeListener([&] {
    ++changes;
    released_first = released_first && watched.expired();
  });
  ASSERT_TRUE(b->Put("m", Logistic(2, 2, 1.0f)).ok());
  EXPECT_EQ(changes, 0);  // A new name replaces nothing.
  watched = *b->Get("m");
  ASSERT_TRUE(b->Put("m", Logistic(2, 2, 2.0f)).ok());  // Replaced here.
  EXPECT_EQ(changes, 1);
  watched = *b->Get("m");
  ASSERT_TRUE(b->Get("m").ok());  // Nothing changed.
  EXPECT_EQ(changes, 1);
  ASSERT_TRUE(a->Put("m", Logistic(2, 2, 3.0f)).ok());  // Replaced on disk, seen at the next lookup.
  ASSERT_TRUE(b->Get("m").ok());
  EXPECT_EQ(changes, 2);
  watched = *b->Get("m");
  ASSERT_TRUE(a->Delete("m").ok());  // Deleted on disk.
  EXPECT_EQ(b->Get("m").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(changes, 3);
  ASSERT_TRUE(b->Put("n", Logistic(2, 2, 4.0f)).ok());
  watched = *b->Get("n");
  ASSERT_TRUE(b->Delete("n").ok());  // Deleted here.
  EXPECT_EQ(changes, 4);
  EXPECT_TRUE(released_first);
  b->SetChangeListener(nullptr);
}

// Two replicas storing one new name with different kinds at the same moment: exactly one wins,
// the other is told the name holds another kind (both used to succeed, the last rename winning).
TEST_F(ModelStoreTest, ReplicasCannotBothStoreOneNameWithDifferentKinds) {
  std::unique_ptr<ModelStore> a = Open();
  std::unique_ptr<ModelStore> b = Open();
  v1::StoredModel discriminator;
  discriminator.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  int both = 0;
  for (int round = 0; round < 30; ++round) {
    const std::string name = absl::StrCat("n", round);
    std::atomic<int> ready{0};
    absl::Status from_a, from_b;
    std::thread ta([&] {
      ++ready;
      while (ready.load() < 2) {
      }
      from_a = a->Put(name, Logistic(2, 2, 1.0f));
    });
    std::thread tb([&] {
      ++ready;
      while (ready.load() < 2) {
      }
      from_b = b->Put(name, discriminator);
    });
    ta.join();
    tb.join();
    both += from_a.ok() && from_b.ok();
    EXPECT_NE(from_a.ok(), from_b.ok()) << "round " << round << ": " << from_a << " / " << from_b;
    const absl::Status& lost = from_a.ok() ? from_b : from_a;
    EXPECT_EQ(lost.code(), absl::StatusCode::kFailedPrecondition) << lost;
    // Both replicas serve the winner's kind.
    const v1::ModelKind kind = from_a.ok() ? v1::MODEL_KIND_LOGISTIC : v1::MODEL_KIND_DISCRIMINATOR;
    EXPECT_EQ((*a->Get(name))->model.kind(), kind);
    EXPECT_EQ((*b->Get(name))->model.kind(), kind);
  }
  EXPECT_EQ(both, 0);
  EXPECT_THAT(Names(*a).size(), 30u);
}

}  // namespace
}  // namespace primserve
