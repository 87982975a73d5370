"""SIGTERM as an exception, so that a terminated command cleans up (staging folders, temporary files) as an
interrupted one does, and exits 143 (128 + SIGTERM) as SIGINT exits 130."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class Terminated(BaseException):
    """SIGTERM arrived; a BaseException, like KeyboardInterrupt, so that `except Exception` does not swallow it."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def terminate_raises() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere the handler cannot be set and
    nothing changes); the previous handler is restored on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
