// Tests of pe::image: hand-computed resize weights, RGB conversion rules and
// error handling. (Byte-for-byte comparisons with PIL are in tests/python/test_image.py.)
// JPEG inputs are written here with libjpeg's own encoder, which lets the tests
// choose what PIL cannot write: 2-channel files, hundreds of scans.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/image.hpp"

#include <jpeglib.h>  // the test's own JPEG writer

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace {

using pe::image::decode_memory;

std::vector<uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

std::string error_of(const std::vector<uint8_t>& data, const pe::image::DecodeOptions& options = {}) {
  try {
    decode_memory(data.data(), data.size(), "sample.img", options);
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "<no error>";
}

std::vector<uint8_t> encode_with(int (*writer)(stbi_write_func*, void*, int, int, int, const void*, int), int width,
                                 int height, const std::vector<uint8_t>& rgb, int quality_or_stride) {
  std::vector<uint8_t> out;
  writer([](void* context, void* data, int size) {
    auto* target = static_cast<std::vector<uint8_t>*>(context);
    target->insert(target->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  }, &out, width, height, 3, rgb.data(), quality_or_stride);
  return out;
}

struct JpegSpec {
  int width = 16, height = 16;
  int components = 3;
  J_COLOR_SPACE color_space = JCS_RGB;  // of `samples`
  std::optional<J_COLOR_SPACE> stored_as;  // libjpeg's default for color_space when empty
  int quality = 100;
  bool progressive = false;
  std::vector<jpeg_scan_info> scans;  // a custom scan script when not empty
};

// Encodes width x height x components samples with libjpeg (4:4:4, no
// chroma subsampling, so constant colours survive quality 100 exactly).
std::vector<uint8_t> encode_jpeg(const JpegSpec& spec, const std::vector<uint8_t>& samples) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr errors{};
  cinfo.err = jpeg_std_error(&errors);  // exit()s on error: fine for test fixtures
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(spec.width);
  cinfo.image_height = static_cast<JDIMENSION>(spec.height);
  cinfo.input_components = spec.components;
  cinfo.in_color_space = spec.color_space;
  jpeg_set_defaults(&cinfo);
  if (spec.stored_as) jpeg_set_colorspace(&cinfo, *spec.stored_as);
  jpeg_set_quality(&cinfo, spec.quality, TRUE);
  for (int c = 0; c < cinfo.num_components; ++c) {
    cinfo.comp_info[c].h_samp_factor = 1;
    cinfo.comp_info[c].v_samp_factor = 1;
  }
  if (spec.progressive) jpeg_simple_progression(&cinfo);
  if (!spec.scans.empty()) {
    cinfo.scan_info = spec.scans.data();
    cinfo.num_scans = static_cast<int>(spec.scans.size());
  }
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(spec.width) * spec.components;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(samples.data()) + cinfo.next_scanline * stride;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> out(buffer, buffer + size);
  jpeg_destroy_compress(&cinfo);
  std::free(buffer);
  return out;
}

std::vector<uint8_t> constant(const JpegSpec& spec, std::vector<uint8_t> value) {
  std::vector<uint8_t> samples;
  for (int i = 0; i < spec.width * spec.height; ++i) samples.insert(samples.end(), value.begin(), value.end());
  return samples;
}

std::vector<uint8_t> noise_rgb(int width, int height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  uint32_t state = 12345;
  for (auto& v : rgb) v = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
  return rgb;
}

// 2 -> 1 pixel: scale 2, support 2, both taps weigh 0.75 -> 0.5 each after
// normalising; (10 + 21) / 2 = 15.5, and PIL's fixed point rounds it to 16.
TEST(Resize, ShrinkAveragesWithPilRounding) {
  const std::vector<uint8_t> in{10, 100, 200, 21, 101, 201};  // 2 x 1 RGB
  std::vector<uint8_t> out(3);
  pe::image::resize_bilinear(in.data(), 2, 1, 1, 1, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{16, 101, 201}));
}

// 2 -> 4 pixels: centres 0.25, 0.75, 1.25, 1.75 give weights (1), (.75 .25),
// (.25 .75), (1): [0, 100] -> [0, 25, 75, 100].
TEST(Resize, EnlargeInterpolatesLinearly) {
  const std::vector<uint8_t> in{0, 0, 0, 100, 100, 100};
  std::vector<uint8_t> out(12);
  pe::image::resize_bilinear(in.data(), 2, 1, 4, 1, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{0, 0, 0, 25, 25, 25, 75, 75, 75, 100, 100, 100}));
  // The same along the vertical axis.
  pe::image::resize_bilinear(in.data(), 1, 2, 1, 4, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{0, 0, 0, 25, 25, 25, 75, 75, 75, 100, 100, 100}));
}

