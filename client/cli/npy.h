// Reading and writing NumPy .npy files (the format of numpy.save / numpy.load) as float32 tensors.
//
// Supported: format versions 1.0, 2.0 and 3.0; C order (fortran_order False); dtype '<f4'
// (read and written) and '<f8' (read, converted to float32). Shapes may be any rank, including
// () (a scalar: one element) and (n,). Everything else (big-endian, integers, structured dtypes,
// Fortran order, pickled objects) is refused with a status that names the file and the problem.
// Malformed files never crash the reader: sizes are checked against the file before allocation.
//
// Example:
//   absl::StatusOr<primserve::client::Tensor> input = primserve::cli::ReadNpy("q.npy");
//   if (!input.ok()) return input.status();
//   absl::Status written = primserve::cli::WriteNpy("q_copy.npy", *input);
//
// The format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#ifndef PRIMSERVE_CLIENT_CLI_NPY_H_
#define PRIMSERVE_CLIENT_CLI_NPY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "primserve/client/tensor.h"

namespace primserve {
namespace cli {

// Reads the .npy file at `path`. NOT_FOUND / PERMISSION_DENIED (or another errno-derived code)
// when the file cannot be read; INVALID_ARGUMENT when its contents are not a supported .npy
// file (bad magic, unsupported version or dtype, Fortran order, malformed header, truncated
// data, data size not matching the shape). Messages start with the path.
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
