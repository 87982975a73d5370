"""Tissue probability maps -> images: spin-echo MR, pseudo-CT in HU, PET uptake.

`tissues` is (C, Z, Y, X) with C = 6 probabilities in TISSUES order summing to 1 per voxel; each image is the
probability-weighted mix of the tissues' signals (partial-volume model).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from scipy import ndimage

from .tissues import TISSUES, MRTissue


def _mix(tissues: np.ndarray, values: Dict[str, float]) -> np.ndarray:
    if tissues.shape[0] != len(TISSUES):
        raise ValueError(f"expected {len(TISSUES)} tissue maps ({', '.join(TISSUES)}), got {tissues.shape[0]}")
    weights = np.array([values[name] for name in TISSUES], dtype=np.float32)
    return np.tensordot(weights, tissues.astype(np.float32, copy=False), axes=1)


def _gaussian_mm(volume: np.ndarray, fwhm_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """(Z, Y, X) `volume` blurred by an isotropic Gaussian of `fwhm_mm`, zero outside the grid."""
    sigma = [fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / s for s in spacing_zyx]
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="constant")


def mr_spin_echo(tissues: np.ndarray, properties: Dict[str, MRTissue], tr_ms: float, te_ms: float) -> np.ndarray:
    """(Z, Y, X) spin-echo signal S = PD (1 - exp(-TR/T1)) exp(-TE/T2), mixed over tissues."""
    signal = {name: p.pd * (1.0 - np.exp(-tr_ms / p.t1_ms)) * np.exp(-te_ms / p.t2_ms)
              for name, p in properties.items()}
    return _mix(tissues, signal)


def pseudo_ct(tissues: np.ndarray, hu: Dict[str, float]) -> np.ndarray:
    """(Z, Y, X) CT numbers in HU, mixed over tissues."""
    return _mix(tissues, hu)


def pet_uptake(tissues: np.ndarray, uptake: Dict[str, float], fwhm_mm: float,
               spacing_zyx: Sequence[float]) -> np.ndarray:
    """(Z, Y, X) tracer concentration blurred by an isotropic Gaussian point-spread function of `fwhm_mm`."""
    return _gaussian_mm(_mix(tissues, uptake), fwhm_mm, spacing_zyx)


def pet_background(activity: np.ndarray, spacing_zyx: Sequence[float], scatter: float, randoms: float,
                   scatter_fwhm_mm: float = 40.0) -> np.ndarray:
    """(Z, Y, X) `activity` plus what a reconstructed PET shows outside the tracer too: scattered coincidences
    left after correction (the activity blurred by a broad Gaussian, `scatter_fwhm_mm`, scaled so its peak is
    `scatter`) and random coincidences (a constant `randoms`), both in the activity's units."""
    broad = _gaussian_mm(activity, scatter_fwhm_mm, spacing_zyx)
    peak = float(broad.max())
    return (activity + (scatter / peak if peak > 0 else 0.0) * broad + randoms).astype(np.float32)
