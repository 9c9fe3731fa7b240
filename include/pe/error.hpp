#pragma once
// pe/error.hpp — the exceptions perception_retrieval throws.
//
// Every error the library reports is a pe::Error (itself a std::runtime_error,
// so `catch (const std::exception&)` still sees everything), of one of these
// kinds; the message names the argument or file, the value seen and the fix:
//
//   InvalidArgumentError    a bad argument: a size, a count, an option, an array shape
//   IoError                 reading or writing a file failed (permissions, full disk, ...)
//     FileNotFoundError     ... because the file does not exist
//   CorruptDataError        a file or buffer is damaged: a truncated image, an index
//                           whose checksum fails, a model file that is not TorchScript
//   UnsupportedFormatError  a well-formed input this library does not read (HEIC, AVIF,
//                           a 12-bit JPEG), or a feature this build lacks (CUDA)
//   VersionMismatchError    a file written by a newer format version, a model exported
//                           for another format
//   CancelledError          a long call was asked to stop (Ctrl-C in the bindings)
//
// The Python bindings map them to perception_retrieval.Error subclasses that are
// also the matching built-ins (InvalidArgumentError and CorruptFileError are
// ValueErrors, FileNotFoundError is a FileNotFoundError, ...): see docs/errors.md.
//
// Thread safety: exception objects are immutable after construction.

#include <stdexcept>
#include <string>

namespace pe {

enum class ErrorKind {
  invalid_argument,
  io,
  file_not_found,
  corrupt_data,
  unsupported_format,
  version_mismatch,
  cancelled,
};

/// The kind's name as used in docs and bindings ("invalid_argument", ...).
const char* name(ErrorKind kind) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);
  ~Error() override;
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

class InvalidArgumentError : public Error {
 public:
  explicit InvalidArgumentError(const std::string& message);
  ~InvalidArgumentError() override;
};

class IoError : public Error {
 public:
  explicit IoError(const std::string& message);
  ~IoError() override;

 protected:
  IoError(ErrorKind kind, const std::string& message);
};

class FileNotFoundError : public IoError {
 public:
  explicit FileNotFoundError(const std::string& message);
  ~FileNotFoundError() override;
};

class CorruptDataError : public Error {
 public:
  explicit CorruptDataError(const std::string& message);
  ~CorruptDataError() override;
};

class UnsupportedFormatError : public Error {
 public:
  explicit UnsupportedFormatError(const std::string& message);
  ~UnsupportedFormatError() override;
};

class VersionMismatchError : public Error {
 public:
  explicit VersionMismatchError(const std::string& message);
  ~VersionMismatchError() override;
};

class CancelledError : public Error {
 public:
  explicit CancelledError(const std::string& message = "cancelled");
  ~CancelledError() override;
};

}  // namespace pe
