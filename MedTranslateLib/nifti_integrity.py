"""NIfTI-1 integrity checks that ITK's reader skips: invalid dimensions, a sheared sform, truncated voxel
data and NaN/Inf voxels.

ITK reads a negative or zero dimension as 1, replaces a sheared or rescaled sform by the qform (a warning on
stderr only), fills a truncated file's missing voxels with zeros and replaces NaN and Inf voxels by 0, so none of
these shows in the image it returns; this module reads the header and streams the data.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of the real floating-point types
SFORM_TOLERANCE = 1e-3  # largest skew (cosine between axes) and relative scale error of an accepted sform


def _check_sform(path: Path, header: bytes, endian: str) -> None:
    """Refuse an sform (when its code says it is used) that is not a rotation scaled by the voxel size: ITK
    would drop it for the qform, silently moving the image."""
    sform_code = struct.unpack(endian + "h", header[254:256])[0]
    if sform_code <= 0:
        return
    matrix = np.array(struct.unpack(endian + "12f", header[280:328]), dtype=np.float64).reshape(3, 4)[:, :3]
    pixdim = np.abs(np.array(struct.unpack(endian + "3f", header[80:92]), dtype=np.float64))
    scales = np.linalg.norm(matrix, axis=0)
    if not np.all(scales > 0) or not np.all(np.isfinite(matrix)):
        raise InputError(f"{path}: NIfTI sform is degenerate (a zero or non-finite column)")
    rotation = matrix / scales
    sheared = np.abs(rotation.T @ rotation - np.eye(3)).max() > SFORM_TOLERANCE
    rescaled = np.any(np.abs(scales - pixdim) > SFORM_TOLERANCE * np.maximum(pixdim, 1e-6))
    if sheared or rescaled:
        raise InputError(f"{path}: NIfTI sform is {'sheared' if sheared else 'scaled unlike the voxel size'}; "
                         "ITK would silently use the qform instead. Resample it onto an orthogonal grid first")


def check_nifti_data(path: Path) -> None:
    """Refuse a NIfTI-1 file with invalid dimensions, a sheared sform, truncated data or NaN/Inf voxels: ITK's
    reader lets each of them through silently (see the module's docstring)."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    compressed = name.endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            header = stream.read(348)
            endians = [e for e in "<>" if len(header) == 348 and struct.unpack(e + "i", header[:4])[0] == 348]
            if not endians:
                return  # not a NIfTI-1 header; ITK has judged the file
            endian = endians[0]
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = max(348, int(struct.unpack(endian + "f", header[108:112])[0]))
            if not 1 <= dims[0] <= 7 or bitpix <= 0:
                return
            if min(dims[1:dims[0] + 1]) < 1:
                raise InputError(f"{path}: NIfTI header has invalid dimensions {dims[1:dims[0] + 1]} "
                                 "(each must be at least 1)")
            _check_sform(path, header, endian)
            expected = int(np.prod(dims[1:dims[0] + 1], dtype=np.int64)) * bitpix // 8
            dtype = np.dtype(endian + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
            actual, bad = 0, 0
            if dtype is None and not compressed:
                actual = path.stat().st_size - offset
            else:  # a gzip stream's length, and float voxels, are only known by reading the data
                stream.seek(offset)
                while actual < expected:
                    chunk = stream.read(min(1 << 24, expected - actual))
                    if not chunk:
                        break
                    actual += len(chunk)
                    if dtype is not None:
                        values = np.frombuffer(chunk, dtype, len(chunk) // dtype.itemsize)
                        bad += int(np.count_nonzero(~np.isfinite(values)))
    except (EOFError, OSError, zlib.error):
        raise InputError(f"{path}: file is truncated or corrupt (its compressed data ends early)") from None
    if actual < expected:
        raise InputError(f"{path}: file is truncated ({actual} of {expected} bytes of voxel data); "
                         "it cannot be read completely")
    if bad:
        raise InputError(f"{path}: has {bad} NaN or infinite voxels; replace them before translating")
