"""NIfTI-1 integrity checks that ITK's reader skips: truncated voxel data and NaN/Inf voxels.

ITK fills a truncated file's missing voxels with zeros and replaces NaN and Inf voxels by 0 when it reads a
NIfTI file, so neither problem shows in the image it returns; this module reads the header and streams the data.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of the real floating-point types


def check_nifti_data(path: Path) -> None:
    """Refuse a truncated NIfTI-1 file, or one with NaN/Inf voxels: ITK's reader silently fills a truncated
    file's missing voxels with zeros and replaces NaN and Inf voxels by 0, so neither shows in the image read."""
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
