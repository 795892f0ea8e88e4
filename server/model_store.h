// ModelStore: the server's model repository (--model_dir), shared by the LogisticRegression,
// Models and (later) Discriminator services.
//
// On disk, the Triton / TF Serving "model repository" convention with one file per model:
// `<model_dir>/<name>.model`. The file name is the model's name (renaming the file renames the
// model). A file is a 32-byte little-endian header followed by the payload, a serialized
// `primserve.v1.StoredModel`:
//
//   offset  size  field
//        0     8  magic "PSMODEL\n"
//        8     4  format version (1)
//       12     4  kind (primserve.v1.ModelKind; equals the payload's kind)
//       16     8  payload bytes (the file is exactly 32 + this long)
//       24     4  CRC-32C of bytes [0, 24) followed by the payload
//       28     4  reserved, 0
//       32     -  payload
//
// Writes are atomic: the bytes go to a temporary file in the same directory
// (`<name>.model.<random>-<n>.tmp`), which is fsync'ed, renamed over `<name>.model`, and the
// directory is fsync'ed. A reader (or a restart) sees the old model or the new one, never a
// mix; a failed write removes its temporary file. The random part is drawn per store: replicas
// sharing a volume all run as pid 1, and must not collide on a temporary name. A writer holds
// an flock on its temporary file; when the store opens, temporary files nobody holds (a crash
// mid-write) are removed, and those another process is still writing are left alone.
//
// Open() loads every `*.model` file, so a restarted server serves every stored model. A file
// that cannot be read, is truncated, fails its checksum or does not parse, or whose name is not a
// valid model name, is logged, listed by unreadable() and skipped: never fatal.
//
// Write failures map errno to a status, so clients can tell the operator's problem from a full
// disk from a transient fault (messages name the file and the system error):
//   ENOSPC, EDQUOT, EFBIG                       -> RESOURCE_EXHAUSTED (the store's file system is full)
//   EROFS, EACCES, EPERM, ENOENT, ENOTDIR, ...  -> FAILED_PRECONDITION (the directory is not writable)
//   anything else (EIO, ...)                    -> UNAVAILABLE (retry, possibly on another replica)
//
// Replicas sharing the directory (a ReadWriteMany volume) see each other's writes: Get checks
// the file's version (device, inode, size, mtime: every Put renames a new inode into place) with
// one stat, and reads the file again when another process replaced it; a file that has gone
// means another process deleted the model. List rescans the directory.
//
// Thread-safe. Readers stat the file and take a short lock on the in-memory map; they read a
// file only when it changed, and then one of them reads it while the others wait for it.
// Writers (Put, Delete) are serialised with each other.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelStore> store, ModelStore::Open("models"));
//   v1::StoredModel model;
//   model.set_kind(v1::MODEL_KIND_LOGISTIC);
//   *model.mutable_logistic() = fitted;
//   RETURN_IF_ERROR(store->Put("iris", model));
//   ASSIGN_OR_RETURN(ModelStore::EntryPtr entry, store->Get("iris", "model_name"));
#ifndef PRIMSERVE_SERVER_MODEL_STORE_H_
#define PRIMSERVE_SERVER_MODEL_STORE_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "primserve/v1/models.pb.h"

namespace primserve {

class ModelStore {
 public:
  static constexpr absl::string_view kFileSuffix = ".model";
  static constexpr size_t kMaxNameBytes = 128;
  static constexpr size_t kHeaderBytes = 32;
  static constexpr uint32_t kFormatVersion = 1;
  // Open's default for the largest model file stored or loaded (larger files are reported
  // unreadable, read no further than their header): the server passes its --max_message_bytes
  // plus kFileOverheadBytes, since a model that does not fit a message cannot be sent by Get.
  static constexpr int64_t kFileOverheadBytes = int64_t{1} << 20;
  static constexpr int64_t kDefaultMaxFileBytes = (int64_t{64} << 20) + kFileOverheadBytes;
  // How long a file that could not be read (not one whose bytes are wrong) waits for its next try.
  static constexpr absl::Duration kReadRetryInterval = absl::Seconds(1);
  // The writers' lock file in the directory (made by the first Put or Delete; see VolumeLock).
  static constexpr absl::string_view kLockFile = ".primserve-store.lock";

