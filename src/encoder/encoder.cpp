// pe::Encoder's torch half (see include/pe/encoder.hpp for the contract).

#include "pe/encoder.hpp"

#include <ATen/Context.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>

// AOTInductor packages (.pt2) need torch >= 2.6; Debian's LibTorch 1.13 has no such
// header and reads TorchScript files only.
#if __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#define PE_WITH_AOTI 1
#else
#define PE_WITH_AOTI 0
#endif

// CMake defines PE_WITH_CUDA=1 when the LibTorch found has CUDA (the PyPI wheel's):
// pinned host memory and a stream per call then feed the GPU.
#if PE_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "common/log_plain.hpp"
#include "encoder/attention.hpp"
#include "encoder/forward.hpp"
#include "common/parallel.hpp"
#include "pe/error.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace pe {

namespace {

// The extra file written by perception_retrieval.export (python/perception_retrieval/export.py).
constexpr const char* kMetadataFile = "pe_metadata.json";

[[noreturn]] void invalid(const std::string& message) { throw InvalidArgumentError("pe::Encoder: " + message); }
// A model file that is not what the export tool writes, or no longer matches its metadata.
[[noreturn]] void corrupt_model(const std::string& message) { throw CorruptDataError("pe::Encoder: " + message); }
[[noreturn]] void unsupported(const std::string& message) { throw UnsupportedFormatError("pe::Encoder: " + message); }

// c10::Error messages carry a C++ backtrace; the first line is the useful part.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

torch::Device parse_device(const std::string& device) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
#if PE_WITH_CUDA
      unsupported("device \"" + device + "\" asked for CUDA, but this LibTorch " + TORCH_VERSION +
                  " has no usable CUDA: it is a CUDA build, but no GPU or driver is visible to this process; use "
                  "device \"cpu\" or run on a machine with an NVIDIA GPU and driver");
#else
      unsupported("device \"" + device + "\" asked for CUDA, but this LibTorch " + TORCH_VERSION +
                  " has no usable CUDA (it is built without CUDA); use device \"cpu\" or link a CUDA build of "
                  "LibTorch (for example the PyPI torch wheel's)");
#endif
    }
    int index = 0;
    if (device.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(device.substr(5), &used);
        if (used != device.size() - 5) throw std::invalid_argument("trailing characters");
      } catch (const std::exception&) {
        invalid("device \"" + device + "\" is not cpu, cuda or cuda:N");
      }
    }
    const auto count = static_cast<int>(torch::cuda::device_count());
    if (index < 0 || index >= count) {
      invalid("device \"" + device + "\": there are " + std::to_string(count) + " CUDA devices (cuda:0.." +
              std::to_string(count - 1) + ")");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  invalid("device \"" + device + "\" is not cpu, cuda or cuda:N");
}

// The library's dtype names are numpy's (float32, float16, bfloat16), as for
// pe::Retriever; fp32 / fp16 / bf16 are accepted too.
torch::ScalarType parse_dtype(const std::string& dtype, const torch::Device& device) {
  if (dtype == "float32" || dtype == "fp32") return torch::kFloat32;
  const bool half = dtype == "float16" || dtype == "fp16";
  if (half || dtype == "bfloat16" || dtype == "bf16") {
    if (!device.is_cuda()) invalid("dtype \"" + dtype + "\" needs a CUDA device; on the CPU use float32");
    return half ? torch::kFloat16 : torch::kBFloat16;
  }
  invalid("dtype \"" + dtype + "\" is not float32, float16 or bfloat16");
}

