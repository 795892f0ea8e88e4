#include "server/model_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "server/crc32c.h"
#include "server/log.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "model files are little-endian; this build copies as-is");

namespace primserve {
namespace {

constexpr char kMagic[8] = {'P', 'S', 'M', 'O', 'D', 'E', 'L', '\n'};
constexpr absl::string_view kTempSuffix = ".tmp";

template <typename T>
void PutLittleEndian(T value, char* out) {
  std::memcpy(out, &value, sizeof(T));
}

template <typename T>
T GetLittleEndian(const char* in) {
  T value;
  std::memcpy(&value, in, sizeof(T));
  return value;
}

bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

// The status of a failed file-system call on `path` (see the table in model_store.h).
absl::Status WriteError(int error, absl::string_view what, absl::string_view path) {
  const std::string message =
      absl::StrCat("model store: cannot ", what, " \"", path, "\": ", std::strerror(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(absl::StrCat(message, " (the model directory's file system is full)"));
    case EROFS:
    case EACCES:
    case EPERM:
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
      return absl::FailedPreconditionError(absl::StrCat(message, " (the model directory is not writable)"));
    default:
      return absl::UnavailableError(message);
  }
}

// Writes all of `bytes` to `fd`, retrying short writes and EINTR. 0 or an errno.
int WriteAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

// fsync of a directory, so a rename or unlink in it survives a power loss. 0 or an errno.
int SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// Reads up to `size` bytes at the descriptor's position into `out`; an errno, or 0.
int ReadInto(int fd, char* out, size_t size, size_t* got) {
  *got = 0;
  while (*got < size) {
    const ssize_t n = ::read(fd, out + *got, size - *got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    *got += static_cast<size_t>(n);
  }
  return 0;
}

// The whole file at `path`, or a reason it cannot be read. Its header is read and checked
// before the rest is allocated, so a large file that is not a model costs 32 bytes; a FIFO or a
// device put in the model's place (O_NONBLOCK: opening one does not wait) is refused.
absl::StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int error = errno;  // NOT_FOUND: deleted (by another replica) after it was listed.
    const std::string message = absl::StrCat("cannot open: ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat info;
  if (::fstat(fd, &info) != 0) return absl::UnavailableError(absl::StrCat("cannot stat: ", std::strerror(errno)));
  if (!S_ISREG(info.st_mode)) return absl::DataLossError("not a regular file");
  if (info.st_size > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("file has ", info.st_size, " bytes, more than the ", max_bytes,
                                                     " a model file may have (--max_message_bytes + 1 MiB)"));
  }
  std::string bytes(std::min<size_t>(static_cast<size_t>(info.st_size), ModelStore::kHeaderBytes), '\0');
  size_t got = 0;
  int error = ReadInto(fd, bytes.data(), bytes.size(), &got);
  if (error == 0 && got == bytes.size()) {
    RETURN_IF_ERROR(ModelStore::CheckHeader(bytes, static_cast<uint64_t>(info.st_size)));
    bytes.resize(static_cast<size_t>(info.st_size));
    size_t rest = 0;
    error = ReadInto(fd, bytes.data() + got, bytes.size() - got, &rest);
    got += rest;
  }
  if (error != 0) return absl::UnavailableError(absl::StrCat("cannot read: ", std::strerror(error)));
  if (got != bytes.size()) return absl::UnavailableError("file shrank while being read");
  return bytes;
}

ModelStore::FileVersion VersionOf(const struct stat& info) {
  ModelStore::FileVersion version;
  version.device = static_cast<uint64_t>(info.st_dev);
  version.inode = static_cast<uint64_t>(info.st_ino);
  version.size = static_cast<int64_t>(info.st_size);
  version.mtime_ns = static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
  return version;
}

absl::Status NotFound(absl::string_view field, absl::string_view name) {
  return absl::NotFoundError(
      absl::StrCat(field, ": no model named \"", name, "\" in the model store (Models.List shows the stored models)"));
}

}  // namespace

absl::Status ModelStore::ValidateName(absl::string_view name, absl::string_view field) {
  bool ok = !name.empty() && name.size() <= kMaxNameBytes && name != "." && name != "..";
  for (const char c : name) ok = ok && IsNameChar(c);
  if (ok) return absl::OkStatus();
  // Quote a bounded, printable prefix of what was sent.
  std::string shown;
  for (const char c : name.substr(0, 160)) shown += absl::ascii_isprint(c) ? c : '?';
  if (name.size() > 160) shown += "...";
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected a model name matching [A-Za-z0-9._-]{1,",
                                                 kMaxNameBytes, "}, not \".\" or \"..\", got \"", shown, "\" (",
                                                 name.size(), " bytes)"));
}

std::string ModelStore::EncodeFile(const v1::StoredModel& model) {
  const std::string payload = model.SerializeAsString();
  std::string file(kHeaderBytes, '\0');
  std::memcpy(file.data(), kMagic, sizeof kMagic);
  PutLittleEndian<uint32_t>(kFormatVersion, file.data() + 8);
  PutLittleEndian<uint32_t>(static_cast<uint32_t>(model.kind()), file.data() + 12);
  PutLittleEndian<uint64_t>(payload.size(), file.data() + 16);
  const uint32_t crc = Crc32cExtend(Crc32c(absl::string_view(file.data(), 24)), payload);
  PutLittleEndian<uint32_t>(crc, file.data() + 24);
  file += payload;
  return file;
}

absl::Status ModelStore::CheckHeader(absl::string_view header, uint64_t file_bytes) {
  if (file_bytes < kHeaderBytes || header.size() < kHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat("truncated: ", file_bytes, " bytes, shorter than the ", kHeaderBytes, "-byte header"));
  }
  if (std::memcmp(header.data(), kMagic, sizeof kMagic) != 0) {
    return absl::DataLossError("bad magic: not a primserve model file (expected \"PSMODEL\\n\")");
  }
  const uint32_t version = GetLittleEndian<uint32_t>(header.data() + 8);
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat("format version ", version, " is not supported (expected ",
                                                      kFormatVersion, "; written by another primserve version?)"));
  }
  const uint64_t payload_bytes = GetLittleEndian<uint64_t>(header.data() + 16);
  if (payload_bytes != file_bytes - kHeaderBytes) {
    return absl::DataLossError(absl::StrCat(payload_bytes > file_bytes - kHeaderBytes ? "truncated" : "trailing bytes",
                                            ": the header announces ", payload_bytes, " payload bytes, the file has ",
                                            file_bytes - kHeaderBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::StoredModel> ModelStore::DecodeFile(absl::string_view bytes) {
  RETURN_IF_ERROR(CheckHeader(bytes, bytes.size()));
  const uint32_t kind = GetLittleEndian<uint32_t>(bytes.data() + 12);
  const absl::string_view payload = bytes.substr(kHeaderBytes);
  const uint32_t expected_crc = GetLittleEndian<uint32_t>(bytes.data() + 24);
  const uint32_t crc = Crc32cExtend(Crc32c(bytes.substr(0, 24)), payload);
  if (crc != expected_crc) {
    return absl::DataLossError(absl::StrCat("checksum mismatch: CRC-32C ", crc, ", header says ", expected_crc));
  }
  v1::StoredModel model;
  if (!model.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("payload is not a StoredModel message");
  }
  if (static_cast<uint32_t>(model.kind()) != kind) {
    return absl::DataLossError(absl::StrCat("kind mismatch: header ", kind, ", payload ", model.kind()));
  }
  if (model.kind() == v1::MODEL_KIND_UNSPECIFIED || !v1::ModelKind_IsValid(model.kind())) {
    return absl::DataLossError(absl::StrCat("unknown model kind ", kind));
  }
  return model;
}

// 64 random bits: two replicas on one volume pick the same with odds of 2^-64.
std::string RandomTempPrefix() {
  std::random_device device;
  const uint64_t bits = (static_cast<uint64_t>(device()) << 32) ^ device();
  return absl::StrCat(absl::Hex(bits, absl::kZeroPad16));
}

ModelStore::ModelStore(std::string dir, int64_t max_file_bytes, ContentCheck check)
    : dir_(std::move(dir)),
      max_file_bytes_(max_file_bytes),
      check_(std::move(check)),
      temp_prefix_(RandomTempPrefix()) {}

int ModelStore::LockFd() {
  // Writers of every process on the volume take an flock on this file (see VolumeLock), made by
  // the first write. Opened for writing: NFS emulates flock with POSIX locks, whose exclusive
  // kind needs it. Without it (an unwritable directory, where the write fails anyway) writers
  // only exclude each other in-process.
  if (lock_fd_ < 0) lock_fd_ = ::open(absl::StrCat(dir_, "/", kLockFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  return lock_fd_;
}

ModelStore::~ModelStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

ModelStore::VolumeLock::VolumeLock(int fd, absl::string_view dir) {
  static std::atomic<bool> warned{false};
  if (fd < 0) {
    if (!warned.exchange(true)) {
      Log(LogLevel::kWarning, "model store: cannot open \"", dir, "/", kLockFile,
          "\": writes are not locked against other replicas (", std::strerror(errno), ")");
    }
    return;
  }
  // Another replica holds it for one write (milliseconds); one stuck (a hung volume, a stopped
  // process) must not hold every writer here forever.
  const absl::Time give_up = absl::Now() + kVolumeLockTimeout;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error != EWOULDBLOCK && error != EINTR) {  // ENOLCK, ...: no locking on this volume.
      if (!warned.exchange(true)) {
        Log(LogLevel::kWarning, "model store: cannot lock \"", dir, "/", kLockFile,
            "\": writes are not locked against other replicas (", std::strerror(error), ")");
      }
      return;
    }
    if (absl::Now() >= give_up) {
      status_ = absl::UnavailableError(absl::StrCat("model store: another process has held \"", dir, "/", kLockFile,
                                                    "\" for ", absl::FormatDuration(kVolumeLockTimeout), "; retry"));
      return;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  fd_ = fd;
}

ModelStore::VolumeLock::~VolumeLock() {
  if (fd_ >= 0) ::flock(fd_, LOCK_UN);
}

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(const std::string& dir, int64_t max_file_bytes,
                                                             ContentCheck check) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat("model_dir: cannot create \"", dir, "\": ", error.message()));
  }
  std::unique_ptr<ModelStore> store(new ModelStore(dir, max_file_bytes, std::move(check)));
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model_dir: cannot list \"", dir, "\": ", std::strerror(errno)));
  }
  std::vector<std::string> files;
  while (const dirent* item = ::readdir(listing)) files.emplace_back(item->d_name);
  ::closedir(listing);

  for (const std::string& file : files) {
    if (absl::EndsWith(file, kTempSuffix) && absl::StrContains(file, absl::StrCat(kFileSuffix, "."))) {
      // A write that never reached its rename (the process died): the model it would have
      // replaced, if any, is intact. A write still in progress (another replica on the same
      // volume) holds the file's flock, and is left alone.
      const std::string path = absl::StrCat(dir, "/", file);
      // Opened for writing: NFS emulates flock with POSIX locks, whose exclusive kind needs it.
      const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;  // Gone already: its writer renamed or removed it.
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        Log(LogLevel::kInfo, "model store: leaving ", path, ": another process is writing it");
      } else if (::unlink(path.c_str()) == 0) {  // Unlocked, or no flock on this file system.
        Log(LogLevel::kWarning, "model store: removed stale temporary file ", path);
      }
      ::close(fd);
      continue;
    }
    if (absl::EndsWith(file, kFileSuffix)) store->Refresh(file.substr(0, file.size() - kFileSuffix.size()));
  }
  absl::MutexLock lock(&store->mu_);
  Log(LogLevel::kInfo, "model store \"", dir, "\": ", store->entries_.size(), " model(s) loaded",
      store->unreadable_.empty() ? "" : absl::StrCat(", ", store->unreadable_.size(), " unreadable file(s) skipped"));
  return store;
}

