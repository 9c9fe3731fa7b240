// pe::image's format readers on hand-computed cases (the pixels PIL's rules
// give, worked out here), format sniffing and header reading, PIL's bomb rule,
// and the regression inputs of issue 12 (tests/data/image_regressions/, one per
// defect). The byte-for-byte comparison with PIL over every variant is
// tests/python/test_image_formats.py.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/image.hpp"
#include "image_bytes.hpp"

namespace {

namespace fs = std::filesystem;
using namespace pe::test;  // Bytes and the byte writers (image_bytes.hpp)
using pe::image::decode_memory;

const fs::path kRegressions = fs::path(PE_TEST_DATA_DIR) / "image_regressions";

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}


std::string error_of(const Bytes& data, int64_t max_pixels = pe::image::kDefaultMaxPixels) {
  pe::image::DecodeOptions options;
  options.max_pixels = max_pixels;
  try {
    decode_memory(data.data(), data.size(), "sample.img", options);
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "<no error>";
}

/// The RGB of pixel (x, y).
std::vector<int> at(const pe::image::Image& image, int x, int y) {
  const uint8_t* p = image.pixels.data() + (static_cast<size_t>(y) * image.width + x) * 3;
  return {p[0], p[1], p[2]};
}

/// A BMP with a 40-byte header: `bits` per pixel, `pixels` already padded, bottom-up unless height < 0.
Bytes bmp(int bits, int width, int height, const Bytes& pixels, const std::vector<std::vector<int>>& palette = {},
          uint32_t compression = 0, const std::vector<uint32_t>& masks = {}) {
  Bytes info;
  put32le(info, 40);
  put32le(info, static_cast<uint32_t>(width));
  put32le(info, static_cast<uint32_t>(height));
  put16le(info, 1);
  put16le(info, static_cast<uint32_t>(bits));
  put32le(info, compression);
  put32le(info, static_cast<uint32_t>(pixels.size()));
  put32le(info, 2835);
  put32le(info, 2835);
  put32le(info, static_cast<uint32_t>(palette.size()));
  put32le(info, 0);
  for (uint32_t mask : masks) put32le(info, mask);
  for (const auto& rgb : palette) info.insert(info.end(), {uint8_t(rgb[2]), uint8_t(rgb[1]), uint8_t(rgb[0]), 0});
  Bytes out;
  put_text(out, "BM");
  put32le(out, static_cast<uint32_t>(14 + info.size() + pixels.size()));
  put32le(out, 0);
  put32le(out, static_cast<uint32_t>(14 + info.size()));
  out.insert(out.end(), info.begin(), info.end());
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

/// zlib data holding `raw` in one stored (uncompressed) deflate block.
Bytes zlib_stored(const Bytes& raw) {
  Bytes out = {0x78, 0x01, 0x01, uint8_t(raw.size()), uint8_t(raw.size() >> 8), uint8_t(~raw.size()),
               uint8_t(~raw.size() >> 8)};
  out.insert(out.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;
  for (uint8_t v : raw) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  put32be(out, (b << 16) | a);
  return out;
}

/// A PNG from raw scanlines (filter bytes included).
Bytes png(uint32_t width, uint32_t height, int bit_depth, int color_type, const Bytes& scanlines,
          const std::vector<std::pair<std::string, Bytes>>& before_data = {}, bool end = true) {
  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes header;
  put32be(header, width);
  put32be(header, height);
  header.insert(header.end(), {uint8_t(bit_depth), uint8_t(color_type), 0, 0, 0});
  png_chunk(out, "IHDR", header);
  for (const auto& [type, payload] : before_data) png_chunk(out, type.c_str(), payload);
  png_chunk(out, "IDAT", zlib_stored(scanlines));
  if (end) png_chunk(out, "IEND", {});
  return out;
}

// ---- sniffing and headers --------------------------------------------------------

TEST(ImageFormats, SniffingNamesEachFormatFromItsFirstBytes) {
  using pe::image::sniff_format;
  auto sniff = [](const std::string& text) {
    return sniff_format(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  };
  EXPECT_EQ(sniff(std::string("\xFF\xD8\xFF\xE0", 4)), "JPEG");
  EXPECT_EQ(sniff("\x89PNG\r\n\x1A\n"), "PNG");
  EXPECT_EQ(sniff("GIF89a...."), "GIF");
  EXPECT_EQ(sniff("BM......"), "BMP");
  EXPECT_EQ(sniff(std::string("\x28\0\0\0", 4)), "DIB");  // a BMP info header without the file header
  EXPECT_EQ(sniff("P6\n1 1\n255\n"), "PNM");
  EXPECT_EQ(sniff("8BPS\x00\x01"), "PSD");
  EXPECT_EQ(sniff(std::string("RIFF\x10\0\0\0WEBPVP8L", 16)), "WebP");
  EXPECT_EQ(sniff(std::string("II*\0\x08\0\0\0", 8)), "TIFF");
  EXPECT_EQ(sniff(std::string("\0\0\x02\0\0\0\0\0\0\0\0\0\x02\0\x01\0\x18\0", 18)), "TGA");
  EXPECT_EQ(sniff(std::string("\0\0\0\x18" "ftypheic", 12)), "HEIC/HEIF");
  EXPECT_EQ(sniff(std::string("\0\0\0\x1C" "ftypavif", 12)), "AVIF");
  EXPECT_EQ(sniff("#?RADIANCE\n"), "Radiance HDR");
  EXPECT_EQ(sniff(std::string("\x53\x80\xF6\x34", 4)), "Softimage PIC");
  EXPECT_EQ(sniff("just text"), "");
  EXPECT_EQ(sniff(""), "");
  EXPECT_TRUE(pe::image::is_supported_format("WebP"));
  EXPECT_FALSE(pe::image::is_supported_format("HEIC/HEIF"));
  EXPECT_FALSE(pe::image::is_supported_format(""));
}

TEST(ImageFormats, HeadersGiveThePixelSizeWithoutDecoding) {
  const Bytes image = bmp(24, 3, -2, Bytes(3 * 12, 7));  // top-down
  const pe::image::ImageInfo info = pe::image::read_info(image.data(), image.size(), "x.bmp");
  EXPECT_EQ(info.format, "BMP");
  EXPECT_EQ(info.width, 3);
  EXPECT_EQ(info.height, 2);
  // The header is enough: pixel data cut off is found when decoding.
  const Bytes cut(image.begin(), image.end() - 20);
  EXPECT_EQ(pe::image::read_info(cut.data(), cut.size()).height, 2);
  EXPECT_THROW(decode_memory(cut.data(), cut.size()), pe::CorruptDataError);
  // Variants decode does not read are refused by the header reader already.
  const Bytes two_bit = bmp(2, 4, 1, Bytes(4, 0), {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {3, 3, 3}});
  EXPECT_THROW(pe::image::read_info(two_bit.data(), two_bit.size()), pe::UnsupportedFormatError);
  const std::string heic("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24);
  EXPECT_THROW(pe::image::read_info(reinterpret_cast<const uint8_t*>(heic.data()), heic.size()),
               pe::UnsupportedFormatError);
  EXPECT_THROW(pe::image::read_info_file("/nonexistent/x.png"), pe::FileNotFoundError);
}

// ---- PIL's decompression-bomb rule ---------------------------------------------------

TEST(ImageFormats, OverMaxPixelsIsDecodedOverTwiceIsRefused) {
  const Bytes image = bmp(24, 4, 3, Bytes(12 * 3, 9));  // 12 pixels
  EXPECT_EQ(error_of(image, 6), "<no error>");  // 12 = 2 x 6: a warning, decoded
  EXPECT_NE(error_of(image, 5).find("sample.img: the BMP header declares 4 x 3 = 12 pixels, over the limit of 10 "
                                    "(2 x max_pixels 5"),
            std::string::npos);
  EXPECT_NE(error_of(image, 0).find("max_pixels must be >= 1"), std::string::npos);
}

// ---- BMP ------------------------------------------------------------------------------

TEST(ImageFormats, Bmp16BitChannelsExpandAsPilDoes) {
  // 5-6-5 pixels: v * 255 / 31 and v * 255 / 63, rounded down (stb was 1 off for some).
  Bytes rows;
  for (uint32_t pixel : {0xFFFFu, 0x0821u, 0xF800u, 0x07E0u}) put16le(rows, pixel);
  const Bytes rgb565 = bmp(16, 4, 1, rows, {}, 3, {0xF800, 0x07E0, 0x001F});
  const pe::image::Image image = decode_memory(rgb565.data(), rgb565.size());
  EXPECT_EQ(at(image, 0, 0), (std::vector<int>{255, 255, 255}));
  EXPECT_EQ(at(image, 1, 0), (std::vector<int>{8, 4, 8}));  // 1 * 255 / 31 = 8, 1 * 255 / 63 = 4
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{255, 0, 0}));
  EXPECT_EQ(at(image, 3, 0), (std::vector<int>{0, 255, 0}));
  // 5-5-5 (no bit fields): 0x7C1F is red + blue, 0x0200 has 16 in green: 16 * 255 / 31 = 131.
  Bytes rows555;
  for (uint32_t pixel : {0x7C1Fu, 0x0200u}) put16le(rows555, pixel);
  const Bytes rgb555 = bmp(16, 2, 1, rows555);
  const pe::image::Image image555 = decode_memory(rgb555.data(), rgb555.size());
  EXPECT_EQ(at(image555, 0, 0), (std::vector<int>{255, 0, 255}));
  EXPECT_EQ(at(image555, 1, 0), (std::vector<int>{0, 131, 0}));
}

TEST(ImageFormats, BmpIndicesPastThePaletteReadBlack) {
  // As Pillow 13 reads them (Pillow 9.4 read its grey ramp (i, i, i) there).
  const Bytes image = bmp(8, 4, 1, {0, 1, 2, 200}, {{10, 20, 30}, {40, 50, 60}});
  for (int run = 0; run < 3; ++run) {  // the same every time (stb read uninitialised memory)
    const pe::image::Image decoded = decode_memory(image.data(), image.size());
    EXPECT_EQ(at(decoded, 0, 0), (std::vector<int>{10, 20, 30}));
    EXPECT_EQ(at(decoded, 1, 0), (std::vector<int>{40, 50, 60}));
    EXPECT_EQ(at(decoded, 2, 0), (std::vector<int>{0, 0, 0}));
    EXPECT_EQ(at(decoded, 3, 0), (std::vector<int>{0, 0, 0}));
  }
}

TEST(ImageFormats, BmpRowsRunBottomUpUnlessTheHeightIsNegative) {
  const std::vector<std::vector<int>> palette = {{0, 0, 0}, {255, 255, 255}, {9, 9, 9}};
  const Bytes rows = {1, 2, 0, 0, 2, 1, 0, 0};  // two rows of 2 pixels, padded to 4 bytes
  const pe::image::Image up = decode_memory(bmp(8, 2, 2, rows, palette).data(), bmp(8, 2, 2, rows, palette).size());
  const Bytes top_down_file = bmp(8, 2, -2, rows, palette);
  const pe::image::Image down = decode_memory(top_down_file.data(), top_down_file.size());
  EXPECT_EQ(at(up, 0, 1), (std::vector<int>{255, 255, 255}));  // the file's first row is the bottom one
  EXPECT_EQ(at(down, 0, 0), (std::vector<int>{255, 255, 255}));
  EXPECT_EQ(at(up, 0, 0), at(down, 0, 1));
}

TEST(ImageFormats, BmpRle8FollowsPilsDecoder) {
  // 4 x 2: row 0 (bottom) = run of 3 x index 1 then end of line; row 1 = absolute 3 pixels 2,0,1 (+ pad).
  const Bytes rle = {3, 1, 0, 0, 0, 3, 2, 0, 1, 0, 0, 0, 0, 1};
  const std::vector<std::vector<int>> palette = {{0, 0, 0}, {100, 0, 0}, {0, 200, 0}};
  const Bytes file = bmp(8, 4, 2, rle, palette, 1);
  const pe::image::Image image = decode_memory(file.data(), file.size());
  EXPECT_EQ(at(image, 0, 1), (std::vector<int>{100, 0, 0}));
  EXPECT_EQ(at(image, 3, 1), (std::vector<int>{0, 0, 0}));  // padded by the end of line
  EXPECT_EQ(at(image, 0, 0), (std::vector<int>{0, 200, 0}));
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{100, 0, 0}));
  // An end of bitmap before the last pixel: PIL refuses ("not enough image data").
  const Bytes early = bmp(8, 4, 2, {3, 1, 0, 1}, palette, 1);
  EXPECT_NE(error_of(early).find("sample.img: corrupt or truncated BMP: its RLE data ends after 3 of 8 pixels"),
            std::string::npos);
}

TEST(ImageFormats, BmpRle4OddAbsoluteRunReadsItsLastHighNibble) {
  // 4 x 1: an absolute run of 3 pixels in 2 bytes (1, 2, 3 and a spare nibble), then 1 pixel of 4, then the
  // end of the bitmap. Pillow 9.4 read 3 // 2 = 1 byte of the run and then misread the rest.
  const Bytes rle = {0, 3, 0x12, 0x30, 1, 0x40, 0, 1};
  const std::vector<std::vector<int>> palette = {{0, 0, 0}, {10, 0, 0}, {20, 0, 0}, {30, 0, 0}, {40, 0, 0}};
  const Bytes file = bmp(4, 4, 1, rle, palette, 2);
  const pe::image::Image image = decode_memory(file.data(), file.size());
  for (int x = 0; x < 4; ++x) EXPECT_EQ(at(image, x, 0), (std::vector<int>{10 * (x + 1), 0, 0})) << x;
}

TEST(ImageFormats, BmpRleDeltaMovesByItsOwnTwoBytes) {
  // 3 x 2: 1 pixel of 1, a move 1 right and 1 up (to the top row's x = 2), 1 pixel of 2: the last pixel.
  const Bytes rle = {1, 1, 0, 2, 1, 1, 1, 2, 0, 0, 0, 1};
  const std::vector<std::vector<int>> palette = {{0, 0, 0}, {100, 0, 0}, {0, 200, 0}};
  const Bytes file = bmp(8, 3, 2, rle, palette, 1);
  const pe::image::Image image = decode_memory(file.data(), file.size());
  EXPECT_EQ(at(image, 0, 1), (std::vector<int>{100, 0, 0}));  // the file's first row is the bottom one
  EXPECT_EQ(at(image, 1, 1), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(at(image, 1, 0), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{0, 200, 0}));
}

TEST(ImageFormats, BmpBlackAndWhiteRleIsBilevel) {
  // A black-and-white palette makes PIL's "1" image; RLE indices are its grey levels, any non-zero one white.
  const Bytes file = bmp(8, 4, 1, {2, 0, 2, 1, 0, 1}, {{0, 0, 0}, {255, 255, 255}}, 1);
  const pe::image::Image image = decode_memory(file.data(), file.size());
  EXPECT_EQ(at(image, 1, 0), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{255, 255, 255}));
}

