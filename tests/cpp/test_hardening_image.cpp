// Fault injection for pe::image decoding: decompression bombs of every format
// are refused before any large allocation (checked in a child process whose
// memory is capped), PNG and GIF with absurd chunk sizes fail cleanly within
// that cap, a PNG whose data inflates to hundreds of MB is read within it (as
// PIL reads it: decoding stops at the last row), and special paths (empty,
// directory, FIFO, device) are refused without blocking.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "pe/image.hpp"
#include "image_bytes.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define PE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PE_TEST_ASAN 1
#endif
#endif

#ifdef PE_TEST_ASAN
// ASan reserves terabytes of address space for its shadow, so RLIMIT_AS cannot
// cap a child under it; its allocator refuses single allocations past this
// instead (malloc returns null, operator new reports and aborts).
extern "C" const char* __asan_default_options() { return "max_allocation_size_mb=200:allocator_may_return_null=1"; }
#endif

namespace {

namespace fs = std::filesystem;
using namespace pe::test;  // Bytes and the byte writers (image_bytes.hpp)

// Child exit codes.
constexpr int kExpectedError = 0, kNoError = 1, kBadAlloc = 2, kOtherError = 3, kCapFailed = 4;

#ifndef PE_TEST_ASAN
constexpr size_t kCapBytes = size_t{200} << 20;  // as max_allocation_size_mb above

size_t virtual_memory_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  statm >> pages;
  return pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}
#endif

/// Runs `body` in a forked child that cannot allocate more than ~200 MB and
/// returns its exit status (128 + signal if it died).
int run_capped(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);  // nothing here may hang
#ifndef PE_TEST_ASAN
    struct rlimit cap {};
    cap.rlim_cur = cap.rlim_max = virtual_memory_bytes() + kCapBytes;
    if (::setrlimit(RLIMIT_AS, &cap) != 0) ::_exit(kCapFailed);