TEST(Resize, ConstantImageStaysConstantAtEverySize) {
  const std::vector<uint8_t> in(17 * 9 * 3, 77);
  for (auto [w, h] : std::vector<std::pair<int, int>>{{336, 336}, {3, 40}, {1, 1}, {17, 9}}) {
    std::vector<uint8_t> out(static_cast<size_t>(w) * h * 3);
    pe::image::resize_bilinear(in.data(), 17, 9, w, h, out.data());
    for (uint8_t v : out) ASSERT_EQ(v, 77) << w << "x" << h;
  }
}

TEST(Preprocess, NormalisesPlanarWithMeanAndStd) {
  const std::vector<uint8_t> in{0, 255, 51};  // one pixel
  std::vector<float> out(3 * 2 * 2);
  pe::image::preprocess(in.data(), 1, 1, 2, pe::image::Normalization{}, out.data());
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(out[0 * 4 + i], -1.0f);  // (0 - 0.5) / 0.5
    EXPECT_FLOAT_EQ(out[1 * 4 + i], 1.0f);   // (1 - 0.5) / 0.5
    EXPECT_FLOAT_EQ(out[2 * 4 + i], (51.0f / 255.0f - 0.5f) / 0.5f);
  }
}

TEST(Decode, GreyIsReplicatedAndSixteenBitGreyClipsLikePil) {
  // 8-bit PGM: 2 x 1 grey.
  auto grey = bytes("P5\n2 1\n255\n");
  grey.insert(grey.end(), {7, 200});
  const auto image = decode_memory(grey.data(), grey.size());
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{7, 7, 7, 200, 200, 200}));
  // 16-bit PGM (big-endian samples 100, 300, 65535): PIL opens it as "I" and
  // convert("RGB") clips to 255, where keeping the high byte would give 0, 1, 255.
  auto grey16 = bytes("P5\n3 1\n65535\n");
  grey16.insert(grey16.end(), {0, 100, 1, 44, 255, 255});
  const auto clipped = decode_memory(grey16.data(), grey16.size());
  EXPECT_EQ(clipped.pixels, (std::vector<uint8_t>{100, 100, 100, 255, 255, 255, 255, 255, 255}));
}

TEST(Decode, PngRoundTripsExactly) {
  const auto rgb = noise_rgb(13, 7);
  const auto png = encode_with(stbi_write_png_to_func, 13, 7, rgb, 13 * 3);
  const auto image = decode_memory(png.data(), png.size());
  EXPECT_EQ(image.width, 13);
  EXPECT_EQ(image.height, 7);
  EXPECT_EQ(image.pixels, rgb);
}