// ---- TGA, GIF, PNM, PNG ------------------------------------------------------------------

Bytes tga24(int width, int height, int descriptor, const Bytes& bgr) {
  Bytes out = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  put16le(out, static_cast<uint32_t>(width));
  put16le(out, static_cast<uint32_t>(height));
  out.insert(out.end(), {24, uint8_t(descriptor)});
  out.insert(out.end(), bgr.begin(), bgr.end());
  return out;
}

TEST(ImageFormats, TgaOriginsAreHonouredBothWays) {
  const Bytes bgr = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // 2 x 2, file order
  auto first = [&](int descriptor) {
    const Bytes file = tga24(2, 2, descriptor, bgr);
    return at(decode_memory(file.data(), file.size()), 0, 0);
  };
  EXPECT_EQ(first(0x00), (std::vector<int>{9, 8, 7}));    // bottom-left: the file's last row is the top
  EXPECT_EQ(first(0x10), (std::vector<int>{12, 11, 10}));  // bottom-right: mirrored back (stb did not)
  EXPECT_EQ(first(0x20), (std::vector<int>{3, 2, 1}));     // top-left
  EXPECT_EQ(first(0x30), (std::vector<int>{6, 5, 4}));     // top-right
}

TEST(ImageFormats, GifTransparentPixelsKeepTheirPaletteColour) {
  // A 3 x 1 screen with a 2 x 1 frame at x = 1, index 1 transparent: the canvas
  // starts as index 1 too, and every pixel is looked up (PIL's mode "P").
  Bytes gif;
  put_text(gif, "GIF89a");
  put16le(gif, 3);
  put16le(gif, 1);
  gif.insert(gif.end(), {0x80, 0, 0, 10, 20, 30, 40, 50, 60});                      // 2-colour global palette
  gif.insert(gif.end(), {0x21, 0xF9, 4, 1, 0, 0, 1, 0});                           // transparency index 1
  gif.insert(gif.end(), {0x2C, 1, 0, 0, 0, 2, 0, 1, 0, 0});                         // frame 2 x 1 at (1, 0)
  gif.insert(gif.end(), {2, 2, 0x44, 0x0A, 0, 0x3B});                              // LZW: clear, 0, 1, end
  const pe::image::Image image = decode_memory(gif.data(), gif.size());
  ASSERT_EQ(image.width, 3);
  EXPECT_EQ(at(image, 0, 0), (std::vector<int>{40, 50, 60}));  // canvas: the transparent index's colour
  EXPECT_EQ(at(image, 1, 0), (std::vector<int>{10, 20, 30}));
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{40, 50, 60}));  // transparent: its colour, not black
}

