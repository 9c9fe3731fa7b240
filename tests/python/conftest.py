"""Shared pytest hooks: the differential image test's summary (test_image_formats.py)."""


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("test_image_formats")
    if module is None or not module.SUMMARY:
        return
    terminalreporter.write_sep("-", "decoded as PIL decodes (tests/python/test_image_formats.py)")
    for line in module.summary_lines():
        terminalreporter.write_line(line)
