// Position encodings (MATH.md sections 1-3): the sinusoidal table, rotary position embedding
// (RoPE) and two-dimensional RoPE.
//
// Shapes: a sinusoidal table is [num_positions, dim]. RoPE rotates `input` [..., seq_len, dim]
// (rank >= 2, row-major); the rotation of row s uses position s and is shared by every
// leading index, so the cos/sin table is computed once per call (RopeTable) and reused. Tables
// of the default positions are also kept across calls (RopeTable::Shared).
//
// Angles: theta_i = base^(-2i/d) with i the pair index and d the rotary dimension (d/2 for each
// half of a 2-D RoPE). Angles pos * theta_i and their cos/sin are computed in double and
// rounded once to float, so large or fractional positions lose nothing to float angle error.
//
// Example:
//   RopeSpec spec;                          // 1-D, interleaved pairs, base 10000
//   spec.pairing = RopePairing::kHalfSplit; // the HF LLaMA convention
//   ASSIGN_OR_RETURN(Tensor rotated, ApplyRope(input, spec));
#ifndef PRIMSERVE_CORE_POSITION_ENCODING_H_
#define PRIMSERVE_CORE_POSITION_ENCODING_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"

namespace primserve {

inline constexpr double kDefaultRopeBase = 10000.0;

enum class SinusoidalLayout {
  kInterleaved,  // p[2i] = sin(k theta_i), p[2i+1] = cos(k theta_i): Vaswani et al.
  kSplit,        // sines in [0, d/2), cosines in [d/2, d): tensor2tensor, Hugging Face.
};

struct SinusoidalOptions {
  int64_t dim = 0;                  // Even, > 0.
  double base = kDefaultRopeBase;   // Finite, > 0.
  SinusoidalLayout layout = SinusoidalLayout::kInterleaved;
  int64_t max_elements = kDefaultMaxElements;
};

// The sinusoidal table [positions.size(), dim] for real positions.
// Errors: INVALID_ARGUMENT (odd or non-positive dim, bad base, non-finite position, no
// positions); RESOURCE_EXHAUSTED (table above max_elements).
absl::StatusOr<Tensor> SinusoidalTable(absl::Span<const double> positions,
                                       const SinusoidalOptions& options);

// Positions 0..length-1 (length >= 1).
absl::StatusOr<Tensor> SinusoidalTable(int64_t length, const SinusoidalOptions& options);

enum class RopeKind {
  k1D,  // One position per token (RoFormer).
  k2D,  // (x, y) per token: x rotates features [0, r/2), y rotates [r/2, r) (archive 8397).
};

enum class RopePairing {
  kInterleaved,  // (2i, 2i+1): Su, RoFormer, Meta LLaMA, GPT-J.
  kHalfSplit,    // (i, i + half): GPT-NeoX, HF LLaMA rotate_half. For 2-D, inside each half.
};

// What to rotate and by which positions. Field names match the wire API so that error
// messages name the field the caller set.
struct RopeSpec {
  RopeKind kind = RopeKind::k1D;
  RopePairing pairing = RopePairing::kInterleaved;
  double base = kDefaultRopeBase;
  int64_t rotary_dim = 0;  // Leading features that rotate; 0 means all of dim.
  bool inverse = false;    // Rotate by R_{-m} = R_m^T.
  // 1-D: empty means 0..seq_len-1.
  std::vector<double> positions;
  // 2-D: exactly one of (positions_x, positions_y) or (grid_height, grid_width).
  std::vector<double> positions_x;
  std::vector<double> positions_y;
  int64_t grid_height = 0;
  int64_t grid_width = 0;
};

// The cos/sin table of a RopeSpec for one (seq_len, dim), built once and applied to any
// number of [seq_len, dim] slices. Cheap to move; immutable after Create.
class RopeTable {
 public:
  // Validates `spec` against rows of width `dim` at `seq_len` positions.
  // Errors: INVALID_ARGUMENT naming the field (dim odd, or not a multiple of 4 for 2-D;
  // rotary_dim odd, negative or > dim; positions of the wrong length or non-finite; a grid that
  // does not cover seq_len; fields of the other kind; base not finite and > 0).
  static absl::StatusOr<RopeTable> Create(const RopeSpec& spec, int64_t seq_len, int64_t dim);

  // Create, shared across calls: a table of the default positions (no positions,
  // positions_x or positions_y: 0..seq_len-1, or the grid) depends only on the spec's scalars
  // and the shape, so it is computed once and kept in a process-wide cache of at most
  // kSharedCacheBytes (and 256 tables), least recently used out; repeated calls of one shape
  // skip the seq_len x rotary_dim / 2 sincos. Tables of fewer than kMinSharedFloats values (cheap
  // to rebuild) or above a quarter of the budget are not kept, nor are tables of explicit
  // positions. Thread-safe.
  static absl::StatusOr<std::shared_ptr<const RopeTable>> Shared(const RopeSpec& spec, int64_t seq_len,
                                                                 int64_t dim);
  static constexpr int64_t kSharedCacheBytes = int64_t{64} << 20;
  static constexpr int64_t kMinSharedFloats = 1024;

  int64_t seq_len() const { return seq_len_; }
  int64_t dim() const { return dim_; }
  int64_t rotary_dim() const { return rotary_dim_; }

  // Rotates `num_slices` consecutive [seq_len, dim] slices from `input` into `output`
  // (may alias exactly; must not otherwise overlap). Threads over rows when the work is large.
  void Apply(const float* input, float* output, int64_t num_slices) const;

  // Rotates one row of width dim() as position index `s` (0 <= s < seq_len()).
  void ApplyRow(const float* input, float* output, int64_t s) const;

 private:
  RopeTable() = default;

  RopeKind kind_ = RopeKind::k1D;
  RopePairing pairing_ = RopePairing::kInterleaved;
  int64_t seq_len_ = 0;
  int64_t dim_ = 0;
  int64_t rotary_dim_ = 0;
  // [seq_len, rotary_dim / 2] each: cos and sin of the angle of pair p at position s. For 2-D the
  // first rotary_dim / 4 pairs carry x angles, the rest y angles.
  std::vector<float> cos_;
  std::vector<float> sin_;
};

// Rotates `input` [..., seq_len, dim] (rank >= 2) in place and returns it (pass an rvalue to
// avoid a copy). Errors as RopeTable::Create, plus INVALID_ARGUMENT for rank < 2 or non-finite
// input values.
absl::StatusOr<Tensor> ApplyRope(Tensor input, const RopeSpec& spec);

// The same rotation from `input` (elements of `shape` = [..., seq_len, dim], rank >= 2) into
// `output` (the same number of elements; may alias `input` exactly, must not otherwise overlap).
// For callers that own neither buffer as a Tensor, e.g. a server that reads a request's bytes
// and writes straight into its response. Errors as ApplyRope, plus INVALID_ARGUMENT when the
// element counts of `shape`, `input` and `output` differ; nothing is written on error.
absl::Status ApplyRope(absl::Span<const float> input, absl::Span<const int64_t> shape, const RopeSpec& spec,
                       absl::Span<float> output);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_POSITION_ENCODING_H_