TEST(ImageFormats, TgaColourMappedWithoutAMapIsRefused) {
  Bytes file = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 8, 0x20, 7};  // 1 x 1, type 1, no colour map
  EXPECT_NE(error_of(file).find("sample.img: corrupt TGA: a colour-mapped image without a colour map"),
            std::string::npos)
      << error_of(file);
}

TEST(ImageFormats, PlainPnmCutShortIsRefused) {
  // 3 samples announced, 2 given, the last one cut at the end of the data: Pillow 9.4 filled the image with
  // copies of it, Pillow 13 refuses it.
  Bytes file;
  put_text(file, "P2 3 1 255\n3 1");
  EXPECT_NE(error_of(file).find("after 2 of its 3 samples"), std::string::npos) << error_of(file);
  Bytes negative;
  put_text(negative, "P2 2 1 255\n3 -1\n");
  EXPECT_NE(error_of(negative).find("negative sample -1"), std::string::npos) << error_of(negative);
}

TEST(ImageFormats, PnmScalesWithPythonsRounding) {
  auto grey = [](const std::string& text) {
    const Bytes file(text.begin(), text.end());
    const pe::image::Image image = decode_memory(file.data(), file.size());
    std::vector<int> out;
    for (int x = 0; x < image.width; ++x) out.push_back(at(image, x, 0)[0]);
    return out;
  };
  // round(v / maxval * 255), ties to even: 1/6 * 255 = 42.5 -> 42, 1/2 * 255 = 127.5 -> 128.
  EXPECT_EQ(grey(std::string("P5 4 1 6\n") + std::string("\x00\x01\x03\x09", 4)), (std::vector<int>{0, 42, 128, 255}));
  EXPECT_EQ(grey("P2 3 1 2\n0 1 2\n"), (std::vector<int>{0, 128, 255}));
  EXPECT_EQ(grey("P1\n# bits: 1 is black\n3 1\n0 1 0"), (std::vector<int>{255, 0, 255}));
  EXPECT_EQ(grey("P2 2 1 255\n1#comment\n2 77\n"), (std::vector<int>{12, 77}));  // PIL: the comment joins 1 and 2
  EXPECT_NE(error_of(Bytes{'P', '2', ' ', '1', ' ', '1', ' ', '9', '\n', '1', '0'}).find("over maxval 9"),
            std::string::npos);
}