ModelInfo parse_metadata(const std::string& path, const std::string& text) {
  if (text.empty()) {
    corrupt_model(path + " has no " + kMetadataFile +
            ": it is not a model made by perception_retrieval's export tool; make one with "
            "python -m perception_retrieval.export --checkpoint PE-Core-L14-336.pt --out model.pt");
  }
  ModelInfo info;
  info.metadata_json = text;
  try {
    const auto json = nlohmann::json::parse(text);
    info.model_name = json.at("model_name").get<std::string>();
    info.image_size = json.at("image_size").get<int>();
    info.patch_size = json.at("patch_size").get<int>();
    info.embedding_dim = json.at("embedding_dim").get<int>();
    const auto mean = json.at("mean").get<std::vector<float>>();
    const auto std = json.at("std").get<std::vector<float>>();
    if (mean.size() != 3 || std.size() != 3) corrupt_model(path + ": metadata mean/std must have 3 values each");
    std::copy(mean.begin(), mean.end(), info.normalization.mean.begin());
    std::copy(std.begin(), std.end(), info.normalization.std.begin());
    info.resize = json.at("resize").get<std::string>();
    info.outputs_normalized = json.at("normalized").get<bool>();
    info.source = json.value("source", json.value("source_checkpoint_sha256", std::string()));
  } catch (const nlohmann::json::exception& error) {
    corrupt_model(path + ": its " + kMetadataFile + " is unreadable (" + error.what() +
            "); re-export the model with python -m perception_retrieval.export");
  }
  if (info.image_size <= 0 || info.patch_size <= 0 || info.image_size % info.patch_size != 0 ||
      info.embedding_dim <= 0) {
    corrupt_model(path + ": metadata image_size " + std::to_string(info.image_size) + ", patch_size " +
            std::to_string(info.patch_size) + ", embedding_dim " + std::to_string(info.embedding_dim) +
            " are not a valid model shape");
  }
  if (info.resize != "bilinear_squash") {
    unsupported(path + ": metadata resize \"" + info.resize + "\" is not supported (only bilinear_squash)");
  }
  return info;
}

enum class ModelFormat { kTorchScript, kAoti };

// Both formats are zip archives; an AOTInductor package holds data/aotinductor/.
ModelFormat sniff_format(const std::string& path) {
  std::vector<std::string> records;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    records = reader.getAllRecords();
  } catch (const c10::Error& error) {
    corrupt_model(path + " is not a TorchScript model or .pt2 package (" +
                  first_line(error.what_without_backtrace()) + "); export one with python -m perception_retrieval.export");
  }
  for (const auto& record : records) {
    if (record.rfind("data/aotinductor/", 0) == 0) return ModelFormat::kAoti;
  }
  return ModelFormat::kTorchScript;
}

#if PE_WITH_AOTI
// A .pt2 holds machine code for the exporting machine's vector ISA (AOTI_CPU_ISA, e.g.
// "AVX512 AVX512_VNNI"); run elsewhere it would die of SIGILL, so refuse it first.
void check_cpu_isa(const std::string& path, const std::string& isa) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  auto needs = [&](const char* name) { return (" " + isa + " ").find(std::string(" ") + name) != std::string::npos; };
  std::string missing;
  if (needs("AVX512") && !__builtin_cpu_supports("avx512f")) missing = "AVX-512";
  else if (needs("AVX2") && !__builtin_cpu_supports("avx2")) missing = "AVX2";
  if (!missing.empty()) {
    unsupported(path + " was compiled for a CPU with " + isa + " and this CPU lacks " + missing +
                "; export the .pt2 on this machine (or one like it), or use a TorchScript .pt file");
  }
#else
  (void)path;
  (void)isa;
#endif
}
#endif  // PE_WITH_AOTI

// What the oneDNN path needs from glibc (see include/pe/encoder.hpp): oneDNN
// returns each Linear output in a fresh buffer (up to 28 MiB for 3 L14 images).
// By default glibc maps such blocks from the OS and unmaps them on free (its
// dynamic threshold reaches them only after a free, and trims the heap top
// past 2x that), so every call pays page faults: one L14 block took 0.62 s
// instead of 0.34 s (measured on the 2-core VM). Both settings are raised once
// per process and never lowered: another Encoder may rely on them.
void keep_freed_memory() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    // Both or neither: setting either one freezes the other at its static default,
    // and a raised trim threshold with a 128 KiB mmap threshold was slower still.
    const bool ok = mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    detail::log_info(std::string("glibc malloc: heap blocks up to 256 MiB, up to 1 GiB of freed heap kept") +
                     (ok ? "" : " (mallopt refused; oneDNN outputs will page-fault)"));
  });
