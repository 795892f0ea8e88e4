#include "core/dnnl_context.h"

#include <new>

#include "absl/strings/str_cat.h"

namespace primserve {

dnnl::engine& DnnlEngine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

std::string DnnlIsaName() {
  const char* isa = "unknown";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    case dnnl::cpu_isa::avx: isa = "avx"; break;
    case dnnl::cpu_isa::sse41: isa = "sse41"; break;
    default: break;
  }
  return isa;
}

std::string DnnlVersionString() {
  const dnnl_version_t* v = dnnl_version();
  const std::string isa = DnnlIsaName();
  return absl::StrCat("oneDNN ", v->major, ".", v->minor, ".", v->patch, " (cpu runtime ",
                      v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other", ", max ISA ", isa, ")");
}

absl::Status DnnlErrorToStatus(const dnnl::error& error, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": oneDNN: ", error.what());
  switch (error.status) {
    case dnnl_invalid_arguments:
    case dnnl_unimplemented:
      return absl::InvalidArgumentError(message);
    case dnnl_out_of_memory:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status RunDnnl(absl::string_view what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const dnnl::error& e) {
    return DnnlErrorToStatus(e, what);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory"));
  }
  return absl::OkStatus();
}

}  // namespace primserve
