"""Reading, validating and atomically writing volumes through SimpleITK.

Every image the library hands on is a 3D scalar `SimpleITK.Image`; a 2D input becomes a one-slice volume.
"""
from __future__ import annotations

import os
import shutil
import secrets
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .dicom_series import read_dicom_folder
from .errors import InputError
from .memory import check_memory
from .metaimage_integrity import check_metaimage_data
from .nifti_integrity import check_nifti_data

PathLike = Union[str, "os.PathLike[str]"]

WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# voxel types a translation reads: SimpleITK's scalar types (label maps, complex and vector types are refused)
SCALAR_TYPES = frozenset((sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32,
                          sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64, sitk.sitkFloat32, sitk.sitkFloat64))
VOXEL_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
               sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
FLOAT32_MAX = float(np.finfo(np.float32).max)
DIRECTION_TOLERANCE = 1e-4  # largest |DᵀD − I| of an accepted direction matrix (float rounding, not shear)


def volume_extension(path: PathLike) -> str:
    """The file's extension, `.nii.gz` counted as one; lower case."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def read_volume(path: PathLike, series: Optional[str] = None) -> sitk.Image:
    """Read a NIfTI/NRRD/MHA/... file, or a DICOM folder's one series (the series with UID `series` when it
    holds several), as a validated 3D scalar image."""
    path = Path(path)
    check_regular(path)
    if series is not None and not path.is_dir():
        raise InputError(f"{path}: --series picks a series in a DICOM folder; this is a file")
    image = read_dicom_folder(path, series) if path.is_dir() else _read_file(path, "an image")
    return as_volume(image, str(path))


def read_mask(path: PathLike) -> sitk.Image:
    """Read a mask volume (nonzero = inside) validated like an input, except that a constant mask is allowed
    as long as it selects something."""
    path = Path(path)
    check_regular(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; a mask is one image file")
    image = _read_file(path, "a mask")
    values = sitk.GetArrayViewFromImage(image) if image.GetPixelID() in SCALAR_TYPES else None
    if values is None or image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (2, 3):
        raise InputError(f"{path}: a mask must be a 2D or 3D scalar image, not {image.GetDimension()}D "
                         f"'{image.GetPixelIDTypeAsString()}'")
    if not np.any(values != 0):
        raise InputError(f"{path}: the mask is empty (every voxel is 0)")
    return _one_slice_volume(image) if image.GetDimension() == 2 else image


def _read_file(path: Path, what: str) -> sitk.Image:
    """One image file through SimpleITK, its failure one line naming `what` it was read as; NIfTI and MetaImage
    headers and data checked for what ITK's readers let through or misreport."""
    if volume_extension(path) in (".mha", ".mhd"):
        check_metaimage_data(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        voxels = float(np.prod(reader.GetSize(), dtype=np.float64))
        stored = VOXEL_BYTES.get(reader.GetPixelID(), 8) * reader.GetNumberOfComponents()
        check_memory(voxels * (stored + 8),  # the image, then a float32 result and one float32 working copy
                     f"{path}: reading and translating its {'×'.join(map(str, reader.GetSize()))} voxels")
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{path}: cannot be read as {what} ({_first_line(error)})") from None
    check_nifti_data(path)
    return image


def input_files(path: PathLike) -> List[Path]:
    """Every file an input is read from: the file, the data files its header names (.mhd, .nhdr), or the
    files of a DICOM folder."""
    path = Path(path)
    if path.is_dir():
        return [file for file in path.iterdir() if file.is_file()]
    files = [path]
    if volume_extension(path) in (".mhd", ".nhdr") and path.is_file():
        files += [path.parent / name for name in _data_file_names(path)]
    return files


def _data_file_names(header: Path) -> List[str]:
    """The data files a MetaImage (ElementDataFile) or detached NRRD (data file) header names; a LIST names
    one per following line."""
    with open(header, "rb") as stream:
        lines = stream.read(1 << 16).decode("latin-1").splitlines()
    for number, line in enumerate(lines):
        key, separator, value = line.partition("=" if header.suffix.lower() == ".mhd" else ":")
        if separator and key.strip().lower() in ("elementdatafile", "data file", "datafile"):
            value = value.strip()
            if value.split()[:1] == ["LIST"]:
                return [name.strip() for name in lines[number + 1:] if name.strip()]
            return [value.split()[0]] if value else []
    return []


def check_regular(path: Path) -> None:
    """Refuse at once a path that does not exist or is neither a regular file nor a folder (a FIFO would block
    the reader forever; a device or socket is no image)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not (path.is_file() or path.is_dir()):
        raise InputError(f"{path}: is not a regular file or a folder (a FIFO, device or socket)")


def as_volume(image: sitk.Image, name: str = "image") -> sitk.Image:
    """Check `image` is a translatable scalar volume; a 2D image becomes a one-slice 3D volume."""
    if not isinstance(image, sitk.Image):
        hint = "; read it first (read_volume) or use translate_file" if isinstance(image, (str, os.PathLike)) else ""
        raise InputError(f"{name}: expected a SimpleITK.Image, got {type(image).__name__}{hint}")
    if image.GetPixelID() not in SCALAR_TYPES and image.GetNumberOfComponentsPerPixel() == 1:
        raise InputError(f"{name}: voxels of type '{image.GetPixelIDTypeAsString()}' (a label map or complex "
                         "image); a scalar (grayscale) volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector); "
            "a scalar (grayscale) volume is needed"
        )
    dimension = image.GetDimension()
    if dimension == 2:
        image = _one_slice_volume(image)
    elif dimension != 3:
        raise InputError(f"{name}: is {dimension}D (size {image.GetSize()}); a 3D volume is needed")
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    skew = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if not skew <= DIRECTION_TOLERANCE:
        raise InputError(f"{name}: its direction matrix is not orthonormal (axes sheared or scaled, by up to "
                         f"{skew:.3g}); the output could not keep it exactly. Resample it onto an orthogonal "
                         "grid first")
    size = image.GetSize()
    if sum(s > 1 for s in size) < 2:
        raise InputError(f"{name}: size {size} is a point or a line, not an image")
    values = sitk.GetArrayViewFromImage(image)
    low, high = values.min(), values.max()  # NaN propagates into both, an infinity into one: no other pass
    if np.issubdtype(values.dtype, np.floating):
        if not (np.isfinite(low) and np.isfinite(high)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise InputError(f"{name}: has {bad} NaN or infinite voxels; replace them before translating")
        if max(-float(low), float(high)) > FLOAT32_MAX:
            raise InputError(f"{name}: has values beyond the float32 range (±{FLOAT32_MAX:.3g}); rescale it first")
    if low == high:
        raise InputError(f"{name}: is constant (every voxel is {low}); there is nothing to translate")
    return image


def _one_slice_volume(image: sitk.Image) -> sitk.Image:
    """(H, W) image -> (1, H, W) volume keeping its in-plane spacing, origin and direction."""
    volume = sitk.JoinSeries(image)
    direction_2d = np.array(image.GetDirection()).reshape(2, 2)
    direction = np.eye(3)
    direction[:2, :2] = direction_2d
    volume.SetDirection(direction.ravel().tolist())
    volume.SetOrigin(tuple(image.GetOrigin()) + (0.0,))
    volume.SetSpacing(tuple(image.GetSpacing()) + (1.0,))
    return volume


def write_volume(image: sitk.Image, path: PathLike, compress: bool = True,
                 protected: Iterable[Path] = ()) -> None:
    """Write atomically: files go to a temporary folder beside the target, are checked complete, then are
    renamed into place; a failed or short write (disk full, quota, I/O error) leaves the old files as they were.

    Header+data formats (.mhd, .nhdr) keep their file names, so the header's data reference stays valid.
    `protected` files (the input's) are never replaced: a data file that would land on one is refused.
    """
    path = Path(path)
    folder = check_writable(path)
    extension = volume_extension(path)
    # named before it exists, so that a signal arriving just after its creation still removes it; a long name
    # must not push the staging folder's name past the file-name limit
    staging = folder / f".{path.name[:64]}.{secrets.token_hex(8)}.tmp"
    try:
        staging.mkdir(mode=0o700)
        sitk.WriteImage(image, str(staging / path.name), compress and extension != ".nii")
        _check_written(image, staging / path.name, path)
        written = sorted(staging.iterdir(), key=lambda p: p.name == path.name)  # header (the named file) last
        _check_no_collision([folder / file.name for file in written], protected, path)
        for file in written:
            os.replace(file, folder / file.name)
    except RuntimeError as error:
        raise InputError(f"{path}: cannot be written ({_first_line(error)})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be written ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_written(image: sitk.Image, staged: Path, path: Path) -> None:
    """Refuse a staged file that does not hold `image` completely: ITK's NIfTI writer only prints on a short
    write, so the header is read back and a NIfTI file's voxel data is streamed to its end (constant memory)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(staged))
    try:
        reader.ReadImageInformation()
        check_nifti_data(staged)
    except (RuntimeError, InputError):
        raise InputError(f"{path}: the write failed part-way (disk full, quota or I/O error?); "
                         "the previous file, if any, is unchanged") from None
    if reader.GetSize() != image.GetSize() or reader.GetPixelID() != image.GetPixelID():
        raise InputError(f"{path}: the file written does not hold the image (size {reader.GetSize()}); "
                         "the previous file, if any, is unchanged")


def _check_no_collision(targets: Sequence[Path], protected: Iterable[Path], path: Path) -> None:
    """Refuse when a file about to be written (a header or its data file) is one of the `protected` files."""
    protected = [p for p in protected if p.exists()]
    for target in targets:
        if target.exists() and any(os.path.samefile(target, p) for p in protected):
            raise InputError(f"{path}: writing it would replace {target.name}, a file of the input; "
                             "choose another output name")


def check_writable(path: Path) -> Path:
    """Refuse an output path with an unknown extension, a folder, or a missing parent; returns the parent."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give an output file name")
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: is not a regular file (a FIFO, device or socket); give an output file name")
    extension = volume_extension(path)
    if extension not in WRITE_EXTENSIONS:
        raise InputError(f"{path}: cannot write '{extension or path.name}' (use one of {', '.join(WRITE_EXTENSIONS)})")
    written = path.name[len(path.name) - len(extension):]
    if written != extension and (written != extension.upper() or extension not in (".nrrd", ".nhdr")):
        # ITK matches NIfTI and MetaImage extensions in lower case only (it writes 'X.MHA' as X.mhd + X.zraw)
        raise InputError(f"{path}: write the extension as '{extension}' (ITK cannot write '{written}')")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: folder {folder} does not exist")
    return folder


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-5) -> bool:
    """True when both images have the same size and, within `tolerance`, spacing, origin and direction."""
    if a.GetSize() != b.GetSize():
        return False
    pairs = ((a.GetSpacing(), b.GetSpacing()), (a.GetOrigin(), b.GetOrigin()), (a.GetDirection(), b.GetDirection()))
    return all(np.allclose(x, y, rtol=0, atol=tolerance) for x, y in pairs)


def describe_grid(image: sitk.Image) -> str:
    """One line: size, spacing, origin."""
    spacing = "×".join(f"{s:g}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.1f}" for o in image.GetOrigin())
    return f"size {'×'.join(map(str, image.GetSize()))}, spacing {spacing} mm, origin ({origin})"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages start with file/line noise; the last non-empty line usually names the problem.
    return lines[-1] if lines else type(error).__name__