ModelStore::EntryPtr ModelStore::TakeEntry(absl::string_view name) const {
  auto found = entries_.find(name);
  if (found == entries_.end()) return nullptr;
  EntryPtr entry = std::move(found->second);
  entries_.erase(found);
  return entry;
}

ModelStore::ChangeNotice::~ChangeNotice() {
  const bool changed = old_ != nullptr;
  old_.reset();  // Before the listener: what only the map held is gone by then.
  if (changed && store_.on_change_) store_.on_change_();
}

void ModelStore::SetChangeListener(std::function<void()> listener) { on_change_ = std::move(listener); }

uint64_t ModelStore::Generation(absl::string_view name) const {
  auto found = generations_.find(name);
  return found == generations_.end() ? 0 : found->second;
}

void ModelStore::Load(const std::string& file_name, const struct stat& info, uint64_t generation) const {
  const std::string path = absl::StrCat(dir_, "/", file_name);
  const absl::string_view name = absl::string_view(file_name).substr(0, file_name.size() - kFileSuffix.size());
  // The version is taken before the read: if the file is replaced in between, the map holds newer
  // bytes under an older version, and the next Get reads the file once more.
  const FileVersion version = VersionOf(info);
  // Nothing is recorded if this store wrote or deleted the name meanwhile: what it did is newer.
  // A file whose bytes are wrong is recorded as unreadable at this version (not read again until
  // it changes), and stops being served; a failure to read it (EIO, EMFILE) keeps what the map
  // has and is tried again at the next lookup.
  auto skip = [&](absl::string_view reason, bool lasting) {
    Log(LogLevel::kWarning, "model store: skipping \"", path, "\": ", reason);
    ChangeNotice notice(*this);
    absl::MutexLock lock(&mu_);
    if (Generation(name) != generation) return;
    if (lasting) {
      notice.Add(TakeEntry(name));
      read_retry_after_.erase(file_name);
      unreadable_[file_name] = UnreadableFile{std::string(reason), version};
    } else if (entries_.find(name) == entries_.end()) {
      unreadable_[file_name] =
          UnreadableFile{std::string(reason), version, absl::Now() + kReadRetryInterval, /*lasting=*/false};
    } else {  // The model read before is served until the new file can be read.
      read_retry_after_[file_name] = absl::Now() + kReadRetryInterval;
    }
  };
  if (!S_ISREG(info.st_mode)) return skip("not a regular file", true);
  if (absl::Status valid = ValidateName(name, "file name"); !valid.ok()) return skip(valid.message(), true);
  files_read_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<std::string> bytes = ReadFile(path, max_file_bytes_);
  if (bytes.status().code() == absl::StatusCode::kNotFound) {  // Deleted since the stat.
    ChangeNotice notice(*this);
    absl::MutexLock lock(&mu_);
    if (Generation(name) != generation) return;
    notice.Add(TakeEntry(name));
    unreadable_.erase(file_name);
    return;
  }
  if (!bytes.ok()) return skip(bytes.status().message(), bytes.status().code() != absl::StatusCode::kUnavailable);
  absl::StatusOr<v1::StoredModel> model = DecodeFile(*bytes);
  if (!model.ok()) return skip(model.status().message(), true);
  if (check_ != nullptr) {
    if (absl::Status valid = check_(*model); !valid.ok()) {
      return skip(absl::StrCat("invalid model: ", valid.message()), true);
    }
  }
  auto entry = std::make_shared<Entry>();
  entry->name = std::string(name);
  entry->model = *std::move(model);
  entry->file_bytes = static_cast<int64_t>(bytes->size());
  entry->version = version;
  ChangeNotice notice(*this);
  absl::MutexLock lock(&mu_);
  if (Generation(name) != generation) return;
  unreadable_.erase(file_name);
  read_retry_after_.erase(file_name);
  EntryPtr& slot = entries_[entry->name];
  if (slot != nullptr && slot->version == version) return;  // A concurrent lookup read it already.
  notice.Add(std::exchange(slot, std::move(entry)));
}

