# FindWebP: libwebp (decoding) and libwebpdemux (container and animation
# frames), as the imported targets WebP::webp and WebP::webpdemux.
#   Debian/Ubuntu: apt-get install libwebp-dev    Fedora: dnf install libwebp-devel
#   macOS: brew install webp                      or pass -DWebP_ROOT=<prefix>
find_path(WebP_INCLUDE_DIR NAMES webp/decode.h webp/demux.h)
find_library(WebP_LIBRARY NAMES webp)
find_library(WebP_DEMUX_LIBRARY NAMES webpdemux)
if(WebP_INCLUDE_DIR AND EXISTS "${WebP_INCLUDE_DIR}/webp/decode.h")
  file(STRINGS "${WebP_INCLUDE_DIR}/webp/decode.h" _webp_abi REGEX "#define WEBP_DECODER_ABI_VERSION")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(WebP
  REQUIRED_VARS WebP_LIBRARY WebP_DEMUX_LIBRARY WebP_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "libwebp and libwebpdemux are needed to decode WebP images: on Debian apt-get install libwebp-dev, or elsewhere pass -DWebP_ROOT=<prefix>")
if(WebP_FOUND)
  if(NOT TARGET WebP::webp)
    add_library(WebP::webp UNKNOWN IMPORTED)
    set_target_properties(WebP::webp PROPERTIES IMPORTED_LOCATION "${WebP_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${WebP_INCLUDE_DIR}")
  endif()
  if(NOT TARGET WebP::webpdemux)
    add_library(WebP::webpdemux UNKNOWN IMPORTED)
    set_target_properties(WebP::webpdemux PROPERTIES IMPORTED_LOCATION "${WebP_DEMUX_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${WebP_INCLUDE_DIR}" INTERFACE_LINK_LIBRARIES WebP::webp)
  endif()
endif()
mark_as_advanced(WebP_INCLUDE_DIR WebP_LIBRARY WebP_DEMUX_LIBRARY)
