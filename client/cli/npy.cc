#include "client/cli/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/file_io.h"
#include "client/cli/npy_header.h"

namespace primserve {
namespace cli {
namespace {

constexpr absl::string_view kMagic = "\x93NUMPY";
// Data starts at a multiple of this (numpy >= 1.14 aligns to 64 for memory mapping).
constexpr size_t kAlignment = 64;
// The longest header read (a rank-10000 shape needs about 200 KB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;

absl::Status ContentError(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", problem));
}

// Little-endian loads, independent of the host byte order.
uint64_t LoadLittleEndian(const char* bytes, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

void AppendLittleEndian(uint64_t value, int width, std::string* out) {
  for (int i = 0; i < width; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Sets `count` to the element count of `shape`; false when an extent is negative or it overflows.
bool CheckedElementCount(const std::vector<int64_t>& shape, int64_t* count) {
  for (int64_t extent : shape) {
    if (extent < 0) return false;
  }
  // A zero extent empties the array however large the others are: no overflow to report.
  for (int64_t extent : shape) {
    if (extent == 0) {
      *count = 0;
      return true;
    }
  }
  int64_t product = 1;
  for (int64_t extent : shape) {
    if (product > std::numeric_limits<int64_t>::max() / extent) return false;
    product *= extent;
  }
  *count = product;
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), shape.size() == 1 ? ",)" : ")");
}

// Decodes '<f4' or '<f8' data into `values` (sized already). float64 rounds to nearest, as
// numpy's astype(float32) does: beyond float32's range it becomes +-inf (a -1e300 mask stays a mask).
void DecodeValues(absl::string_view data, int item_bytes, std::vector<float>* values) {
  for (size_t i = 0; i < values->size(); ++i) {
    const uint64_t bits = LoadLittleEndian(data.data() + i * item_bytes, item_bytes);
    if (item_bytes == 4) {
      const uint32_t bits32 = static_cast<uint32_t>(bits);
      std::memcpy(&(*values)[i], &bits32, sizeof(float));
    } else {
      double value;
      std::memcpy(&value, &bits, sizeof(double));
      (*values)[i] = static_cast<float>(value);
    }
  }
}

}  // namespace

absl::StatusOr<NpyData> ReadNpyData(NpyInput read, absl::string_view name, NpyHeaderCheck check) {
  std::string bytes;
  if (absl::Status status = read(kMagic.size() + 2 + 4, &bytes); !status.ok()) return status;  // The longest preamble (2.0, 3.0).
  if (absl::string_view(bytes).substr(0, kMagic.size()) != kMagic) {
    return ContentError(name, "bad magic: not a .npy file (it must start with \\x93NUMPY)");
  }
  if (bytes.size() < kMagic.size() + 2) return ContentError(name, "truncated header: the file ends in the preamble");
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    return ContentError(name, absl::StrCat("unsupported .npy format version ", major, ".", minor,
                                           " (supported: 1.0, 2.0, 3.0)"));
  }
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4 (3.0 only changes the
  // header's text encoding from latin-1 to utf-8, which is irrelevant to the keys read here).
  const int length_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagic.size() + 2 + length_bytes;
  if (bytes.size() < prefix) return ContentError(name, "truncated header: the file ends in the preamble");
  const uint64_t header_length = LoadLittleEndian(bytes.data() + kMagic.size() + 2, length_bytes);
  // numpy writes headers of about 100 bytes (and reads at most 10000 by default): a length in the
  // megabytes is a damaged or hostile file, refused before its bytes are read.
  if (header_length > kMaxHeaderBytes) {
    return ContentError(name, absl::StrCat("header length ", header_length, " is more than the ", kMaxHeaderBytes,
                                           " bytes accepted"));
  }
  if (prefix + header_length > bytes.size()) {
    if (absl::Status status = read(prefix + header_length - bytes.size(), &bytes); !status.ok()) return status;
  }
  if (header_length > bytes.size() - prefix) {
    return ContentError(name, absl::StrCat("header length ", header_length, " exceeds the file (",
                                           bytes.size() - prefix, " bytes after the preamble)"));
  }
  NpyData array;
  absl::StatusOr<NpyHeader> header = ParseNpyHeader(absl::string_view(bytes).substr(prefix, header_length));
  if (!header.ok()) return ContentError(name, header.status().message());
  array.header = *std::move(header);
  absl::StatusOr<int> item_bytes = check(array.header);
  if (!item_bytes.ok()) return ContentError(name, item_bytes.status().message());
  if (*item_bytes <= 0) return absl::InternalError(absl::StrCat(name, ": the dtype check gave no item size"));
  array.item_bytes = *item_bytes;
  if (!CheckedElementCount(array.header.shape, &array.count) ||
      array.count > std::numeric_limits<int64_t>::max() / array.item_bytes) {
    return ContentError(name, absl::StrCat("shape ", ShapeString(array.header.shape), " is too large"));
  }
  // Only the bytes the header announces are read (and kept): a huge file that is no .npy, or
  // one whose header lies, costs no more memory than its real data needs.
  const uint64_t needed = static_cast<uint64_t>(array.count) * static_cast<uint64_t>(array.item_bytes);
  array.data = bytes.substr(prefix + header_length);
  if (array.data.size() < needed) {
    if (absl::Status status = read(needed - array.data.size(), &array.data); !status.ok()) return status;
  }
  uint64_t present = array.data.size();
  if (present == needed) {  // Anything after the data is counted, not kept.
    std::string rest;
    do {
      rest.clear();
      if (absl::Status status = read(size_t{1} << 16, &rest); !status.ok()) return status;
      present += rest.size();
    } while (!rest.empty());
  }
  if (needed != present) {
    return ContentError(name, absl::StrCat(needed > present ? "truncated data" : "data size mismatch",
                                           ": shape ", ShapeString(array.header.shape), " of '",
                                           array.header.descr, "' needs ", needed, " bytes, ", present,
                                           " follow the header"));
  }
  return array;
}

namespace {

// The dtypes and layout ReadNpy decodes: '<f4' and '<f8', C order.
absl::StatusOr<int> FloatItemBytes(const NpyHeader& header) {
  int item_bytes = 0;
  if (header.descr == "<f4") {
    item_bytes = 4;
  } else if (header.descr == "<f8") {
    item_bytes = 8;
  } else {
    const bool big_endian = !header.descr.empty() && header.descr[0] == '>';
    return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", header.descr, "'",
                                                   big_endian ? " (big-endian)" : "",
                                                   "; supported: '<f4' (float32) and '<f8' (float64)"));
  }
  if (header.fortran_order) {
    return absl::InvalidArgumentError("fortran_order is True: Fortran (column-major) order is not supported; "
                                      "save a C-order array (numpy.ascontiguousarray)");
  }
  return item_bytes;
}

client::Tensor DecodeFloats(NpyData array) {
  client::Tensor tensor;
  tensor.shape = std::move(array.header.shape);
  tensor.values.resize(static_cast<size_t>(array.count));
  DecodeValues(array.data, array.item_bytes, &tensor.values);
  return tensor;
}

}  // namespace

absl::StatusOr<client::Tensor> ParseNpy(absl::string_view bytes, absl::string_view name) {
  absl::StatusOr<NpyData> array = ReadNpyData(StringInput(bytes), name, FloatItemBytes);
  if (!array.ok()) return array.status();
  return DecodeFloats(*std::move(array));
}

absl::StatusOr<client::Tensor> ReadNpy(absl::string_view path) {
  absl::StatusOr<NpyData> array = ReadNpyFile(path, FloatItemBytes);
  if (!array.ok()) return array.status();
  return DecodeFloats(*std::move(array));
}

NpyInputFunction StringInput(absl::string_view bytes) {
  return [bytes](size_t max_bytes, std::string* out) mutable {
    const absl::string_view taken = bytes.substr(0, max_bytes);
    out->append(taken.data(), taken.size());
    bytes.remove_prefix(taken.size());
    return absl::OkStatus();
  };
}

absl::StatusOr<NpyData> ReadNpyFile(absl::string_view path, NpyHeaderCheck check) {
  // Read in chunks as the header asks, rather than trusting a size from stat: pipes
  // (/dev/stdin) work too, and memory follows what the file really holds.
  absl::StatusOr<InputFile> file = InputFile::Open(path);
  if (!file.ok()) return file.status();
  return ReadNpyData([&](size_t max_bytes, std::string* out) { return file->Read(max_bytes, out); }, path, check);
}

absl::StatusOr<std::string> SerializeNpy(const client::Tensor& tensor) {
  int64_t count = 0;
  if (!CheckedElementCount(tensor.shape, &count)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor shape [", absl::StrJoin(tensor.shape, ", "),
                                                   "] has a negative extent or overflows"));
  }
  if (static_cast<uint64_t>(count) != tensor.values.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor shape [", absl::StrJoin(tensor.shape, ", "),
                                                   "] needs ", count, " values, got ", tensor.values.size()));
  }
  std::string dict = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': ",
                                  ShapeString(tensor.shape), ", }");
  // Pad with spaces and end with '\n' so that the data starts at a multiple of kAlignment.
  int major = 1;
  size_t prefix = kMagic.size() + 2 + 2;
  size_t padded = (prefix + dict.size() + 1 + kAlignment - 1) / kAlignment * kAlignment - prefix;
  if (padded > std::numeric_limits<uint16_t>::max()) {
    major = 2;
    prefix = kMagic.size() + 2 + 4;
    padded = (prefix + dict.size() + 1 + kAlignment - 1) / kAlignment * kAlignment - prefix;
  }
  dict.append(padded - dict.size() - 1, ' ');
  dict.push_back('\n');

  std::string out(kMagic);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  AppendLittleEndian(dict.size(), major == 1 ? 2 : 4, &out);
  out += dict;
  out.reserve(out.size() + tensor.values.size() * 4);
  for (float value : tensor.values) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    AppendLittleEndian(bits, 4, &out);
  }
  return out;
}

absl::Status WriteNpy(absl::string_view path, const client::Tensor& tensor) {
  absl::StatusOr<std::string> bytes = SerializeNpy(tensor);
  if (!bytes.ok()) return absl::Status(bytes.status().code(), absl::StrCat(path, ": ", bytes.status().message()));
  return WriteFileBytes(path, *bytes);
}

}  // namespace cli
}  // namespace primserve