  // Which version of a file a model was read from (or written as).
  struct FileVersion {
    uint64_t device = 0, inode = 0;
    int64_t size = -1, mtime_ns = 0;
    bool operator==(const FileVersion& o) const {
      return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
  };

  struct Entry {
    std::string name;
    v1::StoredModel model;
    int64_t file_bytes = 0;
    FileVersion version;
  };
  using EntryPtr = std::shared_ptr<const Entry>;

  struct Unreadable {
    std::string file;    // File name inside the directory.
    std::string reason;
  };

  // Checks a decoded model's contents (shapes, values, limits: what the calls that use it would
  // refuse). A file whose model fails it is unreadable like a corrupt one, so that List, Get and
  // the calls that use the model agree about it.
  using ContentCheck = std::function<absl::Status(const v1::StoredModel&)>;

  // Creates `dir` if missing, removes stale temporary files and loads every model file.
  // FAILED_PRECONDITION when the directory cannot be created or listed. Unloadable model files
  // are not errors (see unreadable()). Files over `max_file_bytes` are neither loaded nor written.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(const std::string& dir,
                                                           int64_t max_file_bytes = kDefaultMaxFileBytes,
                                                           ContentCheck check = nullptr);

  // OK for [A-Za-z0-9._-]{1,128} other than "." and ".."; otherwise INVALID_ARGUMENT naming
  // `field`, e.g. `model_name: expected [A-Za-z0-9._-]{1,128}, not "." or "..", got "../x"`.
  static absl::Status ValidateName(absl::string_view name, absl::string_view field);

  // The file bytes of `model` (header + payload) and the inverse. DecodeFile gives DATA_LOSS
  // naming the problem (truncated, bad magic, checksum mismatch, ...), or FAILED_PRECONDITION
  // for a newer format version.
  static std::string EncodeFile(const v1::StoredModel& model);
  static absl::StatusOr<v1::StoredModel> DecodeFile(absl::string_view bytes);
  // DecodeFile's checks of the header alone (its first kHeaderBytes bytes) against the file's
  // size: a file that is no model is refused before the rest of it is read.
  static absl::Status CheckHeader(absl::string_view header, uint64_t file_bytes);

  ~ModelStore();
  ModelStore(const ModelStore&) = delete;
  ModelStore& operator=(const ModelStore&) = delete;

  const std::string& dir() const { return dir_; }

  // Stores `model` under `name` atomically, replacing a model of the same kind (and any
  // unreadable file of that name). Sets created_unix_micros to now. INVALID_ARGUMENT for a bad
  // name or an UNSPECIFIED kind (naming `field`), FAILED_PRECONDITION when `name` holds a model
  // of another kind (delete it first), else the write statuses above; on any error the
  // previously stored model (if any) is unchanged on disk and in memory.
  absl::Status Put(absl::string_view name, v1::StoredModel model, absl::string_view field = "model_name");

  // The model stored under `name`: INVALID_ARGUMENT for a bad name, NOT_FOUND when there is
  // none, FAILED_PRECONDITION when its file cannot be loaded (its bytes are wrong), UNAVAILABLE
  // when it cannot be read right now (EACCES, EIO, EMFILE); messages name `field` and the reason. The entry stays valid after a Delete or Put of that name.
  // Reads the file again when another process has replaced it since.
  absl::StatusOr<EntryPtr> Get(absl::string_view name, absl::string_view field = "name") const;

  // Removes the model (or an unreadable file) stored under `name`. INVALID_ARGUMENT for a bad
  // name, NOT_FOUND when there is none, else the write statuses above (the model stays).
  absl::Status Delete(absl::string_view name, absl::string_view field = "name");

  // Every stored model, sorted by name (the directory is read again first).
  std::vector<EntryPtr> List() const;
  // Called after the store dropped or replaced a model, by this process or as seen on disk, with
  // the map's lock released (a Put or Delete of this store may still hold its write locks): it
  // must not call the store. Empty clears it. Set while no call runs.
  void SetChangeListener(std::function<void()> listener);

  // How many times a model file has been read (by Open, Get, List, Put): once per version of a
  // file, however many lookups want that version at the same time.
  int64_t files_read() const { return files_read_.load(std::memory_order_relaxed); }

  // Model files that could not be loaded when last looked at (by Open, Get or List) and were
  // not replaced or deleted since, sorted by file name.
  std::vector<Unreadable> unreadable() const;

