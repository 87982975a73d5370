"""Random 3D deformations (affine + smooth nonlinear) of whole volumes: new head shapes and poses from one
anatomy, the same for every map of a subject (SynthSeg manner)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def random_deformation(shape: Sequence[int], rng: np.random.Generator, rotation_deg: float = 12.0,
                       scale: float = 0.1, shear: float = 0.03, shift_voxels: float = 6.0,
                       elastic_voxels: float = 3.0, nodes: int = 6) -> np.ndarray:
    """(3, Z, Y, X) float32 sampling coordinates: output voxel (z, y, x) reads the input at coordinates[:, z, y, x].

    Rotations about each axis in ±rotation_deg, per-axis scale in 1±scale, shears in ±shear and a shift in
    ±shift_voxels about the centre, plus a smooth displacement (cubic from a nodes³ grid) of about
    `elastic_voxels` standard deviation per axis.
    """
    matrix = np.eye(3)
    for axes in ((0, 1), (0, 2), (1, 2)):
        angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
        rotation = np.eye(3)
        a, b = axes
        rotation[a, a] = rotation[b, b] = np.cos(angle)
        rotation[a, b], rotation[b, a] = -np.sin(angle), np.sin(angle)
        matrix = matrix @ rotation
    shearing = np.eye(3) + np.triu(rng.uniform(-shear, shear, size=(3, 3)), k=1)
    matrix = matrix @ shearing @ np.diag(rng.uniform(1.0 - scale, 1.0 + scale, size=3))
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    offset = centre - matrix @ centre + rng.uniform(-shift_voxels, shift_voxels, size=3)
    grid = np.indices(tuple(shape), dtype=np.float32)
    coordinates = np.tensordot(matrix.astype(np.float32), grid, axes=1)
    del grid
    coordinates += offset.astype(np.float32)[:, None, None, None]
    if elastic_voxels > 0:
        for axis in range(3):
            coarse = rng.normal(0.0, elastic_voxels, size=(nodes,) * 3)
            zoom = [s / nodes for s in shape]
            field = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
            coordinates[axis] += field[tuple(slice(0, s) for s in shape)].astype(np.float32)
    return coordinates


def deform(volume: np.ndarray, coordinates: np.ndarray, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """(Z, Y, X) volume sampled at `coordinates` (3, Z', Y', X'); points outside take `fill`."""
    return ndimage.map_coordinates(volume, coordinates, order=order, mode="constant", cval=fill,
                                   output=np.float32)
