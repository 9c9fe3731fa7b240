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
