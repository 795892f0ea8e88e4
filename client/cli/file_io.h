// Files as primserve-cli reads and writes them: bounded reads (a device such as /dev/zero given by
// mistake, or a pipe, never makes the CLI read without end) and errno-derived statuses that name
// the file: NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION for a directory, ...
//
// Example:
//   absl::StatusOr<InputFile> file = InputFile::Open("q.npy");
//   std::string head;
//   if (absl::Status read = file->Read(10, &head); !read.ok()) return read;  // At most 10 bytes.
#ifndef PRIMSERVE_CLIENT_CLI_FILE_IO_H_
#define PRIMSERVE_CLIENT_CLI_FILE_IO_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primserve {
namespace cli {

// A file open for reading, read in chunks of the caller's choosing.
class InputFile {
 public:
  static absl::StatusOr<InputFile> Open(absl::string_view path);

  // Appends up to `max_bytes` more bytes to `out`: fewer only at the end of the file.
  absl::Status Read(size_t max_bytes, std::string* out);
  // The size of a regular file; nullopt for a pipe, a device or a directory.
  std::optional<uint64_t> RegularFileSize() const;

 private:
  struct Closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  InputFile(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}

  std::string path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

// A whole text file of at most `max_bytes` (a regular file is measured first; a pipe or device
// stops as it passes the limit): RESOURCE_EXHAUSTED beyond it.
absl::StatusOr<std::string> ReadTextFile(absl::string_view path, uint64_t max_bytes);

// Writes `bytes` to the file at `path`, replacing it: an errno-derived code naming the path when
// it cannot be opened, written or flushed (NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...).
absl::Status WriteFileBytes(absl::string_view path, absl::string_view bytes);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_FILE_IO_H_
