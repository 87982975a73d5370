"""What C and C++ libraries (ITK, GDCM, MetaIO, NIfTI, torch) print on the process's stderr, kept apart from
the command's own lines: the command says one line; `--debug` shows the libraries' text after it."""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, List


@contextmanager
def captured_library_messages(messages: List[str]) -> Iterator[None]:
    """Point file descriptor 2 at a temporary file while inside; Python's own `sys.stderr` keeps writing to
    the real stderr. On leaving, the captured text is appended to `messages` (one item)."""
    try:
        python_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # already redirected (a test's capture, an IDE): leave it
        python_on_fd2 = False
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        if python_on_fd2:
            sys.stderr = open(saved, "w", buffering=1, encoding=python_stderr.encoding,
                              errors="backslashreplace", closefd=False)
        try:
            yield
        finally:
            if python_on_fd2:
                sys.stderr.flush()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "backslashreplace").strip()
            if text:
                messages.append(text)
