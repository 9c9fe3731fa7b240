#pragma once
// The arithmetic under pe::Retriever::search (internal): SIMD dot products and
// a GEMM micro-kernel fused with the top-k threshold test, one KernelSet per
// instruction set, chosen at run time.
//
// Why our own kernels and not cblas_sgemm: measured on the reference machine
// (AMD EPYC, 2 cores, Debian 12's OpenBLAS 0.3.21), OpenBLAS picks its Haswell
// (AVX2) kernel and its sgemm reaches ~190 GFLOPS; FAISS on top of it ~108. The
// 14x32 AVX-512 micro-kernel, streaming the full depth D from L2, reaches ~350
// GFLOPS for the whole search (packing and top-k included; AVX-512 FMA peak
// ~440), and the AVX2 6x16 kernel ~200 (AVX2 peak ~220). The top-k test runs on
// the accumulators while they are still in registers, so the Q x N score
// matrix is never written to memory, and no BLAS or second threading runtime
// is needed next to LibTorch's.
//
// Why one translation unit per instruction set (kernels_avx2.cpp,
// kernels_avx512.cpp, compiled with -mavx2 / -mavx512f by CMake; see
// CMakeLists.txt) behind a table of function pointers: the library must run on
// any x86-64, whatever flags its users compile with. Those files contain only
// functions with internal linkage (and call nothing but intrinsics and the
// baseline functions declared here), so no inline function or template
// instantiation compiled for AVX-512 can be picked by the linker for code that
// runs on a CPU without it. Everything else (scheduling, heaps, packing the
// queries) is baseline code in search.cpp.
//
// Determinism: for a given kernel set, one (query, gallery row) score is
// computed by the same sequence of operations wherever the row sits in a panel
// or strip, so identical rows give bit-identical scores and ties are real ties.
// Different sets (and the batch path vs the few-queries path) sum in different
// orders, so scores may differ in the last bits between them.
//
// Thread safety: every function is pure apart from writing its outputs; the
// tables are constants and detection runs once (thread-safe static).

#include <cstdint>

#include "pe/retriever.hpp"  // pe::Simd

namespace pe::detail::kernels {

/// One instruction set's kernels. Queries are packed by pack_query_panels into
/// [panel][k][mr]; gallery rows by pack_gallery_* into [k][nr].
struct KernelSet {
  Simd simd;
  int mr;  ///< queries per micro-tile
  int nr;  ///< gallery rows per micro-tile (a multiple of 8, at most 32)
  /// Up to nr gallery rows (float or IEEE half bits) -> [k][nr], zero padded;
  /// `out` is 64-byte aligned.
  void (*pack_gallery_f32)(const float* rows, int64_t count, int64_t dim, float* out);
  void (*pack_gallery_f16)(const uint16_t* rows, int64_t count, int64_t dim, float* out);
  /// mr x nr scores over the full depth, then the top-k test: masks[i] gets
  /// the lanes (within `valid`) with score >= thresholds[i]. Returns whether
  /// any lane passed, and only then stores the scores to tile_out[i * nr + j].
  bool (*tile)(const float* a, const float* b, int64_t dim, const float* thresholds, uint32_t valid,
               float* tile_out, uint32_t* masks);
  /// Scores of `count` consecutive gallery rows against `nq` queries
  /// (few-queries path): out[q * count + r].
  void (*score_strip_f32)(const float* rows, int64_t count, int64_t dim, const float* queries, int64_t nq,
                          int64_t query_stride, float* out);
  void (*score_strip_f16)(const uint16_t* rows, int64_t count, int64_t dim, const float* queries, int64_t nq,
                          int64_t query_stride, float* out);
  /// float -> IEEE half bits, round to nearest even, n values.
  void (*to_half)(const float* in, int64_t n, uint16_t* out);
  /// Sum of n floats (the memory-bandwidth probe).
  float (*read_sum)(const float* data, int64_t n);
};

constexpr int kMaxMr = 16;
constexpr int kMaxNr = 32;

const KernelSet& scalar_kernels();
#if PE_X86_KERNELS
const KernelSet& avx2_kernels();    // kernels_avx2.cpp
const KernelSet& avx512_kernels();  // kernels_avx512.cpp
/// The AVX2 transposing gallery packer for nr = 32, shared by the AVX-512 set.
void pack_gallery_avx2_nr32_f32(const float* rows, int64_t count, int64_t dim, float* out);
void pack_gallery_avx2_nr32_f16(const uint16_t* rows, int64_t count, int64_t dim, float* out);
#endif

/// The best set this CPU supports, capped by PE_RETRIEVER_SIMD=scalar|avx2|avx512.
Simd supported_simd();
/// `requested`, lowered to what supported_simd() allows (best = the top).
Simd resolve_simd(Simd requested);
/// The table of a resolved level.
const KernelSet& kernels_for(Simd resolved);

// IEEE binary16 conversions in portable code, rounding exactly as F16C does, so
// a gallery stores the same bits whichever set converted it (kernels.cpp).
float half_to_float(uint16_t half);
uint16_t float_to_half(float value);
/// Largest finite float16 value; larger magnitudes cannot be stored.
constexpr float kHalfMax = 65504.0f;

/// Bits 0..count-1 set (count <= 32).
constexpr uint32_t low_lanes(int64_t count) {
  return count >= 32 ? 0xffffffffu : ((uint32_t{1} << count) - 1u);
}

/// Queries (rows of `dim` floats, `stride` apart) to mr-interleaved panels;
/// rows past nq are zero. `scale` (may be null) multiplies each query (cosine).
void pack_query_panels(int mr, const float* queries, int64_t nq, int64_t stride, int64_t dim, const float* scale,
                       float* out);

}  // namespace pe::detail::kernels
