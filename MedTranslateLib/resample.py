"""In-plane resampling to a model's training spacing, and back onto the input grid."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .axes import Reorientation

SPACING_TOLERANCE = 0.02  # relative; closer spacings are used as they are
SLAB_SLICES = 16          # k-slices resampled at a time back onto the input grid


def in_plane_spacing_target(image: sitk.Image, reorientation: Reorientation,
                            spacing_mm: Optional[Sequence[float]]) -> Optional[tuple]:
    """The (i, j, k) spacing to resample to, or None when the image already has the model's in-plane spacing."""
    if not spacing_mm:
        return None
    spacing = list(image.GetSpacing())
    changed = False
    for array_axis, wanted in zip(reorientation.axes[1:], spacing_mm):  # row, column axes
        index_axis = 2 - array_axis
        if abs(spacing[index_axis] - wanted) > SPACING_TOLERANCE * wanted:
            spacing[index_axis] = float(wanted)
            changed = True
    return tuple(spacing) if changed else None


def resample_to_spacing(image: sitk.Image, spacing: Sequence[float], background: Optional[float] = None) -> sitk.Image:
    """Linear resampling onto a grid with the same origin and direction covering the same extent (float32);
    points outside take `background` (default: the image's minimum)."""
    size = [max(1, int(round(n * old / new))) for n, old, new in zip(image.GetSize(), image.GetSpacing(), spacing)]
    if background is None:
        background = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), tuple(spacing),
                         image.GetDirection(), background, sitk.sitkFloat32)


def resample_onto_array(image: sitk.Image, reference: sitk.Image, background: float, out: np.ndarray,
                        slab: int = SLAB_SLICES, accumulate: bool = False) -> None:
    """Linear resampling of `image` onto `reference`'s grid, into `out` ((Z, Y, X) float32, the reference's
    array shape) or added to it (`accumulate`), `slab` k-slices at a time so that no second full-size image
    exists beside it."""
    size_x, size_y, size_z = reference.GetSize()
    for start in range(0, size_z, slab):
        count = min(slab, size_z - start)
        origin = reference.TransformIndexToPhysicalPoint((0, 0, start))
        part = sitk.Resample(image, (size_x, size_y, count), sitk.Transform(), sitk.sitkLinear, origin,
                             reference.GetSpacing(), reference.GetDirection(), background, sitk.sitkFloat32)
        if accumulate:
            out[start:start + count] += sitk.GetArrayViewFromImage(part)
        else:
            out[start:start + count] = sitk.GetArrayViewFromImage(part)
