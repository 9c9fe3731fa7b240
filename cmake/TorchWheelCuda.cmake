# pe_link_torch_wheel_cuda(TARGET <target> [BUILD_INTERFACE]) — for LibTorch from the
# PyPI torch wheel (a CUDA build): the wheel finds its CUDA libraries (NCCL, cuDNN,
# cuBLAS, ...) in site-packages/nvidia/*/lib through its own RPATH, but at link time
# the CUDA toolkit's folders (which Caffe2's CMake config adds) come first on the
# linker's search path, and the toolkit's older libnccl lacks symbols libtorch_cuda
# needs ("undefined reference to ncclCommResume"). This points the linker at the
# wheel's copies first, for everything that links <target>. Run-time loading needs
# nothing: libtorch_cuda's RPATH finds them. A no-op for other LibTorch builds.
# Call after find_package(Torch).
function(pe_link_torch_wheel_cuda)
  cmake_parse_arguments(PE "BUILD_INTERFACE" "TARGET" "" ${ARGN})
  if(NOT TORCH_CUDA_LIBRARIES OR NOT TORCH_INSTALL_PREFIX)
    return()
  endif()
  file(GLOB _pe_dirs LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
  foreach(_pe_dir IN LISTS _pe_dirs)
    get_filename_component(_pe_dir "${_pe_dir}" REALPATH)
    if(PE_BUILD_INTERFACE)
      set_property(TARGET ${PE_TARGET} APPEND PROPERTY INTERFACE_LINK_OPTIONS
        "$<BUILD_INTERFACE:LINKER:-rpath-link,${_pe_dir}>")
    else()
      set_property(TARGET ${PE_TARGET} APPEND PROPERTY INTERFACE_LINK_OPTIONS "LINKER:-rpath-link,${_pe_dir}")
    endif()
  endforeach()
endfunction()
