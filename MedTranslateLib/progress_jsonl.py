"""Machine-readable progress for a parent process (the Slicer module's runner): `--progress jsonl` writes one
JSON object per line on stdout, flushed at once.

Events: {"event": "progress", "stage": "reading" | "resampling" | "translating" | "writing" | "files",
"done": N, "total": M}; {"event": "warning", "message": TEXT} (a CUDA out-of-memory fall-back, an implausible
input); {"event": "done", "output": PATH} or, for a batch, {"event": "done", "translated": N, "skipped": N,
"failed": N}; {"event": "error", "message": TEXT, "exit_code": N} (the same line is on stderr).
"""
from __future__ import annotations

import json
import sys
from typing import Any

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
