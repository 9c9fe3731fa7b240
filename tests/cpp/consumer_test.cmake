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
run_step("configure examples/cpp" ${CMAKE_COMMAND} -S ${PE_EXAMPLE_DIR} -B ${PE_SCRATCH_DIR}/build
  -G ${PE_GENERATOR} "-DCMAKE_PREFIX_PATH=${prefix};${PE_TORCH_PREFIX}" -DCMAKE_BUILD_TYPE=Release)
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
