#pragma once
// pe::detail file helpers for pe::Retriever persistence (POSIX):
//   write_file_atomically  temp file in the same directory, fsync, rename, fsync
//                          the directory: a crash or a failed write never leaves
//                          a half-written file where a good one was
//   MappedFile             read-only mmap of a whole file
//   ByteSink / ByteSource  where bytes go to / come from (file, memory, mapping)
//   AlignedBuffer          64-byte aligned heap memory for SIMD rows
//
// Errors (pe/error.hpp) name the path, the system's reason and, where there is
// one, what to do: FileNotFoundError for a missing file, IoError for other
// system failures, CorruptDataError for data that ends early.
//
// Thread safety: objects are used by one thread at a time; free functions are
// safe to call concurrently (on different paths).

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pe/error.hpp"

namespace pe::detail {

inline std::string system_error_text(int error) { return std::strerror(error); }

/// FileNotFoundError when `error` is ENOENT, IoError otherwise.
[[noreturn]] inline void throw_system_error(int error, const std::string& message) {
  if (error == ENOENT) throw FileNotFoundError(message + ": " + system_error_text(error));
  throw IoError(message + ": " + system_error_text(error));
}

// ---------------------------------------------------------------------------

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;
  // Large buffers are mapped directly, 2 MiB aligned, and marked for
  // transparent huge pages: a 400 MB gallery then takes ~200 page faults
  // instead of ~100,000 (each costs microseconds, far more under a hypervisor)
  // and a scan misses the TLB 512x less often.
  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kMapThreshold = size_t{4} << 20;

  AlignedBuffer() = default;
  /// `bytes` of uninitialised memory, 64-byte aligned (2 MiB when large).
  explicit AlignedBuffer(size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    if (bytes < kMapThreshold) {
      data_ = ::operator new(bytes, std::align_val_t{kAlignment});
      return;
    }
    mapped_bytes_ = bytes + kHugePage;
    void* region = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
      mapped_bytes_ = 0;
      size_ = 0;
      throw std::bad_alloc();
    }
    region_ = region;
    const auto address = reinterpret_cast<uintptr_t>(region);
    data_ = reinterpret_cast<void*>((address + kHugePage - 1) / kHugePage * kHugePage);
#ifdef MADV_HUGEPAGE
    ::madvise(data_, (bytes + kHugePage - 1) / kHugePage * kHugePage, MADV_HUGEPAGE);  // a hint; failure is fine
#endif
  }
  ~AlignedBuffer() { release(); }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        region_(std::exchange(other.region_, nullptr)),
        mapped_bytes_(std::exchange(other.mapped_bytes_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      region_ = std::exchange(other.region_, nullptr);
      mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release() {
    if (region_) {
      ::munmap(region_, mapped_bytes_);
    } else if (data_) {
      ::operator delete(data_, std::align_val_t{kAlignment});
    }
    data_ = nullptr;
    region_ = nullptr;
    size_ = 0;
    mapped_bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t size_ = 0;
  void* region_ = nullptr;    // the mapping, when mapped
  size_t mapped_bytes_ = 0;
};

// ---------------------------------------------------------------------------

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t size) = 0;
};

class StringSink final : public ByteSink {
 public:
  void write(const void* data, size_t size) override {
    if (size > 0) bytes.append(static_cast<const char*>(data), size);
  }
  std::string bytes;
};

/// Writes to a file descriptor; small writes are gathered in a buffer, large
/// ones (the vectors) go straight from the caller's memory.
class FdSink final : public ByteSink {
 public:
  FdSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buffer_.reserve(kBuffer); }

  void write(const void* data, size_t size) override {
    if (size == 0) return;
    if (buffer_.size() + size <= kBuffer) {
      const auto* p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + size);
      return;
    }
    flush();
    if (size <= kBuffer) {
      write(data, size);
      return;
    }
    write_all(data, size);
  }

  void flush() {
    if (!buffer_.empty()) write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }

 private:
  static constexpr size_t kBuffer = size_t{1} << 20;

  void write_all(const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd_, p, std::min<size_t>(size, size_t{1} << 30));
      if (written < 0) {
        if (errno == EINTR) continue;
        const int error = errno;
        throw IoError("writing " + path_ + " failed: " + system_error_text(error) +
                       (error == ENOSPC ? "; free disk space and save again" : ""));
      }
      p += written;
      size -= static_cast<size_t>(written);
    }
  }

  int fd_;
  std::string path_;
  std::vector<char> buffer_;
};

inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// Calls produce(sink) to write `path` atomically: the bytes go to a temporary
/// file next to it, which is fsynced and renamed over `path`, then the
/// directory is fsynced. If anything fails the temporary is removed and `path`
/// is untouched (the old file, if any, stays as it was).
inline void write_file_atomically(const std::string& path, const std::function<void(ByteSink&)>& produce) {
  if (path.empty()) throw InvalidArgumentError("path is empty; pass the file to write");
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
    throw InvalidArgumentError("path " + path + " is a directory; pass a file name inside it");
  }
  static std::atomic<uint64_t> counter{0};
  const std::string temp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    throw IoError("cannot create " + temp + " to write " + path + ": " + system_error_text(error) +
                  "; check that the directory " + parent_directory(path) + " exists and is writable");
  }
  try {
    FdSink sink(fd, temp);
    produce(sink);
    sink.flush();
    if (::fsync(fd) != 0) {
      const int error = errno;
      throw IoError("fsync of " + temp + " failed: " + system_error_text(error));
    }
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) {
      const int error = errno;
      throw IoError("closing " + temp + " failed: " + system_error_text(error));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      const int error = errno;
      throw IoError("renaming " + temp + " to " + path + " failed: " + system_error_text(error));
    }
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  // Make the rename itself durable; a failure here leaves a complete file.
  const int directory = ::open(parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory >= 0) {
    ::fsync(directory);
    ::close(directory);
  }
}

// ---------------------------------------------------------------------------

/// A whole file mapped read-only. Pages are loaded lazily by the kernel and are
/// shared with the page cache, so mapping costs no copy and no private memory.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then refused
    // below as not a regular file (no effect on regular files).
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      const int error = errno;
      throw_system_error(error, "cannot open " + path);
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
      const int error = errno;
      ::close(fd);
      throw_system_error(error, "cannot stat " + path);
    }
    if (!S_ISREG(info.st_mode)) {
      ::close(fd);
      throw IoError(path + " is not a regular file (a directory, device or FIFO); pass an index file");
    }
    size_ = static_cast<size_t>(info.st_size);
    if (size_ > 0) {
      void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (mapped == MAP_FAILED) {
        const int error = errno;
        ::close(fd);
        throw_system_error(error, "cannot map " + path);
      }
      data_ = static_cast<const uint8_t*>(mapped);
    }
    ::close(fd);  // the mapping keeps the file alive, even if it is replaced later
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  /// Copies the next `size` bytes to `out`; throws at end of data.
  virtual void read(void* out, size_t size) = 0;
  /// The next `size` bytes in place (and advances), or nullptr when the source
  /// cannot lend its memory (a plain file).
  virtual const uint8_t* view(size_t size) = 0;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size, std::string name)
      : data_(data), size_(size), name_(std::move(name)) {}
  uint64_t size() const override { return size_; }
  void read(void* out, size_t size) override {
    const uint8_t* from = view(size);
    if (size > 0) std::memcpy(out, from, size);
  }
  const uint8_t* view(size_t size) override {
    if (size > size_ - position_) {
      throw CorruptDataError(name_ + " ends after " + std::to_string(size_) + " bytes; it is truncated");
    }
    const uint8_t* at = data_ + position_;
    position_ += size;
    return at;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  std::string name_;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // see MappedFile
    if (fd_ < 0) {
      const int error = errno;
      throw_system_error(error, "cannot open " + path);
    }
    struct stat info {};
    if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd_);
      throw IoError(path + " is not a regular file (a directory, device or FIFO); pass an index file");
    }
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  void read(void* out, size_t size) override {
    auto* p = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t got = ::read(fd_, p, std::min<size_t>(size, size_t{1} << 30));
      if (got < 0) {
        if (errno == EINTR) continue;
        const int error = errno;
        throw_system_error(error, "reading " + path_ + " failed");
      }
      if (got == 0) throw CorruptDataError(path_ + " ended early; it is truncated");
      p += got;
      size -= static_cast<size_t>(got);
    }
  }
  const uint8_t* view(size_t) override { return nullptr; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace pe::detail