TEST(DecodeErrors, NameTheInputAndTheProblem) {
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  EXPECT_PRED2(has, error_of({}), "sample.img: the image data is empty");
  EXPECT_PRED2(has, error_of(bytes(std::string("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24))),
               "sample.img: HEIC/HEIF images are not supported");
  EXPECT_PRED2(has, error_of(bytes(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16))), "sample.img: truncated WebP data");
  EXPECT_PRED2(has, error_of(bytes(std::string("II*\0\x08\0\0\0", 8))), "sample.img: corrupt TIFF");
  EXPECT_PRED2(has, error_of(bytes("hello, not an image")), "sample.img: not a readable image");

  const auto jpeg = encode_with(stbi_write_jpg_to_func, 64, 48, noise_rgb(64, 48), 90);
  EXPECT_NO_THROW(decode_memory(jpeg.data(), jpeg.size()));
  const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + jpeg.size() * 2 / 3);
  EXPECT_PRED2(has, error_of(cut), "sample.img: truncated JPEG data: the file ends before its last scanline");

  // A PNG header claiming 100000 x 100000 pixels (no checksum, no pixel data):
  // over twice max_pixels, PIL's DecompressionBombError rule.
  auto bomb = bytes("\x89PNG\r\n\x1a\n");
  const uint8_t ihdr[] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0, 8, 2, 0, 0, 0};
  bomb.insert(bomb.end(), std::begin(ihdr), std::end(ihdr));
  EXPECT_PRED2(has, error_of(bomb),
               "the PNG header declares 100000 x 100000 = 10000000000 pixels, over the limit of 178956970");
  // The limit is configurable and applies to every format: refused above twice
  // max_pixels, decoded (with a warning logged) between max_pixels and that.
  pe::image::DecodeOptions small;
  small.max_pixels = 1;
  auto grey = bytes("P5\n2 2\n255\n");
  grey.insert(grey.end(), {1, 2, 3, 4});
  EXPECT_PRED2(has, error_of(grey, small), "2 x 2 = 4 pixels, over the limit of 2 (2 x max_pixels 1");
  small.max_pixels = 2;
  EXPECT_EQ(decode_memory(grey.data(), grey.size(), "grey.pgm", small).width, 2);
}

// Constant 4:4:4 blocks at quality 100 (all quantisers 1) come back exactly,
// so the expected pixels can be worked out by hand.
TEST(DecodeJpeg, GreyIsReplicated) {
  JpegSpec grey;
  grey.components = 1;
  grey.color_space = JCS_GRAYSCALE;
  const auto jpeg = encode_jpeg(grey, constant(grey, {77}));
  const auto image = decode_memory(jpeg.data(), jpeg.size());
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 16);
  EXPECT_EQ(image.pixels, constant(grey, {77, 77, 77}));
}

TEST(DecodeJpeg, CmykIsReadAsAdobeInvertedLikePil) {
  // Stored samples (Adobe convention: 255 - ink) 255 - C, 255 - M, 255 - Y, 255 - K
  // for C = 0, M = 100, Y = 255, K = 51. PIL: r = (255 - K) - (C * (255 - K) / 255, rounded):
  // 204 - 0 = 204; 204 - round(100 * 204 / 255 = 80) = 124; 204 - 204 = 0.
  JpegSpec cmyk;
  cmyk.components = 4;
  cmyk.color_space = JCS_CMYK;
  const auto jpeg = encode_jpeg(cmyk, constant(cmyk, {255, 155, 0, 204}));
  const auto image = decode_memory(jpeg.data(), jpeg.size());
  EXPECT_EQ(image.pixels, constant(cmyk, {204, 124, 0}));
  // YCCK (Adobe transform 2): libjpeg converts it to CMYK first, then the same rule.
  JpegSpec ycck = cmyk;
  ycck.stored_as = JCS_YCCK;
  const auto ycck_jpeg = encode_jpeg(ycck, constant(ycck, {255, 155, 0, 204}));
  const auto from_ycck = decode_memory(ycck_jpeg.data(), ycck_jpeg.size());
  // The YCbCr round trip may move a sample by one level; each channel stays within 1 of the CMYK result.
  ASSERT_EQ(from_ycck.pixels.size(), image.pixels.size());
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    ASSERT_NEAR(from_ycck.pixels[i], image.pixels[i], 1) << i;
  }
}

