"""Builds perception_retrieval._core with CMake (the same CMakeLists.txt the C++
library uses) when pip installs the package:

    pip install --no-build-isolation .

--no-build-isolation lets the build see the installed torch, numpy and pybind11
(Debian's python3-* packages; there is no PyPI here). Set PE_BUILD_JOBS to limit
parallel compile jobs and PE_CMAKE_ARGS to pass extra CMake arguments."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE_DIR = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        package_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        configure = [
            "cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DPE_BUILD_PYTHON=ON",
            "-DPE_BUILD_TESTS=OFF",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DPE_PYTHON_OUTPUT_DIR={package_dir}",
        ]
        try:  # build against the torch this interpreter imports
            import torch.utils

            configure.append(f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
        except ImportError:
            pass  # CMake stops with the fix (apt-get install python3-torch)
        configure += shlex.split(os.environ.get("PE_CMAKE_ARGS", ""))
        jobs = os.environ.get("PE_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_core", "-j", jobs], check=True)


setup(ext_modules=[CMakeExtension("perception_retrieval._core")], cmdclass={"build_ext": CMakeBuild})
