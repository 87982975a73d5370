"""Helpers (not tests): small real SimpleITK volumes with nontrivial geometry, and a DICOM series writer.

Every builder returns a new 3D scalar image of size 24×20×12 (i, j, k) holding a head-like phantom: an
ellipsoid "skull" shell around a "brain" with a smooth intensity gradient, two "ventricles" and a bright
off-centre blob (so no flip or transpose of the content is invisible), values in 0..1000.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

SIZE = (24, 20, 12)  # (i, j, k) as SimpleITK counts; the array is (12, 20, 24)


def head_phantom(size: Sequence[int] = SIZE, dtype: type = np.float32) -> np.ndarray:
    """A [k, j, i] array in 0..1000: skull shell, brain with smooth variation, ventricles, a blob."""
    nk, nj, ni = size[2], size[1], size[0]
    k, j, i = np.meshgrid(np.linspace(-1, 1, nk), np.linspace(-1, 1, nj), np.linspace(-1, 1, ni), indexing="ij")
    radius = np.sqrt((i / 0.9) ** 2 + (j / 0.85) ** 2 + (k / 0.95) ** 2)
    values = np.zeros((nk, nj, ni), dtype=np.float64)
    values[radius < 1.0] = 850.0  # skull
    brain = radius < 0.8
    values[brain] = 400.0 + 150.0 * (0.5 * i + 0.3 * j + 0.2 * k)[brain]  # smooth, asymmetric variation
    for centre_i in (-0.25, 0.25):  # ventricles
        ventricle = ((i - centre_i) / 0.15) ** 2 + (j / 0.35) ** 2 + (k / 0.4) ** 2 < 1.0
        values[ventricle] = 120.0
    blob = ((i - 0.45) / 0.2) ** 2 + ((j + 0.35) / 0.2) ** 2 + ((k - 0.3) / 0.35) ** 2 < 1.0
    values[blob] = 1000.0
    values = np.clip(values, 0.0, 1000.0)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.rint(values).astype(dtype)
    return values.astype(dtype)


def _rotation(angle_x_deg: float, angle_z_deg: float) -> np.ndarray:
    ax, az = math.radians(angle_x_deg), math.radians(angle_z_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def _image(array: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
           direction: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(direction, dtype=float).ravel()))
    return image


def oblique_volume(dtype: type = np.float32) -> sitk.Image:
    """Rotated 20° about x and 20° about z; spacing (0.9, 1.3, 2.5); non-zero origin."""
    return _image(head_phantom(dtype=dtype), (0.9, 1.3, 2.5), (-10.5, 20.25, -33.0), _rotation(20.0, 20.0))


def flipped_volume(dtype: type = np.float32) -> sitk.Image:
    """Index axes permuted and flipped: i runs along y, j along x, k along -z (array order ≠ anatomy)."""
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], dtype=float)
    return _image(head_phantom(dtype=dtype), (1.1, 0.8, 2.0), (12.0, -7.5, 40.0), direction)


def anisotropic_volume(dtype: type = np.float32) -> sitk.Image:
    """Axis-aligned, strongly anisotropic spacing (0.6, 0.75, 4.0), non-zero origin."""
    return _image(head_phantom(dtype=dtype), (0.6, 0.75, 4.0), (-7.2, -7.125, -22.0), np.eye(3))


FIXTURES = {"oblique": oblique_volume, "flipped": flipped_volume, "anisotropic": anisotropic_volume}


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.8g}"
    return text


def write_dicom_series(image: sitk.Image, folder: Union[str, Path], series_number: int = 1,
                       study_uid: str = "1.2.826.0.1.3680043.2.1125.1.4242", modality: str = "MR") -> Tuple[Path, ...]:
    """Write a 3D image as an int16 DICOM series (one file per k slice) into `folder`; returns the files.

    Follows SimpleITK's "Dicom Series From Array" example: KeepOriginalImageUIDOn, and the per-slice tags
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness, InstanceNumber, Modality,
    with one series UID and study UID for all slices. DICOM decimal strings keep ~10 significant digits,
    so compare a read-back with a tolerance of ~1e-4.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    spacing = image.GetSpacing()
    series_uid = f"1.2.826.0.1.3680043.2.1125.2.{series_number}.{zlib.crc32(str(folder).encode())}"
    orientation = "\\".join(_ds(direction[index]) for index in (0, 3, 6, 1, 4, 7))
    shared = [
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0008|0060", modality),
        ("0008|103e", f"MedTranslate test series {series_number}"),
        ("0010|0010", "Phantom^Head"),
        ("0010|0020", "PHANTOM"),
        ("0020|000d", study_uid),
        ("0020|000e", series_uid),
        ("0020|0011", str(series_number)),
        ("0020|0037", orientation),
        ("0028|0030", f"{_ds(spacing[1])}\\{_ds(spacing[0])}"),  # row spacing \ column spacing
        ("0018|0050", _ds(spacing[2])),
    ]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        for tag, value in shared:
            slice_image.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(_ds(p) for p in position))
        slice_image.SetMetaData("0020|0013", str(k + 1))
        slice_image.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")  # SOP instance UID
        path = folder / f"s{series_number}_{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        files.append(path)
    return tuple(files)