#endif
    int code = kOtherError;
    try {
      code = body();
    } catch (const std::bad_alloc&) {
      code = kBadAlloc;
    } catch (...) {
      code = kOtherError;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Decodes in a capped child: kExpectedError if it threw std::runtime_error
/// naming the input and containing `expected`.
int decode_status(const Bytes& data, const std::string& expected) {
  return run_capped([&] {
    try {
      pe::image::decode_memory(data.data(), data.size(), "suspect.img");
    } catch (const std::runtime_error& error) {
      const std::string text = error.what();
      if (text.find("not enough memory") != std::string::npos) return kBadAlloc;  // it tried to allocate past the cap
      if (text.rfind("suspect.img: ", 0) == 0 && text.find(expected) != std::string::npos) return kExpectedError;
      std::fprintf(stderr, "unexpected error: %s\n", text.c_str());
      return kOtherError;
    }
    return kNoError;
  });
}

Bytes png_start(uint32_t width, uint32_t height) {
  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes header;
  put32be(header, width);
  put32be(header, height);
  header.insert(header.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  png_chunk(out, "IHDR", header);
  return out;
}

// A zlib stream inflating to `bytes` zero bytes from ~bytes / 160 bytes: one
// fixed-Huffman block, a literal 0, <length 258, distance 1> copies, literals.
Bytes zlib_of_zeros(size_t bytes) {
  Bytes out = {0x78, 0x01};
  uint32_t buffer = 0;
  int used = 0;
  auto put_bits = [&](uint32_t bits, int count) {
    buffer |= bits << used;
    used += count;
    for (; used >= 8; used -= 8, buffer >>= 8) out.push_back(static_cast<uint8_t>(buffer));
  };
  auto put_code = [&](uint32_t code, int count) {  // Huffman codes go most significant bit first
    for (int i = count - 1; i >= 0; --i) put_bits((code >> i) & 1u, 1);
  };
  put_bits(1, 1);        // final block
  put_bits(1, 2);        // fixed Huffman codes
  put_code(0x30, 8);     // literal 0
  size_t produced = 1;
  for (; produced + 258 <= bytes; produced += 258) {
    put_code(0xC5, 8);   // length symbol 285 = 258 bytes
    put_code(0, 5);      // distance code 0 = 1 byte back
  }
  for (; produced < bytes; ++produced) put_code(0x30, 8);  // the rest as literals
  put_code(0, 7);        // end of block
  if (used > 0) put_bits(0, 8 - used);
  put32be(out, static_cast<uint32_t>((produced % 65521) << 16 | 1));  // Adler-32 of `produced` zeros
  return out;
}

// ---------------------------------------------------------------------------

TEST(HardeningImage, TheMemoryCapIsReal) {
  // Without this the bomb tests below could pass while allocating freely.
  EXPECT_EQ(run_capped([] {
              std::vector<uint8_t> small(size_t{50} << 20, 1);
              return small[12345] == 1 ? kExpectedError : kOtherError;
            }),
            kExpectedError);
  const int big = run_capped([] {
    std::vector<uint8_t> huge(size_t{600} << 20, 1);
    return huge[12345] == 1 ? kNoError : kOtherError;
  });
  EXPECT_NE(big, kNoError) << "a 600 MB allocation succeeded under the cap";
  EXPECT_NE(big, kCapFailed);
}

TEST(HardeningImage, BombHeadersOfEveryFormatAreRefusedBeforeAllocating) {
  std::vector<std::pair<std::string, Bytes>> bombs;
  {  // PNG: IHDR 100000 x 100000, nothing else
    Bytes png = png_start(100000, 100000);
    png_chunk(png, "IEND", {});
    bombs.emplace_back("PNG", png);
  }
  {  // JPEG: SOI, SOF0 of 65535 x 65535 (the format's maximum), EOI
    Bytes jpeg = {0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8};
    put16be(jpeg, 65535);
    put16be(jpeg, 65535);
    jpeg.insert(jpeg.end(), {1, 1, 0x11, 0, 0xFF, 0xD9});
    bombs.emplace_back("JPEG", jpeg);
  }
  {  // GIF: a 65535 x 65535 screen and frame
    Bytes gif;
    put_text(gif, "GIF89a");
    put16le(gif, 65535);
    put16le(gif, 65535);
    gif.insert(gif.end(), {0, 0, 0, 0x2C, 0, 0, 0, 0});
    put16le(gif, 65535);
    put16le(gif, 65535);
    gif.insert(gif.end(), {0, 2, 2, 0x4C, 0x01, 0, 0x3B});
    bombs.emplace_back("GIF", gif);
  }
  {  // BMP: 24-bit, 100000 x 100000
    Bytes bmp;
    put_text(bmp, "BM");
    put32le(bmp, 54);
    put32le(bmp, 0);
    put32le(bmp, 54);
    put32le(bmp, 40);
    put32le(bmp, 100000);
    put32le(bmp, 100000);
    put16le(bmp, 1);
    put16le(bmp, 24);
    for (int i = 0; i < 6; ++i) put32le(bmp, 0);
    bombs.emplace_back("BMP", bmp);
  }
  {  // TGA: uncompressed true colour, 65535 x 65535
    Bytes tga = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    put16le(tga, 65535);
    put16le(tga, 65535);
    tga.insert(tga.end(), {24, 0});
    bombs.emplace_back("TGA", tga);
  }
  {  // PNM
    Bytes ppm;
    put_text(ppm, "P6\n100000 100000\n255\n");
    ppm.resize(ppm.size() + 64, 0);
    bombs.emplace_back("PNM", ppm);
  }
  {  // PSD: 30000 x 30000 (the format's maximum), 3 channels
    Bytes psd;
    put_text(psd, "8BPS");
    put16be(psd, 1);
    psd.resize(psd.size() + 6, 0);
    put16be(psd, 3);
    put32be(psd, 30000);
    put32be(psd, 30000);
    put16be(psd, 8);
    put16be(psd, 3);
    for (int i = 0; i < 3; ++i) put32be(psd, 0);
    put16be(psd, 0);
    bombs.emplace_back("PSD", psd);
  }
  {  // WebP: a lossless bitstream header of 16384 x 16384, the format's maximum
    Bytes webp;
    put_text(webp, "RIFF");
    put32le(webp, 4 + 8 + 5 + 1);  // the 5-byte chunk is padded to 6
    put_text(webp, "WEBPVP8L");
    put32le(webp, 5);
    webp.push_back(0x2F);
    put32le(webp, (16383u) | (16383u << 14));
    webp.push_back(0);
    bombs.emplace_back("WebP", webp);
  }
  {  // TIFF: 100000 x 100000 grey, one strip
    Bytes tiff = {'I', 'I', 42, 0, 8, 0, 0, 0};
    const uint16_t tags[][2] = {{256, 4}, {257, 4}, {258, 3}, {259, 3}, {262, 3}, {273, 4}, {277, 3}, {278, 4},
                                {279, 4}};
    const uint32_t values[] = {100000, 100000, 8, 1, 1, 200, 1, 100000, 64};
    put16le(tiff, 9);
    for (int i = 0; i < 9; ++i) {
      put16le(tiff, tags[i][0]);
      put16le(tiff, tags[i][1]);
      put32le(tiff, 1);
      put32le(tiff, values[i]);
    }
    put32le(tiff, 0);
    tiff.resize(264, 0);
    bombs.emplace_back("TIFF", tiff);
  }
  for (const auto& [format, bytes] : bombs) {
    EXPECT_EQ(decode_status(bytes, "pixels, over the limit of 178956970 (2 x max_pixels 89478485"), kExpectedError)
        << format;
  }
  // Radiance HDR, which stb_image read, is refused as PIL refuses it, before its size matters.
  Bytes hdr;
  put_text(hdr, "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n");
  hdr.resize(hdr.size() + 64, 0);
  EXPECT_EQ(decode_status(hdr, "Radiance HDR images are not supported"), kExpectedError);
}

TEST(HardeningImage, AbsurdChunkSizesFailCleanlyWithinTheCap) {
  std::vector<std::pair<std::string, Bytes>> cases;
  {  // An IDAT claiming 2 GB: stb reserved the claimed length before reading it.
    Bytes png = png_start(4, 4);
    png_chunk(png, "IDAT", Bytes(16, 0), 0x7FFFFFFF);
    cases.emplace_back("PNG IDAT of 2^31 - 1 bytes", png);
  }
  {  // The same for an ancillary chunk, and a PLTE of absurd size.
    Bytes png = png_start(4, 4);
    png_chunk(png, "zTXt", Bytes(8, 'x'), 0x7FFFFFF0);
    cases.emplace_back("PNG zTXt of 2^31 - 16 bytes", png);
    Bytes palette = png_start(4, 4);
    png_chunk(palette, "PLTE", Bytes(9, 1), 0xFFFFFFFF);
    cases.emplace_back("PNG PLTE of 2^32 - 1 bytes", palette);
  }
  {  // GIF: LZW code size 255, a frame outside the screen, an endless extension.
    auto gif = [](uint16_t frame_width, uint8_t lzw_size, bool extension) {
      Bytes out;
      put_text(out, "GIF89a");
      put16le(out, 8);
      put16le(out, 8);
      out.insert(out.end(), {0x80, 0, 0, 0, 0, 0, 255, 255, 255});  // 2-colour global table
      if (extension) out.insert(out.end(), {0x21, 0xFE, 255, 'c', 'o'});  // comment block cut short
      out.insert(out.end(), {0x2C, 0, 0, 0, 0});
      put16le(out, frame_width);
      put16le(out, 8);
      out.insert(out.end(), {0, lzw_size, 2, 0x4C, 0x01, 0, 0x3B});
      return out;
    };
    cases.emplace_back("GIF LZW code size 255", gif(8, 255, false));
    cases.emplace_back("GIF frame wider than the screen", gif(60000, 2, false));
    cases.emplace_back("GIF extension block past the end", gif(8, 2, true));
  }
  for (const auto& [what, bytes] : cases) {
    // Each is refused for what it is (cut short, corrupt), within the cap.
    EXPECT_EQ(decode_status(bytes, ""), kExpectedError) << what;
  }
}

TEST(HardeningImage, PngDataInflatingFarPastTheImageStopsAtTheLastRow) {
  // A 1 x 1 image (4 bytes of scanline) whose IDAT inflates to 300 MB from
  // under 2 MB: stb grew its buffer to 512 MB for it. PIL's decoder stops at
  // the last row and reads the image; so does libpng's progressive reader as
  // used here, inflating at most a 16 KiB piece past it, within the cap.
  Bytes png = png_start(1, 1);
  png_chunk(png, "IDAT", zlib_of_zeros(size_t{300} << 20));
  png_chunk(png, "IEND", {});
  EXPECT_LT(png.size(), size_t{3} << 20);
  EXPECT_EQ(run_capped([&] {
              const pe::image::Image image = pe::image::decode_memory(png.data(), png.size());
              return image.pixels == std::vector<uint8_t>{0, 0, 0} ? kNoError : kOtherError;
            }),
            kNoError);
  // The same image with honest data decodes (to the filter byte's zeros).
  Bytes honest = png_start(1, 1);
  png_chunk(honest, "IDAT", zlib_of_zeros(4));
  png_chunk(honest, "IEND", {});
  const pe::image::Image image = pe::image::decode_memory(honest.data(), honest.size());
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{0, 0, 0}));
}

TEST(HardeningImage, SpecialPathsAreRefusedWithoutBlocking) {
  const fs::path dir = fs::temp_directory_path() / ("pe_hardening_image_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string fifo = (dir / "photo.jpg").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string empty = (dir / "empty.png").string();
  std::ofstream(empty).close();
  const std::string folder = (dir / "folder.png").string();
  fs::create_directories(folder);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {fifo, "is not a regular file"},
      {"/dev/zero", "is not a regular file"},
      {empty, "the image data is empty"},
      {folder, "is a directory"},
      {(dir / "missing.png").string(), "no such image file"},
      {"", "no such image file"},
  };
  for (const auto& [path, expected] : cases) {
    const int status = run_capped([&, path = path, expected = expected] {
      try {
        pe::image::decode_file(path);
      } catch (const std::runtime_error& error) {
        const std::string text = error.what();
        return text.rfind(path + ": ", 0) == 0 && text.find(expected) != std::string::npos ? kExpectedError
                                                                                            : kOtherError;
      }
      return kNoError;
    });
    EXPECT_EQ(status, kExpectedError) << "'" << path << "'" << (status == 128 + SIGALRM ? ": it blocked" : "");
  }
  fs::remove_all(dir);
}

}  // namespace