ModelStore::EntryPtr ModelStore::Refresh(absl::string_view name) const {
  const std::string file_name = absl::StrCat(name, kFileSuffix);
  const std::string path = PathOf(name);
  uint64_t generation = 0;
  {
    absl::ReaderMutexLock lock(&mu_);
    generation = Generation(name);
  }
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    ChangeNotice notice(*this);
    absl::MutexLock lock(&mu_);
    if (Generation(name) != generation) return nullptr;
    if (error == ENOENT) {  // Gone: deleted through another replica.
      notice.Add(TakeEntry(name));
      unreadable_.erase(file_name);
      read_retry_after_.erase(file_name);
    } else if (error != ENOTDIR && entries_.find(name) == entries_.end()) {  // EACCES, ELOOP, EIO, ...
      unreadable_[file_name] = UnreadableFile{absl::StrCat("cannot stat: ", std::strerror(error)), FileVersion{},
                                              absl::InfinitePast(), /*lasting=*/false};
    }
    return nullptr;
  }
  const FileVersion version = VersionOf(info);
  // Whether the map already answers for this version of the file: with its entry, or with
  // nullptr when the file is known unreadable (look it up); nullopt when the file must be read.
  auto known = [&]() -> std::optional<EntryPtr> {
    absl::ReaderMutexLock lock(&mu_);
    auto found = entries_.find(name);
    if (found != entries_.end() && found->second->version == version) return found->second;  // The usual case.
    auto retry = read_retry_after_.find(file_name);
    if (found != entries_.end() && retry != read_retry_after_.end() && absl::Now() < retry->second) {
      return found->second;  // The file that replaced it could not be read a moment ago.
    }
    auto unreadable = unreadable_.find(file_name);
    if (unreadable != unreadable_.end() && unreadable->second.version == version &&
        absl::Now() < unreadable->second.retry_after) {
      return EntryPtr(nullptr);
    }
    return std::nullopt;
  };
  if (std::optional<EntryPtr> entry = known()) return *entry;
  absl::MutexLock loading(&load_mu_);
  if (std::optional<EntryPtr> entry = known()) return *entry;  // Read by a lookup that held the lock first.
  Load(file_name, info, generation);  // New, or replaced through another replica.
  return nullptr;
}