#endif
}

// Turns on the oneDNN Linear path of modules exported with it (PECoreVision's
// onednn_linears attribute); false when the model has no such switch.
bool enable_onednn_linears(torch::jit::Module& module) {
  bool found = false;
  for (torch::jit::Module submodule : module.modules()) {
    if (submodule.hasattr("onednn_linears") && submodule.attr("onednn_linears").isBool()) {
      submodule.setattr("onednn_linears", true);
      found = true;
    }
  }
  return found;
}

void check_options(const EncoderOptions& options) {
  if (options.batch_size <= 0) invalid("batch_size must be >= 1, got " + std::to_string(options.batch_size));
  if (options.threads < 0) {
    invalid("threads must be >= 0 (0 = leave LibTorch's setting; pe::usable_cpu_count() for every CPU), got " +
            std::to_string(options.threads));
  }
  if (options.decode_threads < 0) {
    invalid("decode_threads must be >= 0 (0 = all cores), got " + std::to_string(options.decode_threads));
  }
  if (options.max_pixels <= 0) invalid("max_pixels must be >= 1, got " + std::to_string(options.max_pixels));
  try {
    detail::parse_gemm(options.gemm);
  } catch (const std::invalid_argument& wrong) {
    invalid(wrong.what());
  }
}

}  // namespace

struct Encoder::Model {
  ModelFormat format = ModelFormat::kTorchScript;
  torch::jit::Module module;
#if PE_WITH_AOTI
  // run() is safe from several threads: the container hands each call a free runner.
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> aoti;
#endif
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat32;
  bool onednn = false;
  // The Encoder's own forward over the file's weights, with the fused attention
  // operator (see forward.hpp for why); null when the TorchScript forward runs.
  std::unique_ptr<detail::NativeForward> native;

  // The own forward must reproduce the file's embeddings to this cosine (the
  // product's bound against the eager model) or it is not used.
  static constexpr double kNativeAgreement = 0.999999;

  // min over a probe image of cos(own forward, the file's TorchScript forward).
  double native_agreement(int image_size) const {
    torch::NoGradGuard no_grad;
    // A generator of its own: the host's global RNG state is not the library's to move.
    auto generator = at::detail::createCPUGenerator(/*seed_in=*/0);
    const auto probe = at::randn({1, 3, image_size, image_size}, generator, torch::TensorOptions().dtype(torch::kFloat32));
    auto module_handle = module;
    const auto expected = module_handle.forward({probe}).toTensor().to(torch::kFloat64);
    const auto ours = native->forward(probe).to(torch::kFloat64);
    if (!ours.sizes().equals(expected.sizes())) return -1.0;
    return torch::cosine_similarity(ours, expected, /*dim=*/1).min().item<double>();
  }

  torch::Tensor run(const torch::Tensor& input) const {
    if (native) return native->forward(input);
#if PE_WITH_AOTI
    if (format == ModelFormat::kAoti) return aoti->run({input}).at(0);
#endif
    // forward() is const-safe for inference; torch::jit::Module is a handle.
    auto module_handle = module;
    return module_handle.forward({input}).toTensor();
  }

  // The batch on the device in the compute dtype. On CUDA the pixels go through pinned
  // host memory and an asynchronous copy on the call's own stream (see forward).
  torch::Tensor to_device(float* images, int64_t n, int64_t size) const {
    auto input = torch::from_blob(images, {n, 3, size, size}, torch::kFloat32);
    if (!device.is_cuda()) return dtype == torch::kFloat32 ? input : input.to(dtype);
    auto pinned = torch::empty({n, 3, size, size}, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(true));
    pinned.copy_(input);
    // `pinned` must outlive the copy: the caller synchronises (output.to(kCPU)) before returning.
    return pinned.to(device, dtype, /*non_blocking=*/true);
  }

