// Tests of the C++ pe::Encoder API on a tiny random-weight model exported by
// the Python export tool (ctest fixture export_tiny_model). Numerical agreement
// with the eager PyTorch pipeline is tested in tests/python/test_encoder.py.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "pe/encoder.hpp"
#include "pe/error.hpp"

namespace {

std::string tiny_model() {
  const char* path = std::getenv("PE_TEST_TINY_MODEL");
  return path ? path : "";
}

std::vector<uint8_t> gradient(int width, int height, int seed) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = static_cast<uint8_t>(x * seed);
      p[1] = static_cast<uint8_t>(y * 3 + seed);
      p[2] = static_cast<uint8_t>((x + y) / 2);
    }
  }
  return rgb;
}

std::string write_pgm(const std::string& name, int width, int height, uint8_t value) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream out(path, std::ios::binary);
  out << "P5\n" << width << " " << height << "\n255\n" << std::string(static_cast<size_t>(width) * height, char(value));
  return path;
}

class EncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tiny_model().empty()) GTEST_SKIP() << "PE_TEST_TINY_MODEL is not set (ctest sets it)";
  }
};

TEST_F(EncoderTest, ReadsMetadataAndEmbedsPixelsInOrder) {
  pe::EncoderOptions options;
  options.batch_size = 2;
  const pe::Encoder encoder(tiny_model(), options);
  EXPECT_EQ(encoder.info().image_size, 56);
  EXPECT_EQ(encoder.info().embedding_dim, 32);
  EXPECT_EQ(encoder.info().resize, "bilinear_squash");
  const auto a = gradient(80, 60, 1), b = gradient(30, 90, 7), c = gradient(56, 56, 3);
  const pe::Embeddings together =
      encoder.encode_pixels({{a.data(), 80, 60}, {b.data(), 30, 90}, {c.data(), 56, 56}});
  ASSERT_EQ(together.rows(), 3);
  ASSERT_EQ(together.cols(), 32);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(together.row(i).norm(), 1.0f, 1e-5f);
  // Each image alone gives its row of the batch: no mixing across rows.
  const pe::Embeddings alone = encoder.encode_pixels({{b.data(), 30, 90}});
  EXPECT_LT((alone.row(0) - together.row(1)).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_GT((together.row(0) - together.row(1)).norm(), 1e-3f);  // distinct images, distinct embeddings
}

TEST_F(EncoderTest, OneDnnLinearsGiveTheBlasResults) {
  pe::EncoderOptions blas_options;
  blas_options.onednn = false;
  const pe::Encoder blas(tiny_model(), blas_options);
  pe::EncoderOptions onednn_options;
  onednn_options.gemm = "onednn";  // "auto" keeps whichever route measures fastest at load
  const pe::Encoder onednn(tiny_model(), onednn_options);
  EXPECT_FALSE(blas.uses_onednn());
#if defined(__x86_64__)
  EXPECT_TRUE(onednn.uses_onednn());  // Debian's and the official x86-64 LibTorch have oneDNN (USE_MKLDNN)
#endif
  const auto a = gradient(80, 60, 1), b = gradient(30, 90, 7), c = gradient(56, 56, 3);
  const std::vector<pe::PixelImage> images{{a.data(), 80, 60}, {b.data(), 30, 90}, {c.data(), 56, 56}};
  const pe::Embeddings expected = blas.encode_pixels(images);
  const pe::Embeddings got = onednn.encode_pixels(images);
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(), 1e-5f);  // fp32 both; summation order differs
}

// One level of Strassen-Winograd: 7 half-size products and block sums instead of the
// plain product, so the same embeddings up to rounding. Batches of 2 and 1 images give
// 34 and 17 token rows: the even split and the odd one (a virtual zero row).
TEST_F(EncoderTest, StrassenLinearsGiveTheBlasResults) {
  pe::EncoderOptions blas_options;
  blas_options.gemm = "openblas";
  blas_options.batch_size = 2;
  const pe::Encoder blas(tiny_model(), blas_options);
  pe::EncoderOptions strassen_options = blas_options;
  strassen_options.gemm = "strassen";
  const pe::Encoder strassen(tiny_model(), strassen_options);
  ASSERT_EQ(strassen.gemm_route(), "strassen") << strassen.forward_description();
  EXPECT_EQ(blas.gemm_route(), "openblas");
  const auto a = gradient(80, 60, 1), b = gradient(30, 90, 7), c = gradient(56, 56, 3);
  const std::vector<pe::PixelImage> images{{a.data(), 80, 60}, {b.data(), 30, 90}, {c.data(), 56, 56}};
  const pe::Embeddings expected = blas.encode_pixels(images);
  const pe::Embeddings got = strassen.encode_pixels(images);
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(), 1e-5f);
  // Not the same arithmetic: a route that silently fell back to the plain product
  // would agree to the last bit.
  EXPECT_GT((got - expected).cwiseAbs().maxCoeff(), 0.0f);
}

