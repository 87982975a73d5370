"""Reading a DICOM folder honestly: one series (or the one asked for), every slice readable, one size, one
orientation, evenly spaced positions. ITK's series reader would instead drop unreadable files, stack slices
of other sizes or duplicate positions, and spread missing slices evenly over a uniform grid, saying so only
in a warning on stderr."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError

SPACING_TOLERANCE = 0.01   # relative deviation of a slice gap from the median gap that is still even
ORIENTATION_TOLERANCE = 1e-4


def read_dicom_folder(folder: Path, series: Optional[str] = None) -> sitk.Image:
    """The folder's one DICOM series, or the series with UID `series`, as a volume; refused with one line when
    the folder holds several series (listed) or the slices do not make one evenly spaced volume."""
    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise InputError(f"{folder}: folder holds no DICOM series")
    listed = {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}
    _check_unread_files(folder, [file for files in listed.values() for file in files])
    if series is None and len(uids) > 1:
        choices = "; ".join(f"{uid} ({len(listed[uid])} files{_description(listed[uid][0])})" for uid in uids)
        raise InputError(f"{folder}: folder holds {len(uids)} DICOM series; choose one with --series UID: {choices}")
    if series is not None and series not in listed:
        raise InputError(f"{folder}: no DICOM series with UID {series} (series: {', '.join(uids)})")
    files = listed[series if series is not None else uids[0]]
    _check_slices(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise InputError(f"{folder}: DICOM series cannot be read ({lines[-1] if lines else 'unknown error'})") from None


def _description(file: str) -> str:
    reader = _information(file)
    if reader is None or not reader.HasMetaDataKey("0008|103e"):
        return ""
    return f", '{reader.GetMetaData('0008|103e').strip()}'"


def _information(file: str) -> Optional[sitk.ImageFileReader]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def _check_unread_files(folder: Path, series_files: Sequence[str]) -> None:
    """Refuse a folder with DICOM files (the 'DICM' marker) that no series took: truncated or damaged slices
    that GDCM skips without a word."""
    taken = {Path(file).resolve() for file in series_files}
    unread = [path.name for path in sorted(folder.iterdir())
              if path.is_file() and path.resolve() not in taken and is_dicom_file(path)]
    if unread:
        raise InputError(f"{folder}: {len(unread)} DICOM file(s) cannot be read (truncated or damaged?): "
                         f"{', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}")


def is_dicom_file(path: Path) -> bool:
    """True when `path` carries the DICOM Part 10 marker ('DICM' at byte 128)."""
    with open(path, "rb") as stream:
        return stream.read(132)[128:] == b"DICM"


def _check_slices(folder: Path, files: Sequence[str]) -> None:
    """Refuse slices of mixed sizes or orientations, duplicate positions, and uneven or missing positions."""
    sizes, orientations, positions = [], [], []
    for file in files:
        reader = _information(file)
        if reader is None:
            raise InputError(f"{folder}: DICOM file {Path(file).name} cannot be read (truncated or damaged?)")
        sizes.append(reader.GetSize()[:2])
        orientation, position = _geometry(reader)
        orientations.append(orientation)
        positions.append(position)
    if len(set(sizes)) > 1:
        raise InputError(f"{folder}: DICOM series mixes slice sizes ({', '.join(map(str, sorted(set(sizes))))}); "
                         "it is not one volume")
    if len(files) < 2 or any(p is None for p in positions) or any(o is None for o in orientations):
        return  # one slice, or no geometry tags: ITK's own defaults apply
    if max(np.abs(o - orientations[0]).max() for o in orientations) > ORIENTATION_TOLERANCE:
        raise InputError(f"{folder}: DICOM series mixes slice orientations; it is not one volume")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    depths = np.sort([float(np.dot(p, normal)) for p in positions])
    _check_gaps(folder, np.diff(depths))


def _geometry(reader: sitk.ImageFileReader) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(ImageOrientationPatient as 6 numbers, ImagePositionPatient as 3), None where a tag is absent or bad."""
    values: List[Optional[np.ndarray]] = []
    for tag, count in (("0020|0037", 6), ("0020|0032", 3)):
        try:
            numbers = np.array([float(v) for v in reader.GetMetaData(tag).split("\\")], dtype=np.float64)
        except (RuntimeError, ValueError):
            numbers = None
        values.append(numbers if numbers is not None and numbers.shape == (count,) else None)
    return values[0], values[1]


def _check_gaps(folder: Path, gaps: np.ndarray) -> None:
    """`gaps`: distances (mm) between consecutive slice positions along the slice normal, sorted."""
    median = float(np.median(gaps))
    duplicates = int(np.count_nonzero(gaps <= SPACING_TOLERANCE * max(median, 1e-6)))
    if duplicates:
        raise InputError(f"{folder}: DICOM series has {duplicates} duplicate slice position(s); it is not one "
                         "volume (two acquisitions in one series?)")
    if np.abs(gaps - median).max() <= SPACING_TOLERANCE * median + 1e-3:
        return
    widest = float(gaps.max())
    if widest > 1.5 * median:
        raise InputError(f"{folder}: DICOM series has missing slices (a gap of {widest:.3g} mm where slices are "
                         f"{median:.3g} mm apart)")
    raise InputError(f"{folder}: DICOM series has uneven slice spacing ({float(gaps.min()):.3g} to "
                     f"{widest:.3g} mm); it cannot be put on one grid without resampling")