  // images: n x 3 x S x S floats -> n x D float32 rows written to `out`.
  void forward(float* images, int64_t n, int64_t size, int64_t dim, bool normalize, float* out) const {
    torch::NoGradGuard no_grad;
#if PE_WITH_CUDA
    // Each call gets a stream of its own, so concurrent encode calls overlap their copies
    // and kernels instead of queueing on the default stream.
    std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
    if (device.is_cuda()) stream_guard.emplace(c10::cuda::getStreamFromPool(false, device.index()));
#endif
    torch::Tensor output;
    {
      auto input = to_device(images, n, size);
      output = run(input);
      // Blocking copy back: synchronises with this call's stream before `input` is released.
      output = output.to(torch::kCPU, torch::kFloat32).contiguous();
    }
    if (output.dim() != 2 || output.size(0) != n || output.size(1) != dim) {
      corrupt_model("the model returned shape " + c10::str(output.sizes()) + " for " + std::to_string(n) +
              " images; expected [" + std::to_string(n) + ", " + std::to_string(dim) + "]");
    }
    if (normalize) {
      // Same as torch.nn.functional.normalize(x, dim=1): x / max(||x||, 1e-12).
      output = output / output.norm(2, 1, true).clamp_min(1e-12);
    }
    std::memcpy(out, output.data_ptr<float>(), sizeof(float) * static_cast<size_t>(n * dim));
  }
};

