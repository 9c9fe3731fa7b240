"""Settings that only a program owning its process may choose, and the command line's
entry point, which chooses them before anything loads a BLAS.

Idle OpenMP threads and idle OpenBLAS threads sleep at once instead of spinning. Spinning,
they steal the cores from the next operator on other threads: LibTorch's OpenMP pool and
OpenBLAS's pool from each other, and OpenBLAS's pool, which spins for 2^28 cycles (~0.1 s)
after each GEMM, from pe::rope_attention's threads (measured: the fused attention of an
L14 block 17.5 ms per image after OpenBLAS GEMMs, 9.2-9.6 with OPENBLAS_THREAD_TIMEOUT=4;
docs/encoder_speed.md). libgomp and OpenBLAS read these variables once, when they are
loaded: OpenBLAS comes with numpy as well as with torch, so this module imports neither,
and the command line's entry point (main below) claims the process before it imports the
rest of the package. A library call never does this: the package is a guest in its user's
process.
"""

import os
import sys

PROCESS_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def claim_process() -> None:
    """PROCESS_ENVIRONMENT for this process; a value the user set is kept. Does nothing
    once torch or numpy is loaded (their runtimes have read the environment by then)."""
    if "torch" in sys.modules or "numpy" in sys.modules:
        return
    for name, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def main(argv=None) -> int:
    """perception-retrieval and python -m perception_retrieval: claim the process, then run
    the command line (perception_retrieval.cli, which loads numpy)."""
    claim_process()
    from .cli import main as cli_main

    return cli_main(argv)
