"""Domain randomisation (in the manner of SynthSeg/SynthSR): bias, noise, resolution, gamma, and the fine texture
within tissues that real scans show and smooth tissue maps lack: speckle, and sheets that slices cut as sharp
lines."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float, nodes: int = 4) -> np.ndarray:
    """(Z, Y, X) smooth multiplicative field exp(f), f cubic-interpolated from a nodes³ grid of N(0, strength)."""
    coarse = rng.normal(0.0, strength, size=(nodes,) * 3)
    zoom = [s / nodes for s in shape]
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    return np.exp(field[tuple(slice(0, s) for s in shape)]).astype(np.float32)


def smoothed_noise(shape: Sequence[int], rng: np.random.Generator, sigma_voxels: float) -> np.ndarray:
    """(Z, Y, X) float32 white noise smoothed by a Gaussian of `sigma_voxels`: the seed of both textures."""
    return ndimage.gaussian_filter(rng.standard_normal(size=tuple(shape), dtype=np.float32), sigma_voxels)


def tissue_texture(shape: Sequence[int], rng: np.random.Generator, amplitude: float,
                   sigma_voxels: float) -> np.ndarray:
    """(Z, Y, X) multiplicative field 1 + amplitude * f, f white noise smoothed by a Gaussian of `sigma_voxels`
    and scaled to unit standard deviation (clipped at 0): fine structure within tissues (small vessels, sulci,
    partial volumes) that a real scan shows and a clean scan of the same head keeps, unlike noise."""
    field = smoothed_noise(shape, rng, sigma_voxels)
    field /= max(float(field.std()), 1e-12)
    return np.clip(1.0 + amplitude * field, 0.0, None).astype(np.float32, copy=False)


def sheet_texture(shape: Sequence[int], rng: np.random.Generator, amplitude: float, scale_voxels: float,
                  width_voxels: float) -> np.ndarray:
    """(Z, Y, X) multiplicative field 1 + amplitude * exp(-d² / 2 width²), d the distance in voxels to the zero
    level set of white noise smoothed by a Gaussian of `scale_voxels`: thin folded sheets, which every slice cuts
    as sharp curved lines (sulci, vessels, the edges of small structures). A negative amplitude draws them dark."""
    field = smoothed_noise(shape, rng, scale_voxels)
    slope = np.sqrt(sum(g * g for g in np.gradient(field)))
    distance = field / np.maximum(slope, float(np.mean(slope)) * 0.1)  # |f| / |grad f|: near the level set
    lines = np.exp(-0.5 * (distance / width_voxels) ** 2)
    return np.clip(1.0 + amplitude * lines, 0.0, None).astype(np.float32, copy=False)


def rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation `sigma` (MR noise)."""
    real = rng.normal(0.0, sigma, size=image.shape)
    imaginary = rng.normal(0.0, sigma, size=image.shape)
    return np.sqrt((image + real) ** 2 + imaginary * imaginary).astype(np.float32)


def blur_resolution(image: np.ndarray, fwhm_voxels: Sequence[float]) -> np.ndarray:
    """Lower resolution: a Gaussian of the given FWHM (voxels) per axis, e.g. thick slices along Z."""
    sigma = [f / (2.0 * np.sqrt(2.0 * np.log(2.0))) for f in fwhm_voxels]
    return ndimage.gaussian_filter(image, sigma=sigma, mode="nearest").astype(np.float32)


def gamma(image: np.ndarray, exponent: float) -> np.ndarray:
    """Non-linear contrast change: (image / max)^exponent * max, for non-negative images."""
    top = float(image.max())
    if top <= 0:
        return image.astype(np.float32)
    return (np.clip(image / top, 0.0, None) ** exponent * top).astype(np.float32)