// Each Linear layer of a block on its own route (the option's list form): one layer
// per route, so every hand-off between them (bias and residual adds, packed weights,
// strassen's scratch) meets a neighbour on another route.
TEST_F(EncoderTest, PerLayerRoutesGiveTheBlasResults) {
  pe::EncoderOptions blas_options;
  blas_options.gemm = "openblas";
  const pe::Encoder blas(tiny_model(), blas_options);
  pe::EncoderOptions mixed_options;
  mixed_options.gemm = "qkv=strassen,out_proj=onednn,fc1=openblas,fc2=onednn-packed";
  const pe::Encoder mixed(tiny_model(), mixed_options);
  ASSERT_EQ(mixed.gemm_route(), mixed_options.gemm) << mixed.forward_description();
#if defined(__x86_64__)
  EXPECT_TRUE(mixed.uses_onednn());
#endif
  const auto a = gradient(80, 60, 1), b = gradient(30, 90, 7), c = gradient(56, 56, 3);
  const std::vector<pe::PixelImage> images{{a.data(), 80, 60}, {b.data(), 30, 90}, {c.data(), 56, 56}};
  const pe::Embeddings expected = blas.encode_pixels(images);
  const pe::Embeddings got = mixed.encode_pixels(images);
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_GT((got - expected).cwiseAbs().maxCoeff(), 0.0f);  // strassen's arithmetic is not the plain product's
  // Pinning some layers measures the rest: fc2 stays as pinned, the others get a route.
  pe::EncoderOptions partial_options;
  partial_options.gemm = "fc2=strassen";
  const pe::Encoder partial(tiny_model(), partial_options);
  EXPECT_NE(partial.gemm_route().find("fc2=strassen"), std::string::npos) << partial.gemm_route();
  pe::EncoderOptions bad;
  bad.gemm = "qkv=strassen,attn=onednn";
  try {
    pe::Encoder wrong(tiny_model(), bad);
    FAIL() << "no error";
  } catch (const pe::InvalidArgumentError& error) {
    EXPECT_NE(std::string(error.what()).find("layer \"attn\" is not qkv, out_proj, fc1 or fc2"), std::string::npos)
        << error.what();
  }
}

// The Encoder's own forward (fused attention, measured GEMM route) against the file's
// TorchScript forward, the eager model's arithmetic.
TEST_F(EncoderTest, FusedAttentionForwardGivesTheTorchScriptResults) {
  pe::EncoderOptions script_options;
  script_options.fused_attention = false;
  script_options.onednn = false;
  const pe::Encoder script(tiny_model(), script_options);
  const pe::Encoder fused(tiny_model());
  EXPECT_FALSE(script.uses_fused_attention());
  ASSERT_TRUE(fused.uses_fused_attention()) << fused.forward_description();
  EXPECT_NE(fused.forward_description().find("attention kernel"), std::string::npos);
  // Checked against the file's own forward at load before it is used.
  EXPECT_NE(fused.forward_description().find("to the file's forward at load"), std::string::npos)
      << fused.forward_description();
  const auto a = gradient(80, 60, 1), b = gradient(30, 90, 7), c = gradient(56, 56, 3);
  const std::vector<pe::PixelImage> images{{a.data(), 80, 60}, {b.data(), 30, 90}, {c.data(), 56, 56}};
  const pe::Embeddings expected = script.encode_pixels(images);
  const pe::Embeddings got = fused.encode_pixels(images);
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(), 2e-6f);  // fp32 both; summation order differs
  pe::EncoderOptions bad;
  bad.gemm = "mkl";
  EXPECT_THROW(pe::Encoder(tiny_model(), bad), pe::InvalidArgumentError);
}

TEST_F(EncoderTest, SkipsBadFilesAndReportsThem) {
  const std::string good = write_pgm("good.pgm", 20, 10, 90);
  const std::string empty = write_pgm("empty.pgm", 0, 0, 0);
  const pe::Encoder encoder(tiny_model());
  const pe::EncodeResult result =
      encoder.encode_files_skipping_failures({good, "/nonexistent/x.png", empty, good});
  EXPECT_EQ(result.rows, (std::vector<size_t>{0, 3}));
  ASSERT_EQ(result.failures.size(), 2u);
  EXPECT_EQ(result.failures[0].index, 1u);
  EXPECT_NE(result.failures[0].reason.find("/nonexistent/x.png"), std::string::npos);
  EXPECT_EQ(result.failures[1].index, 2u);
  EXPECT_LT((result.embeddings.row(0) - result.embeddings.row(1)).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_THROW(encoder.encode_files({good, "/nonexistent/x.png"}), pe::FileNotFoundError);
}

TEST_F(EncoderTest, ConcurrentCallsAgree) {
  const pe::Encoder encoder(tiny_model());
  const auto pixels = gradient(64, 48, 5);
  const pe::Embeddings expected = encoder.encode_pixels({{pixels.data(), 64, 48}});
  std::vector<pe::Embeddings> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] { results[t] = encoder.encode_pixels({{pixels.data(), 64, 48}}); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_LT((result - expected).cwiseAbs().maxCoeff(), 1e-6f);
}

TEST_F(EncoderTest, RejectsBadOptionsAndFiles) {
  pe::EncoderOptions options;
  options.batch_size = 0;
  EXPECT_THROW(pe::Encoder(tiny_model(), options), pe::InvalidArgumentError);
  options = {};
  options.device = "cuda";
  // On a CPU-only LibTorch this is a clear error; where CUDA exists it loads.
  try {
    pe::Encoder cuda(tiny_model(), options);
  } catch (const pe::UnsupportedFormatError& error) {
    EXPECT_NE(std::string(error.what()).find("asked for CUDA"), std::string::npos) << error.what();
  }
  EXPECT_THROW(pe::Encoder("/nonexistent/model.pt"), pe::FileNotFoundError);
  const std::string not_a_model = write_pgm("model.pt", 2, 2, 1);
  try {
    pe::Encoder bad(not_a_model);
    FAIL() << "no error";
  } catch (const pe::CorruptDataError& error) {
    EXPECT_NE(std::string(error.what()).find("is not a TorchScript model"), std::string::npos) << error.what();
  }
}

}  // namespace
