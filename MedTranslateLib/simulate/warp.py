"""Random in-plane warps (affine + smooth elastic), the same for every slice and every volume of a subject.

Warping only within slices keeps each slice's anatomy at its own Z, so a slab held out by Z stays unseen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class InPlaneWarp:
    """Sampling map for (Y, X) slices: output pixel (y, x) reads input (rows[y, x], cols[y, x])."""

    rows: np.ndarray  # (Y, X) float
    cols: np.ndarray  # (Y, X) float

    def apply(self, volume: np.ndarray, order: int = 1, fill: Optional[float] = None) -> np.ndarray:
        """Warp a (Z, Y, X) or (C, Z, Y, X) array; outside points take `fill` (default: the volume's minimum)."""
        if volume.ndim == 4:
            return np.stack([self.apply(channel, order, fill) for channel in volume])
        cval = float(volume.min()) if fill is None else fill
        out = np.empty(volume.shape, dtype=np.float32)
        coordinates = np.stack([self.rows, self.cols])
        for index, plane in enumerate(volume):
            out[index] = ndimage.map_coordinates(plane, coordinates, order=order, mode="constant", cval=cval)
        return out


def random_warp(shape_yx: tuple, rng: np.random.Generator, rotation_deg: float = 10.0, scale: float = 0.1,
                shear: float = 0.05, shift_voxels: float = 4.0, elastic_voxels: float = 2.0) -> InPlaneWarp:
    """Rotation in ±rotation_deg, per-axis scale in 1±scale, shear in ±shear, shift in ±shift_voxels about
    the centre, plus a smooth displacement of up to about `elastic_voxels` (cubic from a 5×5 grid)."""
    height, width = shape_yx
    angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scaling = np.diag(rng.uniform(1.0 - scale, 1.0 + scale, size=2))
    shearing = np.array([[1.0, rng.uniform(-shear, shear)], [0.0, 1.0]])
    matrix = rotation @ shearing @ scaling
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    shift = rng.uniform(-shift_voxels, shift_voxels, size=2)
    grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij")).reshape(2, -1)
    source = matrix @ (grid - centre[:, None]) + centre[:, None] + shift[:, None]
    rows, cols = source.reshape(2, height, width)
    if elastic_voxels > 0:
        for target in (rows, cols):
            coarse = rng.normal(0.0, elastic_voxels / 2.0, size=(5, 5))
            target += ndimage.zoom(coarse, (height / 5.0, width / 5.0), order=3, grid_mode=True,
                                   mode="nearest")[:height, :width]
    return InPlaneWarp(rows, cols)
