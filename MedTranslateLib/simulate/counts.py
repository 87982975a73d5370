"""Count statistics for PET: a full-count realisation and low-count versions by Poisson (binomial) thinning.

Image-domain model: each voxel's counts are Poisson with mean proportional to its activity. Keeping each
count independently with probability f (binomial thinning) gives exactly the Poisson image of a scan with
f times the counts; dividing by f puts it back in full-count units. Reconstruction-correlated noise and
scatter are not modelled.
"""
from __future__ import annotations

import numpy as np


def poisson_counts(activity: np.ndarray, mean_counts: float, rng: np.random.Generator) -> np.ndarray:
    """(Z, Y, X) integer counts with mean `activity` scaled so that the activity's 99th percentile gets
    `mean_counts`; returned as float32 counts."""
    scale = mean_counts / max(float(np.percentile(activity, 99)), 1e-12)
    return rng.poisson(np.clip(activity, 0.0, None) * scale).astype(np.float32)


def poisson_thinning(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Keep each count with probability `fraction` (0 < fraction <= 1); returned rescaled by 1/fraction."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    kept = rng.binomial(np.round(counts).astype(np.int64), fraction)
    return (kept / fraction).astype(np.float32)