Encoder::Encoder(const std::string& model_path, EncoderOptions options) : options_(std::move(options)) {
  check_options(options_);
  auto model = std::make_unique<Model>();
  model->device = parse_device(options_.device);
  model->dtype = parse_dtype(options_.dtype, model->device);
  options_.dtype = model->dtype == torch::kFloat32 ? "float32" : model->dtype == torch::kFloat16 ? "float16" : "bfloat16";
  std::error_code error;
  const auto status = std::filesystem::status(model_path, error);
  if (!std::filesystem::exists(status)) {
    throw FileNotFoundError("pe::Encoder: model file " + model_path + " does not exist; export one with "
                            "python -m perception_retrieval.export --out " + model_path);
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw IoError("pe::Encoder: model file " + model_path + " is not a file (a directory, device or FIFO)");
  }
  model->format = sniff_format(model_path);
  if (model->format == ModelFormat::kAoti) {
#if PE_WITH_AOTI
    if (!model->device.is_cpu()) {
      unsupported(model_path + " is an AOTInductor package compiled for the CPU; for device \"" + options_.device +
                  "\" export a TorchScript .pt file");
    }
    std::unordered_map<std::string, std::string> metadata;
    try {
      model->aoti = std::make_unique<torch::inductor::AOTIModelPackageLoader>(model_path);
      metadata = model->aoti->get_metadata();
    } catch (const c10::Error& load_error) {
      corrupt_model(model_path + " is not a loadable AOTInductor package (" +
                    first_line(load_error.what_without_backtrace()) + "); re-export it with this torch");
    } catch (const std::exception& load_error) {
      corrupt_model(model_path + " is not a loadable AOTInductor package (" + first_line(load_error.what()) +
                    "); re-export it with this torch");
    }
    if (metadata.count("AOTI_DEVICE_KEY") && metadata["AOTI_DEVICE_KEY"] != "cpu") {
      unsupported(model_path + " was compiled for device " + metadata["AOTI_DEVICE_KEY"] +
                  "; this Encoder runs .pt2 packages on the CPU only");
    }
    if (metadata.count("AOTI_CPU_ISA")) check_cpu_isa(model_path, metadata["AOTI_CPU_ISA"]);
    info_ = parse_metadata(model_path, metadata.count(kMetadataFile) ? metadata[kMetadataFile] : std::string());
    info_.model_format = "aoti";
#else
    unsupported(model_path + " is an AOTInductor package (.pt2), which this LibTorch " + TORCH_VERSION +
                " cannot run (torch >= 2.6 can); export a TorchScript .pt file for it");
#endif
  } else {
    torch::jit::ExtraFilesMap extra_files{{kMetadataFile, ""}};
    try {
      model->module = torch::jit::load(model_path, model->device, extra_files);
    } catch (const c10::Error& load_error) {
      corrupt_model(model_path + " is not a TorchScript model (" + first_line(load_error.what_without_backtrace()) +
              "); export one with python -m perception_retrieval.export");
    }
    info_ = parse_metadata(model_path, extra_files[kMetadataFile]);
    info_.model_format = "torchscript";
    model->module.eval();
    if (model->dtype != torch::kFloat32) model->module.to(model->dtype);
    detail::register_rope_attention();
    std::string why_not = "fused_attention is off";
    if (options_.fused_attention && model->device.is_cpu() && model->dtype == torch::kFloat32) {
      model->native = detail::NativeForward::from_module(model->module, info_.image_size, &why_not);
    } else if (!model->device.is_cpu() || model->dtype != torch::kFloat32) {
      why_not = "the fused attention kernel is for float32 on the CPU";
    }
    if (model->native) {
      // The GEMM route is measured here, on this machine, with this process's threads.
      if (options_.threads > 0) torch::set_num_threads(options_.threads);
      model->native->choose_gemm(detail::parse_gemm(options_.onednn ? options_.gemm : "openblas"));
      // The own forward re-implements the file's arithmetic from its weights, so it is
      // only trusted once it gives the file's own embedding on this machine: one
      // random image through both at load (a second forward's cost, paid once). A
      // file whose forward differs (edited after export, a layout this code does not
      // know) then keeps its TorchScript forward instead of silently changing results.
      const double agreement = model->native_agreement(info_.image_size);
      if (agreement >= Model::kNativeAgreement) {
        model->onednn = model->native->uses_onednn();
        char cosine[32];
        std::snprintf(cosine, sizeof cosine, "%.7f", agreement);
        native_note_ = "own forward, attention kernel " + model->native->attention_kernel() + ", GEMM route " +
                       detail::describe_gemm(model->native->routes()) +
                       (model->native->route_report().empty() ? "" : " (measured: " + model->native->route_report() + ")") +
                       ", cosine " + cosine + " to the file's forward at load";
      } else {
        model->native.reset();
        why_not = "the own forward's embedding had cosine " + std::to_string(agreement) +
                  " to the file's forward at load, below " + std::to_string(Model::kNativeAgreement);
        detail::log_warn("pe::Encoder: " + model_path + ": " + why_not + "; the TorchScript forward runs");
      }
    }
    if (!model->native) {
      native_note_ = "TorchScript forward (" + why_not + ")";
      // A quantized file's Linear layers are its own: its in-place path needs the BLAS
      // workspaces, which the oneDNN switch leaves empty (the forward then failed).
      const bool quantized =
          nlohmann::json::parse(info_.metadata_json).value("quantization", std::string("none")) != "none";
      if (options_.onednn && !quantized && model->device.is_cpu() && model->dtype == torch::kFloat32 &&
          at::hasMKLDNN()) {
        model->onednn = enable_onednn_linears(model->module);
      }
    }
  }
  // Process-wide settings change only when the caller asked (see encoder.hpp).
  if (options_.tune_allocator) keep_freed_memory();
  if (options_.threads > 0) torch::set_num_threads(options_.threads);
  // Probe: a model of the wrong shape fails here, not in the middle of a dataset.
  const int64_t size = info_.image_size;
  std::vector<float> probe(static_cast<size_t>(3 * size * size), 0.0f);
  std::vector<float> out(static_cast<size_t>(info_.embedding_dim));
  try {
    model->forward(probe.data(), 1, size, info_.embedding_dim, false, out.data());
  } catch (const c10::Error& forward_error) {
    corrupt_model(model_path + " failed on a [1, 3, " + std::to_string(size) + ", " + std::to_string(size) +
            "] probe input: " + first_line(forward_error.what_without_backtrace()));
  } catch (const std::runtime_error& shape_error) {
    corrupt_model(model_path + " does not produce embeddings as its metadata says: " + shape_error.what());
  }
  model_ = std::move(model);
  if (detail::log_info_enabled()) {
    detail::log_info("loaded " + model_path + " (" + info_.model_format + ", " + info_.model_name + ", " +
                     std::to_string(info_.image_size) + " px, " + std::to_string(info_.embedding_dim) + "-d) on " +
                     options_.device + " with " + std::to_string(torch::get_num_threads()) +
                     " intra-op threads, Linear layers via " +
                     (model_->format == ModelFormat::kAoti ? "AOTInductor's kernels"
                      : model_->onednn                     ? "oneDNN"
                                                           : "LibTorch's default (BLAS)") +
                     (native_note_.empty() ? "" : "; " + native_note_));
  }
}

