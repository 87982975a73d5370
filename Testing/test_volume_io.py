"""Tests for reading, validating and atomically writing volumes, input immutability, and canonical reorientation.

Every volume here is a real SimpleITK image with nontrivial geometry (oblique, permuted/flipped, anisotropic)
from geometry_fixtures; the model is a tiny random-weight package built by tiny_model (no bundled model).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_fixtures import FIXTURES, anisotropic_volume, oblique_volume, write_dicom_series
from MedTranslateLib.axes import SLICE_AXES, reorientation
from MedTranslateLib.errors import InputError
from MedTranslateLib.translate import translate_file, translate_image
from MedTranslateLib.volume import WRITE_EXTENSIONS, read_volume, same_grid, write_volume

GEOMETRY = ("GetSize", "GetSpacing", "GetOrigin", "GetDirection")


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def geometry(image: sitk.Image) -> tuple:
    return tuple(getattr(image, name)() for name in GEOMETRY)


def tolerance_for(extension: str) -> float:
    # NIfTI stores spacing, origin and direction as float32 (pixdim, qform quaternion, sform rows), so a round
    # trip changes them by up to ~2e-7 mm; 1e-4 is what the format allows. NRRD and MetaImage keep doubles.
    return 1e-4 if extension.startswith(".nii") else 1e-5


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.int16], ids=["float32", "int16"])
@pytest.mark.parametrize("extension", WRITE_EXTENSIONS)
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_round_trip_keeps_grid_and_values(tmp_path, fixture, extension, dtype):
    original = FIXTURES[fixture](dtype)
    first = tmp_path / f"first{extension}"
    write_volume(original, first)
    image = read_volume(first)
    second = tmp_path / f"second{extension}"
    write_volume(image, second)
    again = read_volume(second)

    tolerance = tolerance_for(extension)
    for result in (image, again):
        assert result.GetSize() == original.GetSize()
        assert same_grid(result, original, tolerance=tolerance), (geometry(result), geometry(original))
        assert result.GetPixelID() == original.GetPixelID()
        np.testing.assert_array_equal(array(result), array(original))
    assert geometry(again) == geometry(image) or extension.startswith(".nii")


def test_round_trip_formats_without_float32_geometry_are_exact(tmp_path):
    original = oblique_volume()
    for extension in (".mha", ".mhd"):
        write_volume(original, tmp_path / f"v{extension}")
        assert geometry(read_volume(tmp_path / f"v{extension}")) == geometry(original)


# --------------------------------------------------------------------------------------------- damaged NIfTI
# ITK's NIfTI reader zero-fills the voxels missing from a truncated file and sets NaN/Inf voxels to 0 without
# an error, so read_volume checks NIfTI voxel data itself.


@pytest.mark.parametrize("extension", [".nii", ".nii.gz"])
def test_truncated_nifti_is_refused(tmp_path, extension):
    whole = tmp_path / f"whole{extension}"
    write_volume(oblique_volume(), whole)
    for fraction in (0.5, 0.9):
        cut = tmp_path / f"cut{extension}"
        blob = whole.read_bytes()
        cut.write_bytes(blob[: int(len(blob) * fraction)])
        with pytest.raises(InputError, match="truncated"):
            read_volume(cut)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("extension", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_non_finite_voxels_are_refused_in_every_format(tmp_path, extension, dtype, bad_value):
    values = array(anisotropic_volume()).astype(dtype)
    values[3, 4, 5] = bad_value
    image = sitk.GetImageFromArray(values)
    sitk.WriteImage(image, str(tmp_path / f"bad{extension}"))
    with pytest.raises(InputError, match="1 NaN or infinite"):
        read_volume(tmp_path / f"bad{extension}")


def test_nifti_from_another_writer_big_endian_with_extension_is_read_and_checked(tmp_path):
    nib = pytest.importorskip("nibabel")
    values = array(anisotropic_volume()).transpose(2, 1, 0)  # nibabel indexes (i, j, k)
    header = nib.Nifti1Header(endianness=">")
    image = nib.Nifti1Image(values.astype(">f4"), np.diag([0.6, 0.75, 4.0, 1.0]), header)
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"an extension shifts vox_offset"))
    nib.save(image, str(tmp_path / "big.nii.gz"))
    volume = read_volume(tmp_path / "big.nii.gz")
    np.testing.assert_array_equal(array(volume), values.transpose(2, 1, 0))

    values[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(values.astype(">f4"), np.eye(4), header), str(tmp_path / "nan.nii"))
    with pytest.raises(InputError, match="NaN"):
        read_volume(tmp_path / "nan.nii")
    blob = (tmp_path / "big.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        read_volume(tmp_path / "cut.nii.gz")


# --------------------------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_dicom_series_folder_is_read_as_one_volume(tmp_path, fixture):
    original = FIXTURES[fixture](np.int16)
    files = write_dicom_series(original, tmp_path / "series")
    assert len(files) == original.GetDepth()
    image = read_volume(tmp_path / "series")
    assert image.GetSize() == original.GetSize()
    # DICOM decimal strings keep ~10 significant digits of spacing, origin and direction cosines.
    assert same_grid(image, original, tolerance=1e-4), (geometry(image), geometry(original))
    np.testing.assert_array_equal(array(image), array(original))


def test_folder_with_two_dicom_series_is_refused(tmp_path):
    folder = tmp_path / "two"
    write_dicom_series(oblique_volume(np.int16), folder, series_number=1)
    write_dicom_series(anisotropic_volume(np.int16), folder, series_number=2)
    with pytest.raises(InputError, match=r"2 DICOM series"):
        read_volume(folder)


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(tmp_path / "empty")


def test_folder_without_dicom_files_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not DICOM\n")
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(folder)


# --------------------------------------------------------------------------------------------- 2D input


@pytest.mark.parametrize("extension", [".mha", ".png", ".nrrd"])
def test_2d_image_becomes_one_slice_volume_keeping_in_plane_spacing(tmp_path, extension):
    plane = np.add.outer(np.arange(14), 3 * np.arange(18)).astype(np.uint8)  # (rows=14, columns=18)
    image = sitk.GetImageFromArray(plane)
    image.SetSpacing((0.7, 1.4))
    if extension != ".png":  # PNG keeps no origin
        image.SetOrigin((3.5, -2.0))
    sitk.WriteImage(image, str(tmp_path / f"plane{extension}"))

    volume = read_volume(tmp_path / f"plane{extension}")
    assert volume.GetDimension() == 3
    assert volume.GetSize() == (18, 14, 1)
    assert volume.GetSpacing()[:2] == pytest.approx((0.7, 1.4), abs=1e-6)
    assert volume.GetOrigin()[:2] == pytest.approx(image.GetOrigin(), abs=1e-6)
    assert volume.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(array(volume)[0], plane)


def test_2d_image_in_memory_comes_back_as_a_2d_image_on_its_own_grid(tiny_model):
    plane = np.add.outer(np.arange(16), np.arange(20)).astype(np.float32) * 3
    image = sitk.GetImageFromArray(plane)
    image.SetSpacing((0.8, 1.2))
    image.SetOrigin((4.5, -3.0))
    image.SetDirection((0.0, 1.0, -1.0, 0.0))
    result = translate_image(image, tiny_model, device="cpu")
    assert result.GetDimension() == 2 and result.GetSize() == (20, 16)
    assert (result.GetSpacing(), result.GetOrigin(), result.GetDirection()) == (
        image.GetSpacing(), image.GetOrigin(), image.GetDirection())


# --------------------------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("extension", WRITE_EXTENSIONS)
def test_successful_write_leaves_no_temporary_files(tmp_path, extension):
    write_volume(anisotropic_volume(), tmp_path / f"out{extension}")
    names = sorted(p.name for p in tmp_path.iterdir())
    data_files = {".mhd": ["out.zraw"], ".nhdr": ["out.raw.gz"]}.get(extension, [])
    assert names == sorted([f"out{extension}"] + data_files)


def test_overwriting_an_existing_output_replaces_it(tmp_path):
    target = tmp_path / "out.nrrd"
    write_volume(anisotropic_volume(), target)
    write_volume(oblique_volume(), target)
    assert same_grid(read_volume(target), oblique_volume())
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


@pytest.mark.parametrize("name", ["out.png", "out.txt", "out", "out.nii.zip", "out.dcm"])
def test_unknown_extension_is_refused_and_nothing_written(tmp_path, name):
    with pytest.raises(InputError, match="cannot write"):
        write_volume(anisotropic_volume(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_folder_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_volume(anisotropic_volume(), tmp_path / "missing" / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_folder_as_output_is_refused(tmp_path):
    (tmp_path / "out.nii.gz").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_volume(anisotropic_volume(), tmp_path / "out.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_writer_failure_mid_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    """A writer that dies after writing part of its output: the target keeps its old bytes, no debris."""
    target = tmp_path / "out.mhd"
    write_volume(anisotropic_volume(), target)
    before = {p.name: sha256(p) for p in tmp_path.iterdir()}

    def broken_write(image, name, *args, **kwargs):
        Path(name).with_suffix(".zraw").write_bytes(b"partial")
        Path(name).write_text("ObjectType = Image\nhalf a header")
        raise RuntimeError("Exception thrown in SimpleITK WriteImage\ndisk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(InputError, match="cannot be written.*disk full"):
        write_volume(oblique_volume(), target)
    assert {p.name: sha256(p) for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("extension,key,data_name", [(".mhd", "ElementDataFile", "scan.zraw"),
                                                     (".nhdr", "data file", "scan.raw.gz")])
def test_header_and_data_files_end_up_side_by_side(tmp_path, extension, key, data_name):
    original = oblique_volume()
    target = tmp_path / f"scan{extension}"
    write_volume(original, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, data_name])
    header = target.read_text(errors="replace")
    reference = re.search(rf"^{key}\s*[=:]\s*(.+?)\s*$", header, re.MULTILINE)
    assert reference is not None, header
    assert reference.group(1) == data_name  # relative, the final name (not the staging folder's)
    image = read_volume(target)
    assert same_grid(image, original)
    np.testing.assert_array_equal(array(image), array(original))


# --------------------------------------------------------------------------------------------- input untouched, exact grid


def test_translate_file_never_modifies_the_input(tmp_path, tiny_model):
    source = tmp_path / "input.nii.gz"
    write_volume(oblique_volume(), source)
    os.utime(source, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    digest, stat = sha256(source), source.stat()

    translate_file(source, tmp_path / "output.nii.gz", tiny_model, device="cpu")

    assert sha256(source) == digest
    assert source.stat().st_mtime_ns == stat.st_mtime_ns
    assert source.stat().st_size == stat.st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.nii.gz", "output.nii.gz"]


def test_translate_image_never_modifies_the_image(tiny_model):
    image = oblique_volume()
    before, grid = array(image).copy(), geometry(image)
    translate_image(image, tiny_model, device="cpu")
    np.testing.assert_array_equal(array(image), before)
    assert geometry(image) == grid


@pytest.mark.parametrize("extension", [".nrrd", ".mha", ".nhdr", ".nii.gz"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_translated_output_lies_exactly_on_the_input_grid(tmp_path, tiny_model, fixture, extension):
    source, target = tmp_path / f"in{extension}", tmp_path / f"out{extension}"
    write_volume(FIXTURES[fixture](), source)
    image = read_volume(source)

    result = translate_file(source, target, tiny_model, device="cpu")
    assert geometry(result) == geometry(image)  # equal, not close
    written = read_volume(target)
    if extension.startswith(".nii"):
        # NIfTI re-derives an oblique direction from a float32 quaternion on every write (~1e-8 changes).
        assert written.GetSize() == image.GetSize()
        assert same_grid(written, image, tolerance=1e-5)
    else:
        assert geometry(written) == geometry(image)
    values = array(written)
    assert values.shape == array(image).shape and np.isfinite(values).all()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_translated_dicom_folder_lies_exactly_on_its_grid(tmp_path, tiny_model):
    write_dicom_series(oblique_volume(np.int16), tmp_path / "dicom")
    image = read_volume(tmp_path / "dicom")
    result = translate_file(tmp_path / "dicom", tmp_path / "out.mha", tiny_model, device="cpu")
    assert geometry(result) == geometry(image)
    # MetaImage keeps spacing and direction apart (NRRD multiplies them, so a not-quite-orthonormal direction
    # read from DICOM decimal strings could come back with last-bit spacing changes).
    assert geometry(read_volume(tmp_path / "out.mha")) == geometry(image)


# --------------------------------------------------------------------------------------------- reorientation

# (order, flips) for sitk.PermuteAxes then sitk.Flip: both keep each voxel's physical position.
REORDERINGS = [((1, 0, 2), (True, False, True)), ((2, 0, 1), (False, True, False)), ((0, 2, 1), (True, True, True)),
               ((0, 1, 2), (True, True, False))]


def reordered(image: sitk.Image, order, flips) -> sitk.Image:
    return sitk.Flip(sitk.PermuteAxes(image, list(order)), list(flips))


@pytest.mark.parametrize("order,flips", REORDERINGS)
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_canonical_views_do_not_depend_on_voxel_order(fixture, order, flips):
    image = FIXTURES[fixture]()
    other = reordered(image, order, flips)
    # Same physical content: the reordered volume resampled back onto the first grid is identical.
    back = sitk.Resample(other, image, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(array(back), array(image))
    assert array(other).shape != array(image).shape or not np.array_equal(array(other), array(image))

    for axis in SLICE_AXES:
        first, second = reorientation(image.GetDirection(), axis), reorientation(other.GetDirection(), axis)
        view = first.apply(sitk.GetArrayViewFromImage(image))
        other_view = second.apply(sitk.GetArrayViewFromImage(other))
        assert view.shape == other_view.shape
        np.testing.assert_array_equal(view, other_view)
        assert first.spacing(image.GetSpacing()) == second.spacing(other.GetSpacing())


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_canonical_views_follow_the_documented_anatomical_directions(fixture):
    """axial: slices I→S, rows A→P, columns R→L; coronal: A→P, S→I, R→L; sagittal: R→L, S→I, A→P (LPS)."""
    image = FIXTURES[fixture]()
    k, j, i = np.meshgrid(*(np.arange(n) for n in array(image).shape), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float) * np.array(image.GetSpacing())
    physical = index @ np.array(image.GetDirection()).reshape(3, 3).T + np.array(image.GetOrigin())  # [k,j,i,xyz]
    expected = {"axial": ((2, +1), (1, +1), (0, +1)), "coronal": ((1, +1), (2, -1), (0, +1)),
                "sagittal": ((0, +1), (2, -1), (1, +1))}
    for axis, layout in expected.items():
        orientation = reorientation(image.GetDirection(), axis)
        for view_axis, (lps, sign) in enumerate(layout):
            coordinate = orientation.apply(physical[..., lps])  # (slice, row, column) view of x, y or z
            steps = np.diff(coordinate, axis=view_axis)
            assert (sign * steps > 0).all(), (axis, view_axis)


@pytest.mark.parametrize("axis", SLICE_AXES)
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_undo_of_apply_is_the_original_array(fixture, axis):
    x = array(reordered(FIXTURES[fixture](), (2, 0, 1), (True, False, True)))
    orientation = reorientation(FIXTURES[fixture]().GetDirection(), axis)
    y = orientation.undo(orientation.apply(x))
    assert y.shape == x.shape and y.strides == x.strides
    assert y.__array_interface__["data"][0] == x.__array_interface__["data"][0]  # the same memory, no copy
    np.testing.assert_array_equal(y, x)
    z = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(orientation.apply(orientation.undo(orientation.apply(z))), orientation.apply(z))


def test_translation_does_not_depend_on_voxel_order(tiny_model):
    """Same physical content, different voxel order → the same translation, voxel for voxel."""
    image = oblique_volume()
    other = reordered(image, (2, 0, 1), (True, False, True))
    result = translate_image(image, tiny_model, device="cpu")
    other_result = translate_image(other, tiny_model, device="cpu")
    assert geometry(other_result) == geometry(other)
    back = sitk.Resample(other_result, result, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_allclose(array(back), array(result), rtol=0, atol=1e-3)
