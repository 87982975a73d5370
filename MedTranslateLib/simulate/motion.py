"""Rigid head motion simulated in k-space, slice by slice (2D multi-slice acquisition).

The phase-encoding lines of each slice's k-space are acquired in order; at a few random moments the head
moves (in-plane rotation and translation) and stays there. Each segment of lines is taken from the Fourier
transform of a rigidly moved copy of the image, and the image is the magnitude of the inverse transform:
ghosting and blurring along the phase-encoding direction, as in real scans. The segment that holds the
centre of k-space keeps the reference pose, so the corrupted image stays registered to the clean one.

`kspace_motion` moves every slice alike (interleaved multi-slice: a move hits the same lines of all slices);
`slicewise_motion` draws each slice's own moves and phase-encoding axis (sequential acquisition, and far more
varied training pairs from one volume).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class MotionEvent:
    """From phase-encoding line `start_fraction` (0..1 of the lines) on, the head sits at this pose."""

    start_fraction: float
    rotation_deg: float
    shift_voxels: Sequence[float]  # (rows, columns)


def random_motion(rng: np.random.Generator, events: int, max_rotation_deg: float = 4.0,
                  max_shift_voxels: float = 2.0) -> List[MotionEvent]:
    """`events` moves at random moments; the pose holding the k-space centre is the reference (zero)."""
    starts = np.sort(rng.uniform(0.0, 1.0, size=events))
    poses = [MotionEvent(float(s), float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
                         tuple(rng.uniform(-max_shift_voxels, max_shift_voxels, size=2)))
             for s in starts]
    return poses


def move_affine(shape: Sequence[int], rotation_deg: float, shift: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(2, 2) matrix and (2,) offset of a head moved in a slice of `shape`: rotated by `rotation_deg` about the
    slice's centre and shifted by `shift` (rows, columns) pixels; the moved slice's pixel o shows the still slice
    at matrix @ o + offset."""
    angle = np.deg2rad(rotation_deg)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = (np.array(shape) - 1) / 2.0
    return matrix, centre - matrix @ centre - np.asarray(shift, dtype=float)


def _move(plane: np.ndarray, rotation_deg: float, shift: Sequence[float]) -> np.ndarray:
    matrix, offset = move_affine(plane.shape, rotation_deg, shift)
    return ndimage.affine_transform(plane, matrix, offset=offset, order=1, mode="constant", cval=0.0)


@dataclass(frozen=True)
class Segment:
    """Phase-encoding lines first..last-1 (of the centred k-space) acquired with the head at this pose, relative
    to the reference pose (the segment holding the k-space centre, `reference` True, is at zero)."""

    first: int
    last: int
    rotation_deg: float
    shift_voxels: Tuple[float, float]  # (rows, columns)
    reference: bool


def motion_segments(events: Sequence[MotionEvent], lines: int) -> List[Segment]:
    """The non-empty segments of `lines` phase-encoding lines that `events` cut, each with its pose relative to the
    segment that holds the k-space centre (line lines // 2)."""
    centre_line = lines // 2
    boundaries = [0] + [int(round(e.start_fraction * lines)) for e in events] + [lines]
    poses = [None] + list(events)  # None: the reference pose, before the first move
    centre_segment = max(i for i in range(len(poses)) if boundaries[i] <= centre_line)
    reference = poses[centre_segment]
    segments = []
    for index, pose in enumerate(poses):
        first, last = boundaries[index], boundaries[index + 1]
        if last <= first:
            continue
        rotation = (pose.rotation_deg if pose else 0.0) - (reference.rotation_deg if reference else 0.0)
        shift = np.subtract(pose.shift_voxels if pose else (0.0, 0.0),
                            reference.shift_voxels if reference else (0.0, 0.0))
        segments.append(Segment(first, last, float(rotation), (float(shift[0]), float(shift[1])),
                                index == centre_segment))
    return segments


def kspace_motion(volume: np.ndarray, events: Sequence[MotionEvent], phase_axis: int = 0) -> np.ndarray:
    """(Z, Y, X) magnitude image with motion; phase encoding along Y (phase_axis 0) or X (1) of each slice."""
    out = np.empty(volume.shape, dtype=np.float32)
    moved_segments = [s for s in motion_segments(events, volume.shape[1 + phase_axis]) if not s.reference]
    for index, plane in enumerate(volume.astype(np.float32, copy=False)):
        kspace = np.fft.fftshift(np.fft.fft2(plane))
        for segment in moved_segments:
            moved = np.fft.fftshift(np.fft.fft2(_move(plane, segment.rotation_deg, segment.shift_voxels)))
            region = [slice(None), slice(None)]
            region[phase_axis] = slice(segment.first, segment.last)
            kspace[tuple(region)] = moved[tuple(region)]
        out[index] = np.abs(np.fft.ifft2(np.fft.ifftshift(kspace)))
    return out


def slicewise_motion(volume: np.ndarray, rng: np.random.Generator, moves: Tuple[int, int] = (1, 6),
                     max_rotation_deg: float = 4.0, max_shift_voxels: float = 2.0) -> np.ndarray:
    """(Z, Y, X) magnitude image where each slice has its own `moves[0]..moves[1]` random moves and a random
    phase-encoding axis (Y or X)."""
    out = np.empty(volume.shape, dtype=np.float32)
    for index, plane in enumerate(volume):
        events = random_motion(rng, int(rng.integers(moves[0], moves[1] + 1)), max_rotation_deg, max_shift_voxels)
        out[index] = kspace_motion(plane[None], events, phase_axis=int(rng.integers(0, 2)))[0]
    return out
