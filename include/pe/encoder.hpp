#pragma once
// pe::Encoder — PE-Core embeddings from images, with a model made by
// `python -m perception_retrieval.export`: a TorchScript file (CPU or CUDA; every
// LibTorch) or an AOTInductor package (.pt2: CPU, compiled for the exporting
// machine's CPU; LibTorch >= 2.6). The format is read from the file itself.
//
// The model file carries its own configuration (image size, mean/std, resize
// mode, embedding dim) as metadata (a TorchScript extra file, or the .pt2
// package's metadata), so an Encoder needs nothing but the path. Images are decoded and preprocessed exactly as the training
// pipeline did (see pe/image.hpp) on a pool of decode threads that runs ahead of
// the model's forward pass, batch by batch.
//
// This header does not include torch: the model lives behind a pointer and is
// compiled in src/encoder.cpp (link perception_retrieval::encoder).
//
// A guest in its user's process: an Encoder changes process-wide settings only
// when asked. EncoderOptions::threads > 0 sets LibTorch's intra-op thread count
// (process-wide; 0 leaves it as it is, and Debian's LibTorch starts at 1, so
// ask for pe::usable_cpu_count() to use every CPU); tune_allocator asks glibc
// (mallopt, process-wide) to keep freed memory, which the oneDNN path needs to
// be fast (below). The command-line tools ask for both. What each costs when
// left off is measured in docs/architecture.md.
//
// CPU speed (EncoderOptions::onednn, on by default): the transformer's Linear
// layers run through oneDNN instead of the BLAS LibTorch uses for matmuls
// (Debian's OpenBLAS runs AVX2 kernels where oneDNN uses AVX-512), with the same
// fp32 arithmetic up to summation order. oneDNN allocates its outputs on every
// call, and on virtual machines page faults on freshly mapped memory cost more
// than the matmuls: with tune_allocator, glibc serves blocks up to 256 MiB from
// the heap and keeps up to 1 GiB of freed heap for reuse instead of returning
// it to the OS.
//
// Errors (pe/error.hpp): InvalidArgumentError for bad options;
// FileNotFoundError / IoError for a missing or unreadable model file;
// CorruptDataError for a file that is not a model from the export tool or does
// not produce what its metadata says; UnsupportedFormatError for CUDA on a
// LibTorch without it or on a machine without a visible GPU, for a .pt2 on
// LibTorch 1.13, on CUDA, or on a CPU without the vector ISA it was compiled for.
//
// CUDA (a CUDA build of LibTorch): each call's batches go through pinned host
// memory and asynchronous copies on a stream of the call's own, so concurrent
// calls overlap; float16 / bfloat16 convert the model's weights once at load. Encoding rethrows the decode errors of pe/image.hpp,
// naming the input.
//
// Fused attention (EncoderOptions::fused_attention, on by default): on the CPU
// in float32 the Encoder runs its own forward over a TorchScript file's weights,
// with a fused RoPE attention kernel (the pe::rope_attention operator) and the
// GEMM route that measured fastest at load; the file itself stays plain PyTorch.
//
// Thread safety: construction is not thread-safe with other constructions
// when it changes process-wide settings (threads > 0, tune_allocator). After
// that, every method is const and safe to call from several threads at once;
// concurrent calls share LibTorch's intra-op thread pool.

#include <Eigen/Core>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/image.hpp"

