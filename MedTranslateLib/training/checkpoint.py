"""Training checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, dicts, lists, numbers and strings: networks, optimizers, schedules, the
GradScaler, recipe state (image pools), every random generator (Python, numpy, torch, CUDA and the data
stream; generator states that hold 128-bit integers are stored as JSON strings), validation history and the
resolved config. Nothing in it needs unpickling arbitrary objects.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from ..errors import InputError

FORMAT = "medtranslate-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_folder(out_dir: Union[str, Path]) -> Path:
    return Path(out_dir) / "checkpoints"


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:07d}.pt"


def best_checkpoint_path(folder: Path) -> Path:
    """The checkpoint of the best validated step (train.keep_best); never pruned, never resumed by 'latest'."""
    return folder / "best.pt"


def list_checkpoints(folder: Path) -> List[Path]:
    """The checkpoint files in `folder`, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Optional[Path]:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(state: Dict[str, Any], path: Path) -> Path:
    """Write `state` to `path` atomically: a temporary file beside it, flushed, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoint files."""
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a checkpoint onto the CPU with `weights_only=True`; InputError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: not a readable MedTranslate checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a MedTranslate training checkpoint")
    if not isinstance(state.get("config"), dict):
        raise InputError(f"{path}: the checkpoint holds no training config; it cannot be exported or resumed")
    if state.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')} is not supported "
                         f"(this library reads {FORMAT_VERSION})")
    return state


# ------------------------------------------------------------------------------------------------ generators

def capture_rng(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """This process's global generators as plain data: Python, numpy (legacy), torch, CUDA."""
    numpy_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([numpy_state[0], numpy_state[1].tolist(), *[_plain(v) for v in numpy_state[2:]]]),
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
