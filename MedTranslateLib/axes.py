"""Anatomical slicing axes found from direction cosines, as views of the voxel array (no copies).

SimpleITK works in LPS: physical x grows to the patient's Left, y to Posterior, z to Superior. A voxel array
from `sitk.GetArrayViewFromImage` is indexed [k, j, i]. `canonical_view` re-indexes it as
(slice, row, column) so that every model sees slices in one radiological orientation whatever the file's
voxel order:

- axial:    slices inferior→superior, rows anterior→posterior, columns right→left
- coronal:  slices anterior→posterior, rows superior→inferior, columns right→left
- sagittal: slices right→left, rows superior→inferior, columns anterior→posterior
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

SLICE_AXES = ("axial", "coronal", "sagittal")

# For each slicing axis: (physical LPS axis, sign) for the slice, row and column directions.
_LAYOUT = {
    "axial": ((2, +1), (1, +1), (0, +1)),
    "coronal": ((1, +1), (2, -1), (0, +1)),
    "sagittal": ((0, +1), (2, -1), (1, +1)),
}


@dataclass(frozen=True)
class Reorientation:
    """How to take a [k, j, i] array to (slice, row, column): transpose by `axes`, then flip `flips`."""

    axes: Tuple[int, int, int]
    flips: Tuple[bool, bool, bool]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """[k, j, i] array -> (slice, row, column) view."""
        view = array.transpose(self.axes)
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def undo(self, array: np.ndarray) -> np.ndarray:
        """(slice, row, column) array -> [k, j, i] view."""
        view = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return view.transpose(np.argsort(self.axes))

    def spacing(self, spacing_ijk: Sequence[float]) -> Tuple[float, float, float]:
        """(slice, row, column) spacing from SimpleITK's (i, j, k) spacing."""
        per_array_axis = tuple(spacing_ijk)[::-1]
        return tuple(float(per_array_axis[a]) for a in self.axes)  # type: ignore[return-value]


def index_axes_to_physical(direction: Sequence[float]) -> Tuple[Tuple[int, int], ...]:
    """For each index axis i, j, k: (nearest physical LPS axis, sign), a one-to-one assignment.

    Oblique volumes get the assignment that maximises the summed |cosine|, so no two index axes claim one
    physical axis.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)  # column c = direction of index axis c
    best, best_score = None, -1.0
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        score = sum(abs(matrix[perm[c], c]) for c in range(3))
        if score > best_score + 1e-9:
            best, best_score = perm, score
    assert best is not None
    return tuple((best[c], 1 if matrix[best[c], c] >= 0 else -1) for c in range(3))


def reorientation(direction: Sequence[float], slice_axis: str) -> Reorientation:
    """The transpose and flips that present a volume with this direction as `slice_axis` slices."""
    if slice_axis not in _LAYOUT:
        raise ValueError(f"unknown slice axis '{slice_axis}' (known: {', '.join(SLICE_AXES)})")
    mapping = index_axes_to_physical(direction)
    physical_to_index = {phys: (index, sign) for index, (phys, sign) in enumerate(mapping)}
    axes, flips = [], []
    for physical, wanted_sign in _LAYOUT[slice_axis]:
        index, sign = physical_to_index[physical]
        axes.append(2 - index)  # array axis of index axis i is 2 - i
        flips.append(sign != wanted_sign)
    return Reorientation(tuple(axes), tuple(flips))  # type: ignore[arg-type]
