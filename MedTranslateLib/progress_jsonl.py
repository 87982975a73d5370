"""Machine-readable progress for a parent process (the Slicer module's runner): `--progress jsonl` writes one
JSON object per line on stdout, flushed at once.

Events: {"event": "progress", "stage": "reading" | "resampling" | "translating" | "writing" | "files" |
"downloading", "done": N, "total": M} (downloading: bytes, at most one event per percent); {"event": "warning",
"message": TEXT} (a CUDA out-of-memory fall-back, an implausible input); {"event": "done", "output": PATH} or, for a batch, {"event": "done", "translated": N, "skipped": N,
"failed": N}; {"event": "error", "message": TEXT, "exit_code": N} (the same line is on stderr).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

from .progress import Progress


def emit(event: str, **fields: Any) -> None:
    """One event as a JSON line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def report_progress(progress: Progress) -> None:
    """A ProgressCallback writing progress events."""
    emit("progress", stage=progress.stage, done=int(progress.done), total=int(progress.total))


def show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: Any = None) -> None:
    """A `warnings.showwarning` writing warning events."""
    emit("warning", message=str(message))


def download_reporter() -> Callable[[int, int], None]:
    """A download progress callback (bytes so far, total) writing "downloading" events, one per percent at most."""
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = 100 * done // total if total else 0
        if percent != last[0]:
            last[0] = percent
            emit("progress", stage="downloading", done=int(done), total=int(total))
    return report
