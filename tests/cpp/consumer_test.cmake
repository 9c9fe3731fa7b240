# Installs the built project into a scratch prefix and builds examples/cpp as a
# separate project with find_package(perception_retrieval), then runs it.
# Fails on any step; the example's own output is checked for its known numbers.
file(REMOVE_RECURSE ${PE_SCRATCH_DIR})
set(prefix ${PE_SCRATCH_DIR}/prefix)

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${description} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("install" ${CMAKE_COMMAND} --install ${PE_BUILD_DIR} --prefix ${prefix})
# The prefixes go through the environment (':'-separated): execute_process splits its
# arguments at ';', and "-DCMAKE_PREFIX_PATH=a;b" lost the torch prefix, so a consumer found
# whichever LibTorch the system has (Debian's beside a PyPI torch).
run_step("configure examples/cpp" ${CMAKE_COMMAND} -E env "CMAKE_PREFIX_PATH=${prefix}:${PE_TORCH_PREFIX}"
  ${CMAKE_COMMAND} -S ${PE_EXAMPLE_DIR} -B ${PE_SCRATCH_DIR}/build -G ${PE_GENERATOR} -DCMAKE_BUILD_TYPE=Release)
run_step("build examples/cpp" ${CMAKE_COMMAND} --build ${PE_SCRATCH_DIR}/build)
run_step("run metrics_example" ${PE_SCRATCH_DIR}/build/metrics_example)
message(STATUS "${step_output}")
# Hand-computed in examples/cpp/metrics_example.cpp's comments.
foreach(expected "| toy-catalogue | 66.67 | 33.33 | 27.78 | 66.67 | 50.19 |")
  string(FIND "${step_output}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "metrics_example printed no row '${expected}':\n${step_output}")
  endif()
endforeach()

# The same example in a parent project that adds this source tree with
# add_subdirectory: it builds, runs, and the parent's build type is its own
# (we set none; the subproject must not force one into the cache).
run_step("configure the add_subdirectory consumer" ${CMAKE_COMMAND} -S ${PE_SOURCE_DIR}/tests/cpp/subdirectory_consumer
  -B ${PE_SCRATCH_DIR}/subdirectory -G ${PE_GENERATOR} -DPE_SOURCE_DIR=${PE_SOURCE_DIR})
file(STRINGS ${PE_SCRATCH_DIR}/subdirectory/CMakeCache.txt build_type REGEX "^CMAKE_BUILD_TYPE:")
if(NOT build_type STREQUAL "CMAKE_BUILD_TYPE:STRING=")
  message(FATAL_ERROR "add_subdirectory changed the parent's build type: ${build_type}")
endif()
run_step("build the add_subdirectory consumer" ${CMAKE_COMMAND} --build ${PE_SCRATCH_DIR}/subdirectory
  --target metrics_example)
run_step("run the add_subdirectory consumer" ${PE_SCRATCH_DIR}/subdirectory/metrics_example)
string(FIND "${step_output}" "| toy-catalogue | 66.67 | 33.33 | 27.78 | 66.67 | 50.19 |" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the add_subdirectory consumer printed no toy-catalogue row:\n${step_output}")
endif()

# The encoder, when this build has it: embed two images with the tiny model.
if(PE_TINY_MODEL)
  if(NOT EXISTS ${PE_SCRATCH_DIR}/build/encode_example)
    message(FATAL_ERROR "the installed package did not provide perception_retrieval::encoder")
  endif()
  file(WRITE ${PE_SCRATCH_DIR}/a.pgm "P5\n4 3\n255\nABCDEFGHIJKL")
  file(WRITE ${PE_SCRATCH_DIR}/b.pgm "P5\n3 4\n255\nzyxwvutsrqpo")
  run_step("run encode_example" ${PE_SCRATCH_DIR}/build/encode_example ${PE_TINY_MODEL}
    ${PE_SCRATCH_DIR}/a.pgm ${PE_SCRATCH_DIR}/b.pgm)
  message(STATUS "${step_output}")
  string(FIND "${step_output}" "test-tiny: 2 x 32 embeddings" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "encode_example printed no '2 x 32 embeddings':\n${step_output}")
  endif()
endif()
