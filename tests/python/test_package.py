"""The installed package: version, import order with torch, torch mismatch report."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

import perception_retrieval

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_version_matches_pyproject():
    with open(os.path.join(REPO, "pyproject.toml")) as pyproject:
        declared = re.search(r'^version = "([^"]+)"', pyproject.read(), re.M).group(1)
    assert perception_retrieval.__version__ == declared


def test_imports_in_either_order_with_torch():
    for code in ("import torch, perception_retrieval", "import perception_retrieval, torch"):
        done = run_python(code + "\nprint(perception_retrieval.metrics.evaluate([[0]], [1], [1])['P@1'])")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1.0"


def test_import_changes_nothing_and_loads_torch_on_first_use():
    # A guest in the user's process: no environment variable set, no torch or
    # compiled core loaded until something needs them.
    done = run_python("""
        import os, sys
        before = dict(os.environ)
        import perception_retrieval as pr
        print(dict(os.environ) == before, "torch" in sys.modules, "perception_retrieval._core" in sys.modules)
        pr.Retriever(4)
        print("torch" in sys.modules, "perception_retrieval._core" in sys.modules)
        print(dict(os.environ) == before)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["True False False", "True True", "True"]


def test_all_names_resolve():
    import importlib.util

    for name in perception_retrieval.__all__:
        if name == "distributed" and importlib.util.find_spec("dask") is None:
            # Optional: without Dask (the PyPI stack does not install it) it says what to install.
            with pytest.raises(ImportError, match="needs Dask distributed"):
                getattr(perception_retrieval, name)
            continue
        assert getattr(perception_retrieval, name) is not None, name


def test_torch_version_mismatch_says_how_to_fix(tmp_path):
    # A stand-in torch earlier on sys.path plays "torch was upgraded after the build".
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '0.0.1'\n")
    done = run_python("import perception_retrieval; perception_retrieval.metrics", PYTHONPATH=str(tmp_path))
    assert done.returncode != 0
    assert "built against torch" in done.stderr
    assert "torch 0.0.1 is installed" in done.stderr
    assert "pip install --no-build-isolation --force-reinstall ." in done.stderr
