"""How much memory the system can give, and a refusal with one line before a large allocation would fail
or push the machine into swap."""
from __future__ import annotations

from typing import Optional

from .errors import InputError


def available_bytes() -> Optional[int]:
    """Memory available without swapping: MemAvailable on Linux, psutil elsewhere; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_memory(needed: float, what: str) -> None:
    """Refuse `what` when it needs more than the memory available now (InputError, one line)."""
    available = available_bytes()
    if available is not None and needed > available:
        raise InputError(f"{what} needs about {needed / 2**30:.3g} GiB of memory, but only "
                         f"{available / 2**30:.3g} GiB are available")
