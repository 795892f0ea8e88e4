// PRIMSERVE_MULTIVERSION: compile a hot loop for the x86-64-v4 (AVX-512), x86-64-v3 (AVX2 with
// FMA) and baseline x86-64 levels and pick the best body when the program loads (GCC
// target_clones), so one portable binary runs at full vector width on the machine it lands on.
// The levels, not bare "avx2": an "avx2" clone has no FMA, and an exp polynomial then runs as
// separate multiplies and adds. Disabled under sanitizers and non-GCC compilers.
#ifndef PRIMSERVE_CORE_MULTIVERSION_H_
#define PRIMSERVE_CORE_MULTIVERSION_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#if __GNUC__ >= 12  // target_clones("arch=...") arrived in GCC 12.
#define PRIMSERVE_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PRIMSERVE_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#else
#define PRIMSERVE_MULTIVERSION
#endif

#endif  // PRIMSERVE_CORE_MULTIVERSION_H_
