"""Shared pytest hooks: the differential image test's summary (test_image_formats.py), and the removal of a
passed test's tmp_path as soon as it ends.

Why the removal: pytest keeps every test's tmp_path until the session ends (and the last three sessions'), and
the full-size L14 tests write 1.2-5.2 GB each (an exported model; the peer tests a torch.save and a
safetensors copy). Kept, they added up to 22 GB (measured on a fresh clone) and filled a CI machine's disk,
which then failed every test after them; removed, the PyPI stack's run peaks at about 4.4 GB. A failed test keeps its directory, for whoever debugs it.
"""

import shutil

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.pe_failed = True


@pytest.fixture(autouse=True)
def _remove_tmp_path_of_a_passed_test(request):
    if "tmp_path" not in request.fixturenames:
        yield
        return
    # Asked for here, so that this fixture's teardown runs while tmp_path still exists.
    directory = request.getfixturevalue("tmp_path")
    yield
    if not getattr(request.node, "pe_failed", False):
        shutil.rmtree(directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("test_image_formats")
    if module is None or not module.SUMMARY:
        return
    terminalreporter.write_sep("-", "decoded as PIL decodes (tests/python/test_image_formats.py)")
    for line in module.summary_lines():
        terminalreporter.write_line(line)
