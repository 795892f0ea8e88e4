#include "core/tile_matmul.h"

#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/dnnl_context.h"

namespace primserve {
namespace {

using dt = dnnl::memory::data_type;

struct Cache {
  absl::Mutex mu;
  absl::flat_hash_map<MatmulShape, std::shared_ptr<const TileMatmul>> entries ABSL_GUARDED_BY(mu);
  std::set<std::string> implementations ABSL_GUARDED_BY(mu);
};

Cache& GetCache() {
  static Cache* cache = new Cache();
  return *cache;
}

// Distinct tile shapes per process stay small (edge tiles of a few sizes); the bound only
// protects against adversarial variety.
constexpr size_t kMaxCachedPrimitives = 4096;

}  // namespace

absl::StatusOr<std::shared_ptr<const TileMatmul>> TileMatmul::Get(const MatmulShape& shape) {
  Cache& cache = GetCache();
  {
    absl::MutexLock lock(&cache.mu);
    auto it = cache.entries.find(shape);
    if (it != cache.entries.end()) return it->second;
  }
  if (shape.m <= 0 || shape.n <= 0 || shape.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul: expected positive m, n, k, got ", shape.m, ", ", shape.n, ", ", shape.k));
  }
  std::shared_ptr<TileMatmul> matmul(new TileMatmul());
  matmul->shape_ = shape;
  const dt in_type = shape.bf16 ? dt::bf16 : dt::f32;
  absl::Status status = RunDnnl("matmul primitive", [&] {
    matmul->a_md_ = shape.a_transposed ? dnnl::memory::desc({shape.m, shape.k}, in_type, {1, shape.lda})
                                       : dnnl::memory::desc({shape.m, shape.k}, in_type, {shape.lda, 1});
    matmul->b_md_ = shape.b_transposed ? dnnl::memory::desc({shape.k, shape.n}, in_type, {1, shape.ldb})
                                       : dnnl::memory::desc({shape.k, shape.n}, in_type, {shape.ldb, 1});
    matmul->c_md_ = dnnl::memory::desc({shape.m, shape.n}, dt::f32, {shape.ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (shape.scale != 1.0f) attr.set_output_scales(0, {shape.scale});
    if (shape.accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::desc desc(matmul->a_md_, matmul->b_md_, matmul->c_md_);
    dnnl::matmul::primitive_desc pd(desc, attr, DnnlEngine());
    matmul->scratchpad_md_ = pd.scratchpad_desc();
    matmul->scratchpad_bytes_ = matmul->scratchpad_md_.get_size();
    matmul->implementation_ = pd.impl_info_str();
    matmul->primitive_ = dnnl::matmul(pd);
  });
  if (!status.ok()) return status;
  absl::MutexLock lock(&cache.mu);
  if (cache.entries.size() >= kMaxCachedPrimitives) cache.entries.clear();
  cache.implementations.insert(matmul->implementation_);
  auto [it, inserted] = cache.entries.emplace(shape, std::move(matmul));
  return it->second;
}

void TileMatmul::Execute(dnnl::stream& stream, const void* a, const void* b, float* c, void* scratchpad) const {
  dnnl::engine& engine = DnnlEngine();
  dnnl::memory a_mem(a_md_, engine, const_cast<void*>(a));
  dnnl::memory b_mem(b_md_, engine, const_cast<void*>(b));
  dnnl::memory c_mem(c_md_, engine, c);
  dnnl::memory s_mem(scratchpad_md_, engine, scratchpad);
  primitive_.execute(stream, {{DNNL_ARG_SRC, a_mem},
                              {DNNL_ARG_WEIGHTS, b_mem},
                              {DNNL_ARG_DST, c_mem},
                              {DNNL_ARG_SCRATCHPAD, s_mem}});
}

void TileMatmul::Execute(dnnl::stream& stream, TileMatmulArgs& args, const void* a, const void* b, float* c,
                         void* scratchpad) const {
  if (args.bound_ != this) {
    dnnl::engine& engine = DnnlEngine();
    args.a_mem_ = dnnl::memory(a_md_, engine, const_cast<void*>(a));
    args.b_mem_ = dnnl::memory(b_md_, engine, const_cast<void*>(b));
    args.c_mem_ = dnnl::memory(c_md_, engine, c);
    args.scratchpad_mem_ = dnnl::memory(scratchpad_md_, engine, scratchpad);
    args.args_ = {{DNNL_ARG_SRC, args.a_mem_},
                  {DNNL_ARG_WEIGHTS, args.b_mem_},
                  {DNNL_ARG_DST, args.c_mem_},
                  {DNNL_ARG_SCRATCHPAD, args.scratchpad_mem_}};
    args.bound_ = this;
  } else {
    // Plain (unpadded) layouts: set_data_handle only swaps the pointer.
    args.a_mem_.set_data_handle(const_cast<void*>(a));
    args.b_mem_.set_data_handle(const_cast<void*>(b));
    args.c_mem_.set_data_handle(c);
    args.scratchpad_mem_.set_data_handle(scratchpad);
  }
  primitive_.execute(stream, args.args_);
}

std::vector<std::string> TileMatmul::CreatedImplementations() {
  Cache& cache = GetCache();
  absl::MutexLock lock(&cache.mu);
  return std::vector<std::string>(cache.implementations.begin(), cache.implementations.end());
}

bool HasNativeBf16() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

}  // namespace primserve
