"""In-plane resampling to a model's training spacing, and back onto the input grid."""
from __future__ import annotations

from typing import Optional, Sequence

import SimpleITK as sitk

from .axes import Reorientation

SPACING_TOLERANCE = 0.02  # relative; closer spacings are used as they are


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


def resample_to_spacing(image: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """Linear resampling onto a grid with the same origin and direction covering the same extent (float32)."""
    size = [max(1, int(round(n * old / new))) for n, old, new in zip(image.GetSize(), image.GetSpacing(), spacing)]
    background = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), tuple(spacing),
                         image.GetDirection(), background, sitk.sitkFloat32)


def resample_onto(image: sitk.Image, reference: sitk.Image, background: float) -> sitk.Image:
    """Linear resampling of `image` onto `reference`'s grid (float32)."""
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, background, sitk.sitkFloat32)
