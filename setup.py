"""Builds perception_retrieval._core with CMake (the same CMakeLists.txt the C++
library uses) when pip installs the package, through setuptools (the build
backend in pyproject.toml):

    pip install --no-build-isolation .

--no-build-isolation lets the build see the torch that will be imported at run
time: the module links that LibTorch, so it must be built against it, as
PyTorch's own C++ extensions are. An isolated build (plain ``pip install .``)
gets a fresh environment without the user's torch and stops with one message
saying so. Without torch, PE_BUILD_ENCODER=OFF builds a torch-free package
(metrics, image, Retriever; no Encoder), isolated or not. Set PE_BUILD_JOBS to
limit parallel compile jobs and PE_CMAKE_ARGS to pass extra CMake arguments.

The CMake folder is one per interpreter and torch (build/temp.*/cmake-<tag>), so
building for the Debian stack and the PyPI stack from one tree (docs/stacks.md)
never mixes objects compiled against two LibTorch versions; and setuptools'
own folder (build/lib.*, which becomes the wheel) is one per interpreter, so the
two stacks can even be built at the same time without installing each other's
_core."""

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

SOURCE_DIR = Path(__file__).resolve().parent


class PerInterpreterBuild(build):
    """setuptools' build/lib.* is named after the Python version only, which both
    stacks share: two builds at once wrote their _core into the same folder and
    the Debian venv got the PyPI stack's module (refused at import: built against
    another torch). One folder per interpreter prefix keeps them apart."""

    def initialize_options(self):
        super().initialize_options()
        tag = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
        self.build_base = str(Path("build") / f"setuptools-{tag}")


def encoder_wanted() -> bool:
    return os.environ.get("PE_BUILD_ENCODER", "ON").upper() not in ("0", "OFF", "FALSE", "NO")


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        package_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        with_encoder = encoder_wanted()
        torch_version = "none"
        if with_encoder:
            try:  # build against the torch this interpreter imports
                import torch.utils
            except ImportError:
                raise SystemExit(
                    "perception_retrieval's encoder links the torch it will run with, but this build cannot "
                    f"import torch ({sys.executable}). pip builds in an isolated environment without your "
                    "torch: install torch first, then run pip install --no-build-isolation . "
                    "(or PE_BUILD_ENCODER=OFF pip install . for the torch-free core)"
                ) from None
            torch_version = torch.__version__
        tag = hashlib.sha256(f"{sys.prefix}|{sys.executable}|{torch_version}".encode()).hexdigest()[:12]
        build_dir = Path(self.build_temp).resolve() / f"cmake-{tag}"
        configure = [
            "cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DPE_BUILD_PYTHON=ON",
            "-DPE_BUILD_TESTS=OFF",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DPE_PYTHON_OUTPUT_DIR={package_dir}",
        ]
        configure.append(f"-DPE_BUILD_ENCODER={'ON' if with_encoder else 'OFF'}")
        if with_encoder:
            configure.append(f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
        configure += shlex.split(os.environ.get("PE_CMAKE_ARGS", ""))
        jobs = os.environ.get("PE_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_core", "-j", jobs], check=True)


# The torch-free core must not pull torch (4 GB) in as a dependency.
setup(ext_modules=[CMakeExtension("perception_retrieval._core")],
      cmdclass={"build": PerInterpreterBuild, "build_ext": CMakeBuild},
      install_requires=["numpy", "pillow"] + (["torch"] if encoder_wanted() else []))
