"""The perception-retrieval command line: entry points and argument errors.
The commands themselves are exercised end to end in test_evaluation.py."""

import os
import shutil
import subprocess
import sys

import pytest

from perception_retrieval import __version__, cli


def test_console_script_and_module_entry_points():
    script = shutil.which("perception-retrieval", path=os.path.dirname(sys.executable))
    assert script, "the perception-retrieval console script is not installed beside this python"
    for command in ([script, "--version"], [sys.executable, "-m", "perception_retrieval", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"perception-retrieval {__version__}"


@pytest.mark.parametrize("command", ["demo", "eval", "encode", "search"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_bad_arguments_exit_nonzero_with_a_reason():
    done = subprocess.run([sys.executable, "-m", "perception_retrieval", "demo", "--threads", "x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "invalid int value" in done.stderr
    done = subprocess.run([sys.executable, "-m", "perception_retrieval", "eval", "--model", "m.pt", "--dataset",
                           "x=folders:/nonexistent", "--batch-size", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--batch-size must be >= 1, got 0" in done.stderr
    done = subprocess.run([sys.executable, "-m", "perception_retrieval", "eval", "--model", "m.pt", "--dataset",
                           "x=coco:/data"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown dataset format" in done.stderr or "say its format" in done.stderr


def test_the_command_line_claims_its_process_before_a_blas_loads_and_keeps_user_values():
    """The entry points set OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4 (idle threads
    sleep instead of spinning) unless the user set them, before numpy or torch loads OpenBLAS;
    importing the package sets neither; once numpy or torch is loaded it is too late (their
    runtimes have read the environment), so nothing is set then."""
    code = (
        "import os, sys\n"
        "import perception_retrieval as pr\n"
        "from perception_retrieval import process\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
        "before = {k: os.environ.get(k) for k in process.PROCESS_ENVIRONMENT}\n"
        "process.claim_process()\n"
        "print(before, {k: os.environ.get(k) for k in process.PROCESS_ENVIRONMENT})\n")
    names = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=clean)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("{'OMP_WAIT_POLICY': None, 'OPENBLAS_THREAD_TIMEOUT': None} "
                                   "{'OMP_WAIT_POLICY': 'PASSIVE', 'OPENBLAS_THREAD_TIMEOUT': '4'}")
    user = dict(clean, OPENBLAS_THREAD_TIMEOUT="20")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=user)
    assert done.stdout.strip().endswith("{'OMP_WAIT_POLICY': 'PASSIVE', 'OPENBLAS_THREAD_TIMEOUT': '20'}"), done
    late = code.replace("import perception_retrieval as pr\n", "import numpy\n").replace(
        "assert 'numpy' not in sys.modules and", "assert")
    done = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, timeout=120, env=clean)
    assert done.stdout.strip().endswith("{'OMP_WAIT_POLICY': None, 'OPENBLAS_THREAD_TIMEOUT': None}"), done
    # Both entry points go through process.main, which claims before the command line imports numpy.
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name == "perception-retrieval"}
    assert scripts == {"perception-retrieval": "perception_retrieval.process:main"}