 private:
  ModelStore(std::string dir, int64_t max_file_bytes, ContentCheck check);

  std::string PathOf(absl::string_view name) const;
  // Reads `file_name` (a *.model file whose stat is `info`) into the map, or records it as
  // unreadable at that version; unless this store wrote or deleted the name since its
  // generation was `generation`.
  void Load(const std::string& file_name, const struct stat& info, uint64_t generation) const;
  // Puts and Deletes of `name` by this store so far.
  uint64_t Generation(absl::string_view name) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Brings the map in line with the file of `name` (stat'ed now): drops a model whose file is
  // gone, reads a file whose version the map does not hold. Returns the map's entry when the
  // file was not read (the usual case: one stat and two shared locks), else null: look it up.
  EntryPtr Refresh(absl::string_view name) const;

  const std::string dir_;
  const int64_t max_file_bytes_;
  const ContentCheck check_;
  // Held while a file is read into the map, so that lookups arriving together for a file that
  // changed read it once (the others find it loaded), and the memory of one load is in use at a
  // time. Lookups of unchanged files never take it.
  mutable absl::Mutex load_mu_;
  mutable std::atomic<int64_t> files_read_{0};
  // Serialises writers (file operations plus the map update), so the map always matches the
  // last rename. Lock order: write_mu_, then load_mu_, then mu_.
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  // Mutable: readers update the map when another process changed the directory.
  mutable std::map<std::string, EntryPtr, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
  struct UnreadableFile {
    std::string reason;
    FileVersion version;  // Not read again until the file changes,
    absl::Time retry_after = absl::InfiniteFuture();  // or (a failed read: EACCES, EIO) until then.
    bool lasting = true;  // Its bytes are wrong (FAILED_PRECONDITION), not a read failing (UNAVAILABLE).
  };
  // Files that replace a model the map holds, and that could not be read: the old model is served
  // and the file not tried again until then.
  mutable std::map<std::string, absl::Time, std::less<>> read_retry_after_ ABSL_GUARDED_BY(mu_);

  mutable std::map<std::string, UnreadableFile, std::less<>> unreadable_ ABSL_GUARDED_BY(mu_);  // By file name.
  // Bumped by every Put and Delete of a name: a Load that read the file before must not install
  // what it read over this store's own, newer write (or bring a deleted model back).
  std::map<std::string, uint64_t, std::less<>> generations_ ABSL_GUARDED_BY(mu_);
  // Removes `name`'s entry from the map and returns it (null if none).
  EntryPtr TakeEntry(absl::string_view name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Declared before a MutexLock on mu_: once the lock is released, drops the replaced or removed
  // entry given to Add and tells the listener.
  class ChangeNotice {
   public:
    explicit ChangeNotice(const ModelStore& store) : store_(store) {}
    ~ChangeNotice();
    void Add(EntryPtr old) { old_ = std::move(old); }

   private:
    const ModelStore& store_;
    EntryPtr old_;
  };
  std::function<void()> on_change_;  // Set before calls run: read without a lock.
  // Put and Delete hold an exclusive flock on kLockFile in the directory from their check of what
  // is stored (after a Refresh) to their rename or unlink: replicas sharing the volume cannot
  // both store one name with different kinds.
  class VolumeLock {
   public:
    // Waits up to kVolumeLockTimeout for the flock on `fd` (then status() is UNAVAILABLE). Where
    // there is no lock to take (fd < 0, or flock unsupported: logged once), holds nothing.
    VolumeLock(int fd, absl::string_view dir);
    ~VolumeLock();
    VolumeLock(const VolumeLock&) = delete;
    VolumeLock& operator=(const VolumeLock&) = delete;
    const absl::Status& status() const { return status_; }

   private:
    int fd_ = -1;  // Held when >= 0.
    absl::Status status_;
  };
  static constexpr absl::Duration kVolumeLockTimeout = absl::Seconds(30);
  int LockFd() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  int lock_fd_ ABSL_GUARDED_BY(write_mu_) = -1;
  const std::string temp_prefix_;  // Random hex, unique to this store among the volume's writers.
  uint64_t temp_counter_ ABSL_GUARDED_BY(write_mu_) = 0;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_MODEL_STORE_H_