namespace pe {

/// Row-major float32 embeddings, one row per image (N x D).
using Embeddings = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct EncoderOptions {
  std::string device = "cpu";     ///< "cpu", "cuda" or "cuda:N"
  std::string dtype = "float32";  ///< "float32"; "float16" and "bfloat16" on CUDA only
  int batch_size = 16;            ///< images per forward pass
  /// LibTorch intra-op threads, set process-wide when > 0; 0 leaves LibTorch's
  /// current setting (pe::usable_cpu_count() = every CPU this process may use).
  int threads = 0;
  int decode_threads = 0;  ///< threads decoding and resizing; 0 = pe::usable_cpu_count()
  bool normalize = true;   ///< L2-normalise each embedding
  /// CPU, float32: the model's Linear layers through oneDNN (see the note at
  /// the top). Ignored on CUDA, for models exported before this option
  /// existed, and when LibTorch lacks oneDNN.
  bool onednn = true;
  /// Tune glibc's malloc for the oneDNN path (process-wide, see the note at
  /// the top). Off by default: a library does not change its host's allocator
  /// unless asked.
  bool tune_allocator = false;
  /// CPU, float32, TorchScript files of the export tool: run the Encoder's own
  /// forward over the file's weights, with the fused RoPE attention kernel (AVX-512,
  /// AVX2 or plain C++, chosen at run time) instead of the file's bmm / softmax /
  /// bmm. Same arithmetic up to summation order. Files it does not recognise
  /// (quantized ones, say) keep the TorchScript forward; forward_description() says
  /// which runs and why. See docs/encoder_speed.md.
  bool fused_attention = true;
  /// GEMM route of the Linear layers on that forward: "auto" (each route timed at
  /// load on each of a block's four Linear layers, qkv, out_proj, fc1 and fc2, and the
  /// fastest kept for that layer in every block; strassen only when 3% faster than the
  /// rest), "openblas" (LibTorch's BLAS), "strassen" (one level of Strassen-Winograd
  /// over that BLAS: 7/8 of the multiplications, weight-side sums as large as the
  /// weights kept in memory), "onednn", or "onednn-packed" (weights converted to oneDNN
  /// tensors once), for every layer; or layer=route pairs, e.g.
  /// "qkv=strassen,fc2=onednn" (the layers not named are timed), the form gemm_route()
  /// prints, so that a later load can pin what one load measured.
  /// onednn = false means "openblas".
  std::string gemm = "auto";
  int64_t max_pixels = image::kDefaultMaxPixels;  ///< PIL's bomb rule per image (image::DecodeOptions)
};

/// What the model file says about itself (its pe_metadata.json extra file).
struct ModelInfo {
  std::string model_name;
  int image_size = 0;
  int patch_size = 0;
  int embedding_dim = 0;
  image::Normalization normalization;
  std::string resize;               ///< "bilinear_squash"
  bool outputs_normalized = false;  ///< whether the module already L2-normalises
  std::string source;               ///< checkpoint hash or "random-init seed N"
  std::string model_format;         ///< "torchscript" or "aoti" (a .pt2 AOTInductor package)
  std::string metadata_json;        ///< the whole file, for reports
};

/// An image given by its encoded bytes (a JPEG or PNG file's content). The
/// bytes must stay alive during the call.
struct EncodedImage {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::string name = "<memory>";  ///< used in error messages
};

/// Decoded RGB pixels, H x W x 3 bytes, row-major. Must stay alive during the call.
struct PixelImage {
  const uint8_t* rgb = nullptr;
  int width = 0;
  int height = 0;
};

/// One input that could not be encoded.
struct EncodeFailure {
  size_t index = 0;    ///< position in the input list
  std::string reason;  ///< the error message, naming the input
};

/// The outcome of a batch call with skip_failures: embeddings of the inputs that
/// worked, in input order, and which ones did not. rows[i] is the input index of
/// embeddings row i, so rows never shift silently.
struct EncodeResult {
  Embeddings embeddings;
  std::vector<size_t> rows;
  std::vector<EncodeFailure> failures;
};

/// Called after each batch with (images done, images in total). Throwing from
/// it stops the call (the Python binding uses this for Ctrl-C).
using ProgressCallback = std::function<void(size_t done, size_t total)>;

class Encoder {
 public:
  /// Loads a model from the export tool (TorchScript or .pt2), reads its
  /// metadata, and checks it with a probe forward pass. Throws (pe/error.hpp)
  /// when the file is missing or not such a model, lacks the metadata, or does
  /// not map a [1, 3, S, S] input to [1, D], and for bad options, including
  /// CUDA where LibTorch or the machine has none.
  explicit Encoder(const std::string& model_path, EncoderOptions options = {});
  ~Encoder();
  Encoder(Encoder&&) noexcept;
  Encoder& operator=(Encoder&&) noexcept;
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  const ModelInfo& info() const;
  const EncoderOptions& options() const;
  /// Whether the forward pass runs its Linear layers (on the own forward: any of them)
  /// through oneDNN (options().onednn asked for it, and the device, LibTorch and model
  /// file allow it).
  bool uses_onednn() const;
  /// Whether the Encoder's own forward with the fused attention kernel runs (see
  /// EncoderOptions::fused_attention).
  bool uses_fused_attention() const;
  /// The Linear layers' route on the Encoder's own forward: "openblas", "strassen",
  /// "onednn" or "onednn-packed" when every layer takes the same, else one per layer,
  /// "qkv=strassen,out_proj=openblas,fc1=openblas,fc2=onednn" (either form is a valid
  /// EncoderOptions::gemm); "torchscript" / "torchscript-onednn" / "aoti" otherwise.
  std::string gemm_route() const;
  /// One line on the forward in use: the attention kernel, the GEMM route and the
  /// rates measured at load, or why the TorchScript forward runs.
  std::string forward_description() const;