TEST(ImageFormats, Png16BitGreyIsClippedEvenWithTransparency) {
  Bytes scanlines = {0};
  for (uint32_t v : {5u, 255u, 300u, 65535u}) scanlines.insert(scanlines.end(), {uint8_t(v >> 8), uint8_t(v)});
  const Bytes file = png(4, 1, 16, 0, scanlines, {{"tRNS", {0x01, 0x2C}}}, /*end=*/false);  // and no IEND
  const pe::image::Image image = decode_memory(file.data(), file.size());
  EXPECT_EQ(at(image, 0, 0), (std::vector<int>{5, 5, 5}));
  EXPECT_EQ(at(image, 1, 0), (std::vector<int>{255, 255, 255}));
  EXPECT_EQ(at(image, 2, 0), (std::vector<int>{255, 255, 255}));  // 300: PIL's "I" clipped, not the high byte 1
  EXPECT_EQ(at(image, 3, 0), (std::vector<int>{255, 255, 255}));
}

// ---- issue 12's regression inputs --------------------------------------------------

struct Regression {
  const char* file;
  int width = 0, height = 0;   // decoded size, or 0 when refused
  const char* error = nullptr;  // a part of the message when refused
};

TEST(ImageFormats, RegressionInputsOfIssue12) {
  const Regression cases[] = {
      {"jpeg_trailer_with_ffda.jpg", 40, 32},
      {"bmp_top_down.bmp", 9, 7},
      {"bmp_os2_v1.bmp", 9, 7},
      {"bmp_rle8.bmp", 12, 7},
      {"bmp_rle4.bmp", 12, 7},
      {"bmp_extra_palette_entries.bmp", 7, 6},
      {"bmp_pixel_data_gap.bmp", 9, 7},
      {"bmp_planes_0.bmp", 9, 7},
      {"bmp_rgb555.bmp", 6, 5},
      {"bmp_rgb565.bmp", 6, 5},
      {"bmp_indices_past_palette.bmp", 9, 7},
      {"gif_truncated.gif", 0, 0, "truncated GIF data"},
      {"bmp_truncated.bmp", 0, 0, "truncated BMP data"},
      {"tga_truncated.tga", 0, 0, "truncated TGA data"},
      {"pnm_truncated.ppm", 0, 0, "truncated PNM data"},
      {"psd_truncated.psd", 0, 0, "truncated PSD data"},
      {"png_grey16_trns.png", 8, 1},
      {"png_no_iend.png", 10, 9},
      {"tga_right_to_left.tga", 7, 5},
      {"gif_transparent.gif", 12, 10},
      {"pbm_plain_p1.pbm", 5, 3},
      {"pgm_plain_p2.pgm", 5, 3},
      {"ppm_plain_p3.ppm", 5, 3},
      {"pbm_raw_p4.pbm", 5, 3},
      {"radiance.hdr", 0, 0, "Radiance HDR images are not supported"},
      {"softimage.pic", 0, 0, "Softimage PIC images are not supported"},
      {"png_100_megapixels_header.png", 0, 0, "truncated PNG data"},
  };
  size_t listed = 0;
  for (const auto& entry : fs::directory_iterator(kRegressions)) listed += entry.path().filename() != "README.md";
  EXPECT_EQ(listed, std::size(cases)) << "a regression input without an expectation here, or the reverse";
  for (const Regression& regression : cases) {
    const std::string path = (kRegressions / regression.file).string();
    if (regression.error == nullptr) {
      const pe::image::Image image = pe::image::decode_file(path);
      EXPECT_EQ(image.width, regression.width) << regression.file;
      EXPECT_EQ(image.height, regression.height) << regression.file;
      const pe::image::ImageInfo info = pe::image::read_info_file(path);
      EXPECT_EQ(info.width, regression.width) << regression.file;
      continue;
    }
    try {
      pe::image::decode_file(path);
      ADD_FAILURE() << regression.file << " decoded";
    } catch (const pe::Error& error) {
      const std::string text = error.what();
      EXPECT_EQ(text.rfind(path + ": ", 0), 0u) << text;
      EXPECT_NE(text.find(regression.error), std::string::npos) << text;
    }
  }
  // The Motion Photo trailer changes nothing: the same pixels without it.
  const Bytes with_trailer = read_file(kRegressions / "jpeg_trailer_with_ffda.jpg");
  const std::string text(with_trailer.begin(), with_trailer.end());
  const Bytes alone(with_trailer.begin(), with_trailer.begin() + static_cast<std::ptrdiff_t>(text.find("ftypmp42") - 4));
  EXPECT_EQ(decode_memory(with_trailer.data(), with_trailer.size()).pixels,
            decode_memory(alone.data(), alone.size()).pixels);
}

}  // namespace
