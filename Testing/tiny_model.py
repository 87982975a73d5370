"""Helper (not tests): a tiny random-weight MR-T1 → MR-T2 model package, so tests need no bundled model."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Union

import torch

from MedTranslateLib.networks import build_network
from MedTranslateLib.package import save_package

ARCHITECTURE: Dict[str, Any] = {"name": "unet", "variant": "classic", "width": 4, "depth": 2, "norm": "batch"}

CARD_FIELDS: Dict[str, Any] = {
    "schema_version": 1,
    "id": "tiny-test-model",
    "version": "0.0.1",
    "task": "translation",
    "source_modality": "MR-T1",
    "target_modality": "MR-T2",
    "architecture": ARCHITECTURE,
    "intensity": {
        "source": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5},
        "target": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5, "output_range": "source"},
    },
    "spacing_mm": None,
    "slice_axis": "axial",
    "context_slices": 0,
    "training": {"recipe": "none", "data": "random weights for tests"},
    "metrics": {},
    "license": "Apache-2.0",
    "intended_use": "tests only",
}


def card_fields(**changes: Any) -> Dict[str, Any]:
    """A deep copy of the tiny card's fields (every key but weights_sha256), with `changes` applied."""
    fields = copy.deepcopy(CARD_FIELDS)
    fields.update(changes)
    return fields


def build_tiny_model(out_dir: Union[str, Path], **changes: Any) -> Path:
    """Write the tiny package folder at `out_dir` (deterministic random weights) and return its path."""
    torch.manual_seed(1234)
    fields = card_fields(**changes)
    network = build_network(fields["architecture"], in_channels=2 * fields["context_slices"] + 1)
    save_package(fields, network, out_dir)
    return Path(out_dir)