  /// N image files -> N x D embeddings in input order. Throws
  /// std::runtime_error naming the first file that cannot be read.
  Embeddings encode_files(const std::vector<std::string>& paths, const ProgressCallback& progress = {}) const;
  /// The same, but files that fail are skipped and reported instead.
  EncodeResult encode_files_skipping_failures(const std::vector<std::string>& paths,
                                              const ProgressCallback& progress = {}) const;

  Embeddings encode_encoded(const std::vector<EncodedImage>& images, const ProgressCallback& progress = {}) const;
  EncodeResult encode_encoded_skipping_failures(const std::vector<EncodedImage>& images,
                                                const ProgressCallback& progress = {}) const;

  Embeddings encode_pixels(const std::vector<PixelImage>& images, const ProgressCallback& progress = {}) const;

  /// The model input for one image, exactly as encode feeds it:
  /// 3 x S x S floats (planar RGB, normalised), S = info().image_size. One
  /// form per input encode takes: pixels, a file (decoded as encode_files
  /// decodes it) and encoded bytes (as encode_encoded); errors as those calls
  /// throw them, naming the input.
  std::vector<float> preprocess(const PixelImage& image) const;
  std::vector<float> preprocess_file(const std::string& path) const;
  std::vector<float> preprocess_encoded(const EncodedImage& image) const;

  /// One input decoded and preprocessed into `out` (3 x S x S floats) exactly
  /// as the encode calls do; errors name the input. For callers that assemble
  /// their own loaders for encode_inputs.
  void preprocess_file(const std::string& path, float* out) const;
  void preprocess_encoded(const EncodedImage& image, float* out) const;
  void preprocess_pixels(const PixelImage& image, float* out) const;

  /// Produces input `index` into `out` (3 x S x S floats), throwing on failure.
  using InputLoader = std::function<void(size_t index, float* out)>;
  /// Runs the pipeline over `count` inputs produced by `load`. With
  /// skip_failures, loader errors are collected instead of thrown.
  EncodeResult encode_inputs(size_t count, const InputLoader& load, bool skip_failures,
                             const ProgressCallback& progress = {}) const;

 private:
  EncodeResult encode_files_or_skip(const std::vector<std::string>& paths, bool skip,
                                    const ProgressCallback& progress) const;
  EncodeResult encode_encoded_or_skip(const std::vector<EncodedImage>& images, bool skip,
                                      const ProgressCallback& progress) const;

  struct Model;  // the TorchScript module or .pt2 loader, and the device, in src/encoder/encoder.cpp
  std::unique_ptr<Model> model_;
  EncoderOptions options_;
  ModelInfo info_;
  std::string native_note_;
};

}  // namespace pe
