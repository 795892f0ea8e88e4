// Reading and writing NumPy .npy files (the format of numpy.save / numpy.load) as float32 tensors,
// and the undecoded reader (ReadNpyData) that the label files of table_files.h share.
//
// Tensors: format versions 1.0, 2.0 and 3.0; C order (fortran_order False); dtype '<f4' (read
// and written) and '<f8' (read, converted to float32 as numpy's astype does). Shapes may be any
// rank, including () (a scalar: one element) and (n,). Everything else (big-endian, integers,
// structured dtypes, Fortran order, pickled objects) is refused with a status that names the file
// and the problem. Malformed files never crash the reader: it reads what the header announces
// (a header up to 1 MiB, then the data), never more, and checks sizes before it allocates.
//
// Example:
//   absl::StatusOr<primserve::client::Tensor> input = primserve::cli::ReadNpy("q.npy");
//   if (!input.ok()) return input.status();
//   absl::Status written = primserve::cli::WriteNpy("q_copy.npy", *input);
//
// The format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#ifndef PRIMSERVE_CLIENT_CLI_NPY_H_
#define PRIMSERVE_CLIENT_CLI_NPY_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/npy_header.h"
#include "primserve/client/tensor.h"

namespace primserve {
namespace cli {

// A .npy file read but not yet decoded: its header and exactly the data bytes it announces.
struct NpyData {
  NpyHeader header;
  int item_bytes = 0;  // From the dtype check below.
  int64_t count = 0;   // Elements: the product of header.shape.
  std::string data;    // count * item_bytes bytes.
};

// Appends up to `max_bytes` more bytes of a file to `out` (fewer only at its end).
using NpyInput = absl::FunctionRef<absl::Status(size_t max_bytes, std::string* out)>;
using NpyInputFunction = std::function<absl::Status(size_t max_bytes, std::string* out)>;
// Given a parsed header, the item size of its dtype, or INVALID_ARGUMENT saying why the reader
// does not take it (dtype, order). Messages are prefixed with the file's name.
using NpyHeaderCheck = absl::FunctionRef<absl::StatusOr<int>(const NpyHeader& header)>;

// Reads a .npy file from `read` as its preamble and header ask: the preamble, then the header,
// then (once `check` accepted it) only the data bytes it announces, so a large file that is no
// .npy file (or /dev/zero) costs a few bytes, and a header that lies costs no more memory than
// the data really present. Bytes after the data are counted, not kept. INVALID_ARGUMENT naming
// `name` for bad magic, an unsupported version, a malformed header, `check`'s refusal, a shape
// too large, truncated data or trailing bytes; `read`'s error when it fails.
absl::StatusOr<NpyData> ReadNpyData(NpyInput read, absl::string_view name, NpyHeaderCheck check);
// ReadNpyData from the file at `path` (NOT_FOUND, PERMISSION_DENIED, ... when it cannot be read).
absl::StatusOr<NpyData> ReadNpyFile(absl::string_view path, NpyHeaderCheck check);
// An NpyInput over bytes in memory (which must outlive it).
NpyInputFunction StringInput(absl::string_view bytes);

// Reads the .npy file at `path`. NOT_FOUND / PERMISSION_DENIED (or another errno-derived code)
// when the file cannot be read; INVALID_ARGUMENT when its contents are not a supported .npy
// file (bad magic, unsupported version or dtype, Fortran order, malformed header, truncated
// data, data size not matching the shape). Messages start with the path. Reads only the bytes the header announces (see ReadNpyData).
absl::StatusOr<client::Tensor> ReadNpy(absl::string_view path);

// Parses the bytes of a whole .npy file; `name` (a path) prefixes error messages. The codes
// are those of ReadNpy for the contents.
absl::StatusOr<client::Tensor> ParseNpy(absl::string_view bytes, absl::string_view name);

// The bytes of a .npy file holding `tensor` as '<f4', C order: version 1.0, or 2.0 when the
// header does not fit a 1.0 header. INVALID_ARGUMENT when a shape extent is negative or the
// number of values differs from the product of the shape.
absl::StatusOr<std::string> SerializeNpy(const client::Tensor& tensor);

// Writes `tensor` to `path` (replacing it) as SerializeNpy does. INVALID_ARGUMENT as
// SerializeNpy; an errno-derived code when the file cannot be written.
absl::Status WriteNpy(absl::string_view path, const client::Tensor& tensor);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_NPY_H_
