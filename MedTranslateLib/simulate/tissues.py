"""Tissue properties from the literature, per class of SPM's TPM, and their randomised draws.

TPM's six classes, in its order: grey matter, white matter, CSF, bone, soft tissue, air/background.

- MR relaxation at 1.5 T (T1, T2 in ms; proton density relative to CSF): BrainWeb's tissue table (Kwan,
  Evans & Pike 1999, IEEE TMI 18:1085) for CSF, GM and WM; the scalp ("soft tissue") as BrainWeb's fat and
  muscle mixed; bone as cortical bone with a little marrow (short T2, low proton density).
- CT numbers (HU): typical head-CT values (e.g. Hounsfield 1980; Schneider et al. 2000): CSF ~8, GM ~40,
  WM ~28, scalp (fat/muscle/skin) ~-20, skull (cortical bone with diploe) ~1200, air -1000.
- FDG PET uptake relative to grey matter: WM/GM ~0.35 and low uptake in CSF, bone and scalp, as in
  healthy-brain FDG studies; air 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

TISSUES: Tuple[str, ...] = ("gm", "wm", "csf", "bone", "soft", "air")


@dataclass(frozen=True)
class MRTissue:
    """Relaxation times (ms) and proton density (relative) of one tissue."""

    t1_ms: float
    t2_ms: float
    pd: float


_MR_1P5T: Dict[str, MRTissue] = {
    "gm": MRTissue(833.0, 83.0, 0.86),
    "wm": MRTissue(500.0, 70.0, 0.77),
    "csf": MRTissue(2569.0, 329.0, 1.00),
    "bone": MRTissue(300.0, 20.0, 0.12),
    "soft": MRTissue(450.0, 60.0, 0.90),
    "air": MRTissue(1000.0, 1.0, 0.0),
}

# Spin-echo sequences (TR, TE in ms) giving the three classic weightings. PD is the early echo of the dual-echo
# protocol that BrainWeb simulates after ICBM's (TR 3300 / TE 35 ms): CSF > GM > WM, as in the real avg152PD.
SEQUENCES: Dict[str, Tuple[float, float]] = {"T1": (500.0, 15.0), "T2": (4000.0, 100.0), "PD": (3300.0, 35.0)}

_CT_HU: Dict[str, float] = {"gm": 40.0, "wm": 28.0, "csf": 8.0, "bone": 1200.0, "soft": -20.0, "air": -1000.0}
_PET_UPTAKE: Dict[str, float] = {"gm": 1.0, "wm": 0.35, "csf": 0.05, "bone": 0.10, "soft": 0.15, "air": 0.0}


def nominal_mr() -> Dict[str, MRTissue]:
    """The literature values, per tissue."""
    return dict(_MR_1P5T)


def random_mr(rng: np.random.Generator, spread: float = 0.15) -> Dict[str, MRTissue]:
    """Each tissue's T1, T2 and PD scaled by independent factors in [1 - spread, 1 + spread]."""
    def jitter() -> float:
        return float(rng.uniform(1.0 - spread, 1.0 + spread))
    return {name: MRTissue(t.t1_ms * jitter(), t.t2_ms * jitter(), t.pd * jitter()) for name, t in _MR_1P5T.items()}


def nominal_ct_hu() -> Dict[str, float]:
    return dict(_CT_HU)


def random_ct_hu(rng: np.random.Generator) -> Dict[str, float]:
    """Soft-tissue HU jittered by a few HU, the skull's mean density over its clinical range, scalp fat share."""
    hu = dict(_CT_HU)
    for name in ("gm", "wm", "csf"):
        hu[name] += float(rng.normal(0.0, 3.0))
    hu["bone"] = float(rng.uniform(900.0, 1600.0))
    hu["soft"] = float(rng.uniform(-60.0, 40.0))
    return hu


def nominal_pet_uptake() -> Dict[str, float]:
    return dict(_PET_UPTAKE)


def random_pet_uptake(rng: np.random.Generator, bone: Tuple[float, float] = (0.05, 0.2),
                      soft: Tuple[float, float] = (0.08, 0.3)) -> Dict[str, float]:
    """White-matter/grey-matter ratio in [0.25, 0.5]; CSF uptake over a plausible low range, bone and scalp
    (soft tissue) uptake uniform over the ranges given (relative to grey matter)."""
    return {"gm": 1.0, "wm": float(rng.uniform(0.25, 0.5)), "csf": float(rng.uniform(0.02, 0.1)),
            "bone": float(rng.uniform(*bone)), "soft": float(rng.uniform(*soft)), "air": 0.0}
