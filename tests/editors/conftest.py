"""Prints the measured diagnostics latency in pytest's summary (before its closing line)."""

import os
import pathlib
import tempfile

LATENCY_FILE = pathlib.Path(os.environ.get("SPRSC_LATENCY_OUT", pathlib.Path(tempfile.gettempdir()) / "sprsc-lsp-latency.txt"))


def pytest_sessionstart(session):
    LATENCY_FILE.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    if LATENCY_FILE.exists():
        terminalreporter.write_line(LATENCY_FILE.read_text().strip())
