"""The model card: what a package's `model.json` holds, validated against a fixed schema."""
from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .axes import SLICE_AXES
from .intensity import MODALITIES, IntensityPair

SCHEMA_VERSION = 1
TASKS = ("translation", "motion-correction", "denoising")
PAD_MODES = ("reflect", "background")  # how slices are padded: mirrored borders, or the background value -1
FUSIONS = ("mean", "median")  # how the passes of a model trained on several planes are combined, voxel by voxel
CARD_PRECISIONS = ("auto", "fp32")  # "fp32": the model loses accuracy under reduced-precision autocast

# key -> (required, accepted types)
_SCHEMA: Dict[str, Any] = {
    "schema_version": (True, (int,)),
    "id": (True, (str,)),
    "version": (True, (str,)),
    "task": (True, (str,)),
    "source_modality": (True, (str,)),
    "target_modality": (True, (str,)),
    "architecture": (True, (dict,)),
    "intensity": (True, (dict,)),
    "spacing_mm": (True, (list, type(None))),
    "slice_axis": (True, (str,)),
    "context_slices": (True, (int,)),
    "training": (True, (dict,)),
    "metrics": (True, (dict,)),
    "license": (True, (str,)),
    "intended_use": (True, (str,)),
    "weights_sha256": (True, (str,)),
    "description": (False, (str,)),
    "warnings": (False, (list,)),
    "inverse_weights_sha256": (False, (str,)),
    "pad": (False, (str,)),
    "planes": (False, (list,)),
    "fusion": (False, (str,)),
    "precision": (False, (str,)),
}


class CardError(ValueError):
    """The card does not follow the schema; the message names the key."""


@dataclass
class ModelCard:
    """A validated `model.json`. `architecture` is the network spec for `networks.build_network`."""

    schema_version: int
    id: str
    version: str
    task: str
    source_modality: str
    target_modality: str
    architecture: Dict[str, Any]
    intensity: Dict[str, Any]
    spacing_mm: Optional[List[float]]
    slice_axis: str
    context_slices: int
    training: Dict[str, Any]
    metrics: Dict[str, Any]
    license: str
    intended_use: str
    weights_sha256: str
    description: str = ""
    warnings: List[str] = field(default_factory=list)
    inverse_weights_sha256: Optional[str] = None
    pad: str = "reflect"  # as the network's training crops were padded (data.pad), so inference pads alike
    planes: List[str] = field(default_factory=list)  # slicing planes trained on and run at inference ([]: slice_axis)
    fusion: str = "mean"  # how those planes' passes are fused (FUSIONS)
    precision: str = "auto"  # "fp32": always run in float32 (measured to lose accuracy in bf16/fp16)

    @property
    def in_channels(self) -> int:
        """Network input channels: the slice and its 2k neighbours."""
        return 2 * self.context_slices + 1

    @property
    def inference_planes(self) -> List[str]:
        """The planes inference runs one pass along each: `planes`, or the one `slice_axis`."""
        return list(self.planes) or [self.slice_axis]

    @property
    def intensity_pair(self) -> IntensityPair:
        return IntensityPair.from_dict(self.intensity)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelCard":
        """Validate and build; raises CardError naming the first problem."""
        if not isinstance(data, dict):
            raise CardError("model.json must hold a JSON object")
        unknown = sorted(set(data) - set(_SCHEMA))
        if unknown:
            raise CardError(f"unknown key(s) {', '.join(unknown)}")
        for key, (required, types) in _SCHEMA.items():
            if key not in data:
                if required:
                    raise CardError(f"missing key '{key}'")
                continue
            value = data[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise CardError(f"key '{key}' must be {names}, not {type(value).__name__}")
        _check_values(data)
        return cls(**data)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        if not data["description"]:
            del data["description"]
        if not data["warnings"]:
            del data["warnings"]
        if data["inverse_weights_sha256"] is None:
            del data["inverse_weights_sha256"]
        if not data["planes"]:  # a one-plane card reads as before multi-plane models existed
            del data["planes"], data["fusion"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """One line for listings."""
        network = self.architecture.get("name")
        return printable(f"{self.id}  {self.source_modality} -> {self.target_modality}  ({network}, {self.task})")


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes, newlines, NUL) written as escapes, for one-line output."""
    return "".join(c if unicodedata.category(c) != "Cc" else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _numbers(value: Any, where: str) -> Iterator[Tuple[str, float]]:
    """(key path, number) of every float in a JSON value."""
    if isinstance(value, float):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{where}[{index}]")


def _check_values(data: Dict[str, Any]) -> None:
    for where, number in _numbers(data, ""):
        if not math.isfinite(number):
            raise CardError(f"key '{where}' holds {number}; a card's numbers must be finite")
    if data["schema_version"] != SCHEMA_VERSION:
        raise CardError(f"schema_version {data['schema_version']} is not supported (this library reads {SCHEMA_VERSION})")
    if data["task"] not in TASKS:
        raise CardError(f"task '{data['task']}' is unknown (known: {', '.join(TASKS)})")
    for key in ("source_modality", "target_modality"):
        if data[key] not in MODALITIES:
            raise CardError(f"{key} '{data[key]}' is unknown (known: {', '.join(MODALITIES)})")
    if data["slice_axis"] not in SLICE_AXES:
        raise CardError(f"slice_axis '{data['slice_axis']}' is unknown (known: {', '.join(SLICE_AXES)})")
    if data["context_slices"] < 0:
        raise CardError("context_slices must be >= 0")
    if data.get("pad", "reflect") not in PAD_MODES:
        raise CardError(f"pad '{data['pad']}' is unknown (known: {', '.join(PAD_MODES)})")
    planes = data.get("planes", [])
    if any(plane not in SLICE_AXES for plane in planes) or len(set(planes)) != len(planes):
        raise CardError(f"planes must list distinct slicing planes among {', '.join(SLICE_AXES)}")
    if planes and data["slice_axis"] not in planes:
        raise CardError(f"planes must include slice_axis '{data['slice_axis']}'")
    if data.get("precision", "auto") not in CARD_PRECISIONS:
        raise CardError(f"precision '{data['precision']}' is unknown (known: {', '.join(CARD_PRECISIONS)})")
    if data.get("fusion", "mean") not in FUSIONS:
        raise CardError(f"fusion '{data['fusion']}' is unknown (known: {', '.join(FUSIONS)})")
    spacing = data["spacing_mm"]
    if spacing is not None and (len(spacing) != 2 or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                                              and s > 0 for s in spacing)):
        raise CardError("spacing_mm must be null or [row_mm, column_mm] with positive numbers")
    if not isinstance(data["architecture"].get("name"), str):
        raise CardError("architecture must name the network: {\"name\": ...}")
    for key in ("weights_sha256", "inverse_weights_sha256"):
        digest = data.get(key)
        if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
            raise CardError(f"{key} must be 64 lower-case hex digits")
    if not all(isinstance(w, str) for w in data.get("warnings", [])):
        raise CardError("warnings must be a list of strings")
    try:
        IntensityPair.from_dict(data["intensity"])
    except ValueError as error:
        raise CardError(str(error)) from None