std::string ModelStore::PathOf(absl::string_view name) const { return absl::StrCat(dir_, "/", name, kFileSuffix); }

absl::Status ModelStore::Put(absl::string_view name, v1::StoredModel model, absl::string_view field) {
  if (absl::Status valid = ValidateName(name, field); !valid.ok()) return valid;
  if (model.kind() == v1::MODEL_KIND_UNSPECIFIED || !v1::ModelKind_IsValid(model.kind())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": cannot store a model of unspecified kind"));
  }
  model.set_created_unix_micros(absl::ToUnixMicros(absl::Now()));
  auto entry = std::make_shared<Entry>();
  entry->name = std::string(name);
  const std::string bytes = EncodeFile(model);
  if (static_cast<int64_t>(bytes.size()) > max_file_bytes_) {  // It could not be loaded again.
    return absl::ResourceExhaustedError(absl::StrCat(field, ": the model's file would have ", bytes.size(),
                                                     " bytes, more than the ", max_file_bytes_,
                                                     " a model file may have (--max_message_bytes + 1 MiB)"));
  }
  entry->model = std::move(model);
  entry->file_bytes = static_cast<int64_t>(bytes.size());

  ChangeNotice notice(*this);  // Declared first: tells the listener after every lock is released.
  absl::MutexLock write_lock(&write_mu_);
  const VolumeLock volume_lock(LockFd(), dir_);
  RETURN_IF_ERROR(volume_lock.status());
  Refresh(name);  // The kind check below must see a model stored through another replica.
  {
    absl::MutexLock lock(&mu_);
    auto unreadable = unreadable_.find(absl::StrCat(name, kFileSuffix));
    if (unreadable != unreadable_.end() && !unreadable->second.lasting) {  // Its kind is unknown for now.
      return absl::UnavailableError(absl::StrCat(field, ": the model store cannot read \"", unreadable->first,
                                                 "\" right now (", unreadable->second.reason, "); retry"));
    }
    auto existing = entries_.find(name);
    if (existing != entries_.end() && existing->second->model.kind() != entry->model.kind()) {
      return absl::FailedPreconditionError(absl::StrCat(
          field, ": \"", name, "\" already holds a model of kind ",
          v1::ModelKind_Name(existing->second->model.kind()), ", not ", v1::ModelKind_Name(entry->model.kind()),
          " (delete it first with Models.Delete)"));
    }
  }
  const std::string path = PathOf(name);
  // The flock is held until the file is in place (the close, after the rename): a store opening
  // meanwhile (another replica) sees a live write. A starting store may still take the lock
  // between our create and our flock and remove the file: then it has no link, and we start
  // again with a new name. Where a file system has no flock, a removed file fails the rename
  // (UNAVAILABLE: retry); no model is ever damaged.
  std::string temp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp = absl::StrCat(path, ".", temp_prefix_, "-", temp_counter_++, kTempSuffix);
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return WriteError(errno, "create", temp);
    struct stat created;
    // Blocking: a starting store holds it only to remove the file (then st_nlink is 0).
    if (::flock(fd, LOCK_EX) == 0 && ::fstat(fd, &created) == 0 && created.st_nlink == 0 && attempt < 3) {
      ::close(fd);
      fd = -1;
    }
  }
  int error = WriteAll(fd, bytes);
  const char* what = "write";
  if (error == 0 && ::fsync(fd) != 0) {
    error = errno;
    what = "fsync";
  }
  // The version this file will have in place (a rename keeps the inode and the mtime).
  struct stat info;
  if (error == 0 && ::fstat(fd, &info) != 0) {
    error = errno;
    what = "stat";
  }
  if (error == 0) entry->version = VersionOf(info);
  const std::string* where = &temp;
  if (error == 0 && ::rename(temp.c_str(), path.c_str()) != 0) {
    error = errno;
    what = "rename into place";
    where = &path;
  }
  // After the rename the file is in place and was fsync'ed: a failing close is only logged.
  if (::close(fd) != 0 && error == 0) {
    Log(LogLevel::kWarning, "model store: close of \"", path, "\" failed after storing it: ", std::strerror(errno));
  }
  if (error != 0) {
    ::unlink(temp.c_str());  // Nothing half-written stays behind; the old model is untouched.
    if (error == ENOENT && where == &path) {
      return absl::UnavailableError(absl::StrCat("model store: cannot rename \"", temp,
                                                 "\" into place: another process removed it; retry"));
    }
    return WriteError(error, what, *where);
  }
  // The new file is complete and in place; only its durability across a power loss depends on
  // the directory sync, so a failure there is reported in the log, not to the caller.
  if (const int sync_error = SyncDirectory(dir_); sync_error != 0) {
    Log(LogLevel::kWarning, "model store: fsync of \"", dir_, "\" failed after storing \"", name,
        "\": ", std::strerror(sync_error));
  }
  absl::MutexLock lock(&mu_);
  ++generations_[entry->name];
  unreadable_.erase(absl::StrCat(name, kFileSuffix));
  notice.Add(std::exchange(entries_[entry->name], std::move(entry)));
  return absl::OkStatus();
}