TEST(DecodeJpeg, ProgressiveEqualsBaselineForLosslessContent) {
  JpegSpec baseline;
  baseline.width = 24;
  baseline.height = 8;
  const auto samples = constant(baseline, {10, 200, 90});
  JpegSpec progressive = baseline;
  progressive.progressive = true;
  const auto a = encode_jpeg(baseline, samples);
  const auto b = encode_jpeg(progressive, samples);
  ASSERT_NE(a, b);
  EXPECT_EQ(decode_memory(b.data(), b.size()).pixels, decode_memory(a.data(), a.size()).pixels);
}

TEST(DecodeJpegErrors, CorruptOrHostileDataIsRefused) {
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  JpegSpec spec;
  spec.width = 64;
  spec.height = 48;
  spec.quality = 90;
  const auto jpeg = encode_jpeg(spec, noise_rgb(64, 48));
  // Cut in the middle of the scan, with an end-of-image marker pasted on: the
  // marker check passes, but libjpeg runs out of data and would pad with grey.
  std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2));
  cut.insert(cut.end(), {0xFF, 0xD9});
  EXPECT_PRED2(has, error_of(cut), "sample.img: unreadable JPEG data (libjpeg: Corrupt JPEG data: premature end");
  // Junk bytes before a marker only draw a harmless warning: the same pixels.
  std::vector<uint8_t> junk(jpeg.begin(), jpeg.end() - 2);
  junk.insert(junk.end(), {0x00, 0x01, 0x02, 0xFF, 0xD9});
  EXPECT_EQ(decode_memory(junk.data(), junk.size()).pixels, decode_memory(jpeg.data(), jpeg.size()).pixels);

  // 704 valid progressive scans (successive approximation of every coefficient,
  // one bit at a time): legal, slow to decode, and refused.
  JpegSpec many;
  many.width = many.height = 8;
  many.components = 1;
  many.color_space = JCS_GRAYSCALE;
  for (int k = 0; k < 64; ++k) {
    many.scans.push_back(jpeg_scan_info{1, {0, 0, 0, 0}, k, k, 0, 10});
    for (int bit = 10; bit > 0; --bit) many.scans.push_back(jpeg_scan_info{1, {0, 0, 0, 0}, k, k, bit, bit - 1});
  }
  const auto bomb = encode_jpeg(many, std::vector<uint8_t>(64, 128));
  EXPECT_PRED2(has, error_of(bomb), "more than 500 scans");
  many.scans.resize(11 * 40);  // 440 scans of the same kind (coefficients 0..39) still decode
  const auto fewer = encode_jpeg(many, std::vector<uint8_t>(64, 128));
  EXPECT_EQ(decode_memory(fewer.data(), fewer.size()).pixels, std::vector<uint8_t>(64 * 3, 128));

  // Two channels: PIL cannot handle them either.
  JpegSpec two;
  two.components = 2;
  two.color_space = JCS_UNKNOWN;
  two.stored_as = JCS_UNKNOWN;
  const auto two_channel = encode_jpeg(two, std::vector<uint8_t>(16 * 16 * 2, 50));
  EXPECT_PRED2(has, error_of(two_channel), "a JPEG with 2 channels is not supported");

  // The pixel limit applies to the size in the JPEG header, before decoding.
  pe::image::DecodeOptions small;
  small.max_pixels = (64 * 48 - 1) / 2;
  EXPECT_PRED2(has, error_of(jpeg, small), "declares 64 x 48 = 3072 pixels, over the limit of 3070");
}

TEST(DecodeErrors, FilesAreNamed) {
  try {
    pe::image::decode_file("/nonexistent/photo.jpg");
    FAIL() << "no error";
  } catch (const pe::FileNotFoundError& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent/photo.jpg: no such image file"), std::string::npos);
  }
  EXPECT_THROW(pe::image::decode_file("/"), pe::IoError);
}

}  // namespace