Encoder::~Encoder() = default;
Encoder::Encoder(Encoder&&) noexcept = default;
Encoder& Encoder::operator=(Encoder&&) noexcept = default;

const ModelInfo& Encoder::info() const { return info_; }
const EncoderOptions& Encoder::options() const { return options_; }
bool Encoder::uses_onednn() const { return model_->onednn; }
bool Encoder::uses_fused_attention() const { return model_->native != nullptr; }
std::string Encoder::gemm_route() const {
  if (model_->native) return detail::describe_gemm(model_->native->routes());
  if (model_->format == ModelFormat::kAoti) return "aoti";
  return model_->onednn ? "torchscript-onednn" : "torchscript";
}
std::string Encoder::forward_description() const { return native_note_; }

void Encoder::preprocess_pixels(const PixelImage& image, float* out) const {
  if (image.rgb == nullptr || image.width <= 0 || image.height <= 0) {
    throw InvalidArgumentError("pe::Encoder: an image is empty (" + std::to_string(image.width) + " x " +
                                std::to_string(image.height) + " pixels)");
  }
  image::preprocess(image.rgb, image.width, image.height, info_.image_size, info_.normalization, out);
}

void Encoder::preprocess_file(const std::string& path, float* out) const {
  image::DecodeOptions decode;
  decode.max_pixels = options_.max_pixels;
  const image::Image decoded = image::decode_file(path, decode);
  preprocess_pixels(PixelImage{decoded.pixels.data(), decoded.width, decoded.height}, out);
}

void Encoder::preprocess_encoded(const EncodedImage& encoded, float* out) const {
  image::DecodeOptions decode;
  decode.max_pixels = options_.max_pixels;
  const image::Image decoded = image::decode_memory(encoded.data, encoded.size, encoded.name, decode);
  preprocess_pixels(PixelImage{decoded.pixels.data(), decoded.width, decoded.height}, out);
}

std::vector<float> Encoder::preprocess(const PixelImage& image) const {
  std::vector<float> out(static_cast<size_t>(3) * info_.image_size * info_.image_size);
  preprocess_pixels(image, out.data());
  return out;
}

std::vector<float> Encoder::preprocess_file(const std::string& path) const {
  std::vector<float> out(static_cast<size_t>(3) * info_.image_size * info_.image_size);
  preprocess_file(path, out.data());
  return out;
}

std::vector<float> Encoder::preprocess_encoded(const EncodedImage& image) const {
  std::vector<float> out(static_cast<size_t>(3) * info_.image_size * info_.image_size);
  preprocess_encoded(image, out.data());
  return out;
}

