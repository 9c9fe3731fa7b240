# FindStb: the stb single-file libraries, as the imported header-only target
# Stb::Stb. Only the C++ tests use it (stb_image_write.h writes some of their
# inputs); the library itself decodes with libjpeg, libpng, libtiff, libwebp
# and its own readers.
#   Debian/Ubuntu: apt-get install libstb-dev    or pass -DStb_INCLUDE_DIR=<dir holding stb/stb_image_write.h>
find_path(Stb_INCLUDE_DIR NAMES stb/stb_image_write.h)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Stb REQUIRED_VARS Stb_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "stb_image_write.h is needed by the C++ tests: on Debian apt-get install libstb-dev, or elsewhere pass -DStb_INCLUDE_DIR=<directory that holds stb/stb_image_write.h>")
if(Stb_FOUND AND NOT TARGET Stb::Stb)
  add_library(Stb::Stb INTERFACE IMPORTED)
  set_target_properties(Stb::Stb PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Stb_INCLUDE_DIR}")
endif()
mark_as_advanced(Stb_INCLUDE_DIR)
