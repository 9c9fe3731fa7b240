// The out-of-line destructors are the classes' key functions: their type
// information is emitted once, in this library, so an exception thrown here is
// caught by type in a consumer even across shared-library boundaries.

#include "pe/error.hpp"

namespace pe {

const char* name(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid_argument";
    case ErrorKind::io: return "io";
    case ErrorKind::file_not_found: return "file_not_found";
    case ErrorKind::corrupt_data: return "corrupt_data";
    case ErrorKind::unsupported_format: return "unsupported_format";
    case ErrorKind::version_mismatch: return "version_mismatch";
    case ErrorKind::cancelled: return "cancelled";
  }
  return "unknown";
}

Error::Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
Error::~Error() = default;

InvalidArgumentError::InvalidArgumentError(const std::string& message) : Error(ErrorKind::invalid_argument, message) {}
InvalidArgumentError::~InvalidArgumentError() = default;

IoError::IoError(const std::string& message) : Error(ErrorKind::io, message) {}
IoError::IoError(ErrorKind kind, const std::string& message) : Error(kind, message) {}
IoError::~IoError() = default;

FileNotFoundError::FileNotFoundError(const std::string& message) : IoError(ErrorKind::file_not_found, message) {}
FileNotFoundError::~FileNotFoundError() = default;

CorruptDataError::CorruptDataError(const std::string& message) : Error(ErrorKind::corrupt_data, message) {}
CorruptDataError::~CorruptDataError() = default;

UnsupportedFormatError::UnsupportedFormatError(const std::string& message)
    : Error(ErrorKind::unsupported_format, message) {}
UnsupportedFormatError::~UnsupportedFormatError() = default;

VersionMismatchError::VersionMismatchError(const std::string& message) : Error(ErrorKind::version_mismatch, message) {}
VersionMismatchError::~VersionMismatchError() = default;

CancelledError::CancelledError(const std::string& message) : Error(ErrorKind::cancelled, message) {}
CancelledError::~CancelledError() = default;

}  // namespace pe