EncodeResult Encoder::encode_inputs(size_t count, const InputLoader& load, bool skip_failures,
                                    const ProgressCallback& progress) const {
  const int64_t size = info_.image_size;
  const int64_t dim = info_.embedding_dim;
  const size_t floats_per_image = static_cast<size_t>(3 * size * size);
  const size_t batch = static_cast<size_t>(options_.batch_size);

  struct Batch {
    size_t begin = 0, end = 0;
    std::vector<float> pixels;
    std::vector<std::exception_ptr> errors;
  };
  // Decodes and preprocesses inputs [begin, end) on the decode threads.
  auto prepare = [&](Batch& b) {
    const size_t n = b.end - b.begin;
    b.pixels.resize(n * floats_per_image);
    b.errors.assign(n, nullptr);
    detail::parallel_for(static_cast<int64_t>(n), options_.decode_threads, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) {
        try {
          load(b.begin + static_cast<size_t>(j), b.pixels.data() + static_cast<size_t>(j) * floats_per_image);
        } catch (...) {
          b.errors[static_cast<size_t>(j)] = std::current_exception();
        }
      }
    });
  };

  EncodeResult result;
  result.embeddings.resize(static_cast<Eigen::Index>(count), dim);
  size_t rows_done = 0;
  Batch current, next;
  current.begin = 0;
  current.end = std::min(count, batch);
  if (count > 0) prepare(current);
  while (current.begin < count) {
    // Decode the next batch while this one runs through the model.
    std::future<void> ahead;
    next.begin = current.end;
    next.end = std::min(count, next.begin + batch);
    if (next.begin < count) ahead = std::async(std::launch::async, [&] { prepare(next); });
    try {
      // Compact the images that loaded, keeping input order.
      size_t good = 0;
      for (size_t j = 0; j < current.end - current.begin; ++j) {
        if (current.errors[j]) {
          if (!skip_failures) std::rethrow_exception(current.errors[j]);
          std::string reason;
          try {
            std::rethrow_exception(current.errors[j]);
          } catch (const std::exception& error) {
            reason = error.what();
          }
          detail::log_warn("skipping input " + std::to_string(current.begin + j) + ": " + reason);
          result.failures.push_back(EncodeFailure{current.begin + j, reason});
          continue;
        }
        if (good != j) {
          std::memmove(current.pixels.data() + good * floats_per_image, current.pixels.data() + j * floats_per_image,
                       sizeof(float) * floats_per_image);
        }
        result.rows.push_back(current.begin + j);
        ++good;
      }
      if (good > 0) {
        model_->forward(current.pixels.data(), static_cast<int64_t>(good), size, dim, options_.normalize,
                        result.embeddings.data() + rows_done * static_cast<size_t>(dim));
        rows_done += good;
      }
      if (progress) progress(current.end, count);
    } catch (...) {
      if (ahead.valid()) ahead.wait();  // never leave a thread writing into `next`
      throw;
    }
    if (ahead.valid()) ahead.get();
    std::swap(current, next);
  }
  result.embeddings.conservativeResize(static_cast<Eigen::Index>(rows_done), dim);
  return result;
}

namespace {
Embeddings only_embeddings(EncodeResult&& result) { return std::move(result.embeddings); }
}  // namespace

Embeddings Encoder::encode_files(const std::vector<std::string>& paths, const ProgressCallback& progress) const {
  return only_embeddings(encode_files_or_skip(paths, false, progress));
}

EncodeResult Encoder::encode_files_skipping_failures(const std::vector<std::string>& paths,
                                                     const ProgressCallback& progress) const {
  return encode_files_or_skip(paths, true, progress);
}

EncodeResult Encoder::encode_files_or_skip(const std::vector<std::string>& paths, bool skip,
                                           const ProgressCallback& progress) const {
  return encode_inputs(paths.size(), [&](size_t i, float* out) { preprocess_file(paths[i], out); }, skip, progress);
}

Embeddings Encoder::encode_encoded(const std::vector<EncodedImage>& images, const ProgressCallback& progress) const {
  return only_embeddings(encode_encoded_or_skip(images, false, progress));
}

EncodeResult Encoder::encode_encoded_skipping_failures(const std::vector<EncodedImage>& images,
                                                       const ProgressCallback& progress) const {
  return encode_encoded_or_skip(images, true, progress);
}

EncodeResult Encoder::encode_encoded_or_skip(const std::vector<EncodedImage>& images, bool skip,
                                             const ProgressCallback& progress) const {
  return encode_inputs(images.size(), [&](size_t i, float* out) { preprocess_encoded(images[i], out); }, skip,
                       progress);
}

Embeddings Encoder::encode_pixels(const std::vector<PixelImage>& images, const ProgressCallback& progress) const {
  return only_embeddings(
      encode_inputs(images.size(), [&](size_t i, float* out) { preprocess_pixels(images[i], out); }, false, progress));
}

}  // namespace pe
