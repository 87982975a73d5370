"""Progress reports and cancel flags shared by the engine, the CLI and the Slicer module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import TranslationCancelled


@dataclass(frozen=True)
class Progress:
    """`done` of `total` units of `stage` ("reading", "translating", "resampling", "writing")."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], None]


def report(callback: Optional[ProgressCallback], stage: str, done: int, total: int) -> None:
    if callback is not None:
        callback(Progress(stage, done, total))


def check_cancel(cancel: Any) -> None:
    """Raise TranslationCancelled when `cancel` (a threading.Event, or a callable returning bool) is set."""
    if cancel is None:
        return
    is_set = cancel.is_set() if hasattr(cancel, "is_set") else cancel()
    if is_set:
        raise TranslationCancelled("cancelled")
