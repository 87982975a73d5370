"""Modality-aware intensity mapping to the network range [-1, 1] and back, driven by a model card.

Training and inference both use this module, so a model sees at run time exactly the mapping it learnt.

A card's `intensity` entry holds a `source` and a `target` mapping, each one of:

- `{"kind": "ct", "window": [-1024, 3071]}`: Hounsfield units clipped to the window, scaled linearly.
- `{"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5}`: the low percentile of all voxels
  and the high percentile of the foreground (voxels above Otsu's threshold) map to -1 and 1 (MR, PET).
  A target of this kind also names the range its output takes, `"output_range": "source"` (the input's
  own fitted range, for a target of another contrast whose units are arbitrary) or `[low, high]` in fixed units.
- `{"kind": "source"}` (target only): the target shares the range fitted to its paired source, in training as
  at inference, so the network's output needs no intensity change where nothing is to be changed. For tasks
  whose input and output share one modality and scale (motion correction, denoising): a target fitted to its
  own percentiles would differ from the corrupted input's by a per-volume factor that inference cannot know.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from skimage.filters import threshold_otsu

from .errors import InputError

MODALITIES = ("MR-T1", "MR-T2", "MR-PD", "CT", "PET")
_SAMPLE_SIZE = 2_000_000
_WARNING_SAMPLE_SIZE = 250_000  # the plausibility warning's 1st and 99th percentiles need fewer


@dataclass(frozen=True)
class IntensityRange:
    """The units that map to -1 (`low`) and 1 (`high`)."""

    low: float
    high: float

    def to_network(self, values: np.ndarray) -> np.ndarray:
        """Any-shape array in units -> float32 in [-1, 1]."""
        scaled = np.subtract(values, self.low, dtype=np.float32)  # one new array; the steps below work in it
        scaled *= 2.0 / (self.high - self.low)
        scaled -= 1.0
        return np.clip(scaled, -1.0, 1.0, out=scaled)

    def from_network(self, values: np.ndarray) -> np.ndarray:
        """Any-shape array in [-1, 1] -> float32 in units."""
        units = np.add(values, 1.0, dtype=np.float32)  # one new array; the steps below work in it
        units *= (self.high - self.low) / 2.0
        units += self.low
        return units


@dataclass(frozen=True)
class IntensityMapping:
    """One side (source or target) of a card's intensity entry."""

    kind: str
    window: Optional[Tuple[float, float]] = None
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    output_range: Union[str, Tuple[float, float], None] = None

    @classmethod
    def from_dict(cls, spec: Dict[str, Any], role: str) -> "IntensityMapping":
        """Build from a card entry; `role` ("source"/"target") names it in error messages."""
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ValueError(f"intensity.{role} must be an object with a 'kind'")
        kind = spec["kind"]
        allowed = {"ct": {"kind", "window"}, "percentile": {"kind", "low_percentile", "high_percentile"}}
        if role == "target":
            allowed["source"] = {"kind"}
        if kind not in allowed:
            raise ValueError(f"intensity.{role}.kind '{kind}' is unknown (known: {', '.join(allowed)})")
        if kind == "percentile" and role == "target":
            allowed["percentile"] = allowed["percentile"] | {"output_range"}
        unknown = set(spec) - allowed[kind]
        if unknown:
            raise ValueError(f"intensity.{role} has unknown keys: {', '.join(sorted(unknown))}")
        if kind == "ct":
            window = spec.get("window")
            if not (isinstance(window, list) and len(window) == 2 and window[0] < window[1]):
                raise ValueError(f"intensity.{role}.window must be [low, high] with low < high")
            return cls(kind="ct", window=(float(window[0]), float(window[1])))
        if kind == "source":
            return cls(kind="source")
        low, high = float(spec.get("low_percentile", 0.5)), float(spec.get("high_percentile", 99.5))
        if not 0 <= low < high <= 100:
            raise ValueError(f"intensity.{role} percentiles must satisfy 0 <= low < high <= 100")
        output_range: Union[str, Tuple[float, float], None] = None
        if role == "target":
            raw = spec.get("output_range", "source")
            if raw == "source":
                output_range = "source"
            elif isinstance(raw, list) and len(raw) == 2 and raw[0] < raw[1]:
                output_range = (float(raw[0]), float(raw[1]))
            else:
                raise ValueError(f"intensity.{role}.output_range must be \"source\" or [low, high]")
        return cls(kind="percentile", low_percentile=low, high_percentile=high, output_range=output_range)

    def to_dict(self) -> Dict[str, Any]:
        """The card entry this mapping was built from."""
        if self.kind == "ct":
            return {"kind": "ct", "window": list(self.window or ())}
        if self.kind == "source":
            return {"kind": "source"}
        spec: Dict[str, Any] = {"kind": "percentile", "low_percentile": self.low_percentile,
                                "high_percentile": self.high_percentile}
        if self.output_range is not None:
            spec["output_range"] = self.output_range if isinstance(self.output_range, str) else list(self.output_range)
        return spec

    def fit(self, values: np.ndarray) -> IntensityRange:
        """The range this mapping gives a volume (any shape): the CT window, or the volume's percentiles
        (a `source` target has no range of its own: see IntensityPair.paired_target_range)."""
        if self.kind == "source":
            raise ValueError("a target of kind 'source' takes its paired source's range; it has none of its own")
        if self.kind == "ct":
            assert self.window is not None
            return IntensityRange(*self.window)
        sample = _sample(values)
        low = float(np.percentile(sample, self.low_percentile))
        foreground = sample[sample > threshold_otsu(sample)] if sample.min() < sample.max() else sample
        high = float(np.percentile(foreground, self.high_percentile)) if foreground.size else float(sample.max())
        if high <= low:
            high = float(sample.max())
        if high <= low:
            raise InputError("image intensities have no spread to normalise (constant foreground)")
        return IntensityRange(low, high)


