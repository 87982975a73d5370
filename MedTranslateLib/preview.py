"""PNG previews: middle slices of several volumes side by side, each in its own display window."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .axes import reorientation

MIN_WIDTH = 400  # pixels; smaller previews are enlarged by a whole factor


def middle_slice(image: sitk.Image, slice_axis: str = "axial") -> np.ndarray:
    """(rows, columns) float32 middle slice in radiological orientation, rows stretched to square pixels."""
    orientation = reorientation(image.GetDirection(), slice_axis)
    view = orientation.apply(sitk.GetArrayViewFromImage(image))
    plane = view[view.shape[0] // 2].astype(np.float32)
    _, row_mm, column_mm = orientation.spacing(image.GetSpacing())
    rows = max(1, int(round(plane.shape[0] * row_mm / column_mm)))
    if rows != plane.shape[0]:
        plane = ndimage.zoom(plane, (rows / plane.shape[0], 1.0), order=1)
    return plane


def to_uint8(plane: np.ndarray) -> np.ndarray:
    """Window at the 1st and 99.5th percentiles -> uint8."""
    low, high = np.percentile(plane, [1, 99.5])
    scaled = (plane - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def side_by_side(images: Sequence[sitk.Image], path: Path, slice_axes: Sequence[str] = ("axial", "coronal")) -> Path:
    """Write a PNG: one column per image, one row per slicing axis (middle slices), 4-pixel gaps."""
    rows: List[np.ndarray] = []
    for axis in slice_axes:
        planes = [to_uint8(middle_slice(image, axis)) for image in images]
        height = max(p.shape[0] for p in planes)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4))) for p in planes]
        rows.append(np.concatenate(padded, axis=1))
    width = max(r.shape[1] for r in rows)
    canvas = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]))) for r in rows], axis=0)
    zoom = max(1, MIN_WIDTH // canvas.shape[1])  # small volumes: whole-pixel enlargement, no smoothing
    canvas = np.repeat(np.repeat(canvas, zoom, axis=0), zoom, axis=1)
    sitk.WriteImage(sitk.GetImageFromArray(canvas), str(path))
    return Path(path)
