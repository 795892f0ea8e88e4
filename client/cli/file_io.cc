#include "client/cli/file_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"

namespace primserve {
namespace cli {

absl::StatusOr<InputFile> InputFile::Open(absl::string_view path) {
  std::string path_string(path);
  std::FILE* file = std::fopen(path_string.c_str(), "rb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  return InputFile(std::move(path_string), file);
}

absl::Status InputFile::Read(size_t max_bytes, std::string* out) {
  char chunk[1 << 16];
  while (max_bytes > 0) {
    const size_t got = std::fread(chunk, 1, std::min(max_bytes, sizeof(chunk)), file_.get());
    if (got == 0) break;
    out->append(chunk, got);
    max_bytes -= got;
  }
  if (std::ferror(file_.get())) return absl::ErrnoToStatus(errno, absl::StrCat(path_, ": cannot read"));
  return absl::OkStatus();
}

std::optional<uint64_t> InputFile::RegularFileSize() const {
  struct stat info;
  if (::fstat(::fileno(file_.get()), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(info.st_size);
}

absl::StatusOr<std::string> ReadTextFile(absl::string_view path, uint64_t max_bytes) {
  absl::StatusOr<InputFile> file = InputFile::Open(path);
  if (!file.ok()) return file.status();
  auto too_large = [&] {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": larger than ", max_bytes, " bytes, the most read from a file of this kind"));
  };
  const std::optional<uint64_t> size = file->RegularFileSize();
  if (size.has_value() && *size > max_bytes) return too_large();
  std::string bytes;
  if (size.has_value()) bytes.reserve(*size);
  // One byte past the limit tells a file of exactly max_bytes from a longer stream.
  const size_t want = max_bytes >= SIZE_MAX ? SIZE_MAX : static_cast<size_t>(max_bytes) + 1;
  if (absl::Status read = file->Read(want, &bytes); !read.ok()) return read;
  if (bytes.size() > max_bytes) return too_large();
  return bytes;
}

absl::Status WriteFileBytes(absl::string_view path, absl::string_view bytes) {
  const std::string path_string(path);
  std::FILE* file = std::fopen(path_string.c_str(), "wb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open for writing"));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  const int write_errno = errno;
  // fclose flushes: a full disk may only show up here.
  if (std::fclose(file) != 0 || !written) {
    return absl::ErrnoToStatus(written ? errno : write_errno, absl::StrCat(path, ": cannot write"));
  }
  return absl::OkStatus();
}

}  // namespace cli
}  // namespace primserve
