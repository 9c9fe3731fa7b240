# FindxxHash: libxxhash (the index files' XXH64 checksum), as the imported
# target xxHash::xxhash.
#   Debian/Ubuntu: apt-get install libxxhash-dev    Fedora: dnf install xxhash-devel
#   macOS: brew install xxhash                      or pass -DxxHash_ROOT=<prefix>
find_path(xxHash_INCLUDE_DIR NAMES xxhash.h)
find_library(xxHash_LIBRARY NAMES xxhash)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(xxHash REQUIRED_VARS xxHash_LIBRARY xxHash_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "libxxhash is needed for the index files' checksums: on Debian apt-get install libxxhash-dev, or elsewhere pass -DxxHash_ROOT=<prefix>")
if(xxHash_FOUND AND NOT TARGET xxHash::xxhash)
  add_library(xxHash::xxhash UNKNOWN IMPORTED)
  set_target_properties(xxHash::xxhash PROPERTIES IMPORTED_LOCATION "${xxHash_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${xxHash_INCLUDE_DIR}")
endif()
mark_as_advanced(xxHash_INCLUDE_DIR xxHash_LIBRARY)