absl::StatusOr<ModelStore::EntryPtr> ModelStore::Get(absl::string_view name, absl::string_view field) const {
  if (absl::Status valid = ValidateName(name, field); !valid.ok()) return valid;
  if (EntryPtr current = Refresh(name)) return current;
  absl::ReaderMutexLock lock(&mu_);
  auto found = entries_.find(name);
  if (found != entries_.end()) return found->second;
  auto unreadable = unreadable_.find(absl::StrCat(name, kFileSuffix));
  if (unreadable != unreadable_.end() && !unreadable->second.lasting) {
    return absl::UnavailableError(absl::StrCat(field, ": the model store cannot read \"", unreadable->first,
                                               "\" right now: ", unreadable->second.reason, "; retry"));
  }
  if (unreadable != unreadable_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": the model store's file \"", unreadable->first,
                                                      "\" cannot be loaded: ", unreadable->second.reason,
                                                      " (store the model again, or delete it)"));
  }
  return NotFound(field, name);
}

absl::Status ModelStore::Delete(absl::string_view name, absl::string_view field) {
  if (absl::Status valid = ValidateName(name, field); !valid.ok()) return valid;
  const std::string file = absl::StrCat(name, kFileSuffix);
  ChangeNotice notice(*this);  // Declared first: tells the listener after every lock is released.
  absl::MutexLock write_lock(&write_mu_);
  const VolumeLock volume_lock(LockFd(), dir_);
  RETURN_IF_ERROR(volume_lock.status());
  Refresh(name);  // Stored through another replica, perhaps.
  {
    absl::MutexLock lock(&mu_);
    if (entries_.find(name) == entries_.end() && unreadable_.find(file) == unreadable_.end()) {
      return NotFound(field, name);
    }
  }
  const std::string path = PathOf(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return WriteError(errno, "delete", path);
  if (const int sync_error = SyncDirectory(dir_); sync_error != 0) {
    Log(LogLevel::kWarning, "model store: fsync of \"", dir_, "\" failed after deleting \"", name,
        "\": ", std::strerror(sync_error));
  }
  absl::MutexLock lock(&mu_);
  ++generations_[std::string(name)];
  notice.Add(TakeEntry(name));
  unreadable_.erase(file);
  return absl::OkStatus();
}

std::vector<ModelStore::EntryPtr> ModelStore::List() const {
  // Every model file in the directory now, and every model the map holds (some may be gone).
  std::set<std::string, std::less<>> names;
  if (DIR* listing = ::opendir(dir_.c_str())) {
    while (const dirent* item = ::readdir(listing)) {
      const absl::string_view file = item->d_name;
      if (absl::EndsWith(file, kFileSuffix)) names.emplace(file.substr(0, file.size() - kFileSuffix.size()));
    }
    ::closedir(listing);
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : entries_) names.insert(name);
    for (const auto& [file, unreadable] : unreadable_) names.insert(file.substr(0, file.size() - kFileSuffix.size()));
  }
  // A file whose name is not a model name is recorded as unreadable by Load, like at Open.
  for (const std::string& name : names) Refresh(name);
  absl::MutexLock lock(&mu_);
  std::vector<EntryPtr> entries;
  entries.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) entries.push_back(entry);
  return entries;
}

std::vector<ModelStore::Unreadable> ModelStore::unreadable() const {
  absl::MutexLock lock(&mu_);
  std::vector<Unreadable> files;
  for (const auto& [file, unreadable] : unreadable_) files.push_back({file, unreadable.reason});
  return files;
}

}  // namespace primserve