@dataclass(frozen=True)
class IntensityPair:
    """A card's `intensity` entry: how inputs enter the network and outputs leave it."""

    source: IntensityMapping
    target: IntensityMapping

    @classmethod
    def from_dict(cls, spec: Dict[str, Any]) -> "IntensityPair":
        if not isinstance(spec, dict) or set(spec) != {"source", "target"}:
            raise ValueError("intensity must be an object with exactly 'source' and 'target'")
        return cls(IntensityMapping.from_dict(spec["source"], "source"),
                   IntensityMapping.from_dict(spec["target"], "target"))

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source.to_dict(), "target": self.target.to_dict()}

    def target_range(self, source_range: IntensityRange) -> IntensityRange:
        """The units the network's output maps back to, at inference (no target volume exists)."""
        if self.target.kind == "ct":
            return self.target.fit(np.zeros(1))
        if self.target.kind == "source" or self.target.output_range in ("source", None):
            return source_range
        return IntensityRange(*self.target.output_range)  # type: ignore[misc]

    def paired_target_range(self, target: np.ndarray, source_range: IntensityRange) -> IntensityRange:
        """The range a training target (any shape, in units) maps with, given its paired source's range."""
        return source_range if self.target.kind == "source" else self.target.fit(target)


def to_output_units(values: np.ndarray, modality: str) -> np.ndarray:
    """Float units -> the modality's output array (rounded, clipped int16 HU for CT)."""
    if modality == "CT":
        return np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    return values.astype(np.float32, copy=False)


def plausibility_warning(values: np.ndarray, modality: str) -> Optional[str]:
    """A warning when intensities look unlike `modality` (e.g. HU fed to an MR model), else None."""
    sample = _sample(values, _WARNING_SAMPLE_SIZE)
    low, high = np.percentile(sample, [1, 99])
    if modality == "CT":
        if low > -200:
            return (f"input intensities ({low:.0f}..{high:.0f} between the 1st and 99th percentiles) show no air "
                    "below -200; this model expects CT in Hounsfield units")
        return None
    negative = float(np.mean(sample < -100))
    if negative > 0.05 or low < -500:
        return (f"{100 * negative:.0f}% of input voxels are below -100 (1st percentile {low:.0f}); "
                f"they look like CT in Hounsfield units, but this model expects {modality}")
    return None


def _sample(values: np.ndarray, size: int = _SAMPLE_SIZE) -> np.ndarray:
    """A strided subsample of `size` to 2 `size` voxels (all of them when fewer), as float32 (deterministic)."""
    flat = np.asarray(values).reshape(-1)
    step = max(1, flat.size // size)
    return flat[::step].astype(np.float32)


__all__: List[str] = ["IntensityRange", "IntensityMapping", "IntensityPair", "MODALITIES", "to_output_units",
                      "plausibility_warning"]
