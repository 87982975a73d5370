"""MetaImage (.mha, .mhd) truncation check: ITK's reader fails on short voxel data with an unrelated reason
(often "No such file or directory"), the real one printed on stderr only; this names it."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from .errors import InputError

_ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


def check_metaimage_data(path: Path) -> None:
    """Refuse an uncompressed MetaImage whose voxel data (inline, or in one data file) is shorter than its
    header says. Compressed, listed or unusual headers are left to ITK."""
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    fields: Dict[str, str] = {}
    header_bytes = 0
    for line in head.split(b"\n"):
        header_bytes += len(line) + 1
        key, separator, value = line.decode("latin-1").partition("=")
        if not separator:
            return
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    else:
        return
    try:
        dims = [int(v) for v in fields["dimsize"].split()]
        element = _ELEMENT_BYTES[fields["elementtype"].upper()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return
    if fields.get("compresseddata", "false").lower() == "true" or fields.get("headersize", "0") != "0":
        return
    data_file = fields["elementdatafile"]
    if data_file.upper() == "LOCAL":
        available = path.stat().st_size - header_bytes
    elif " " in data_file or not (path.parent / data_file).is_file():
        return  # a LIST or pattern of files, or a missing one: ITK says so
    else:
        available = (path.parent / data_file).stat().st_size
    expected = int(np.prod(dims, dtype=np.int64)) * element * channels
    if available < expected:
        raise InputError(f"{path}: file is truncated ({max(available, 0)} of {expected} bytes of voxel data); "
                         "it cannot be read completely")
