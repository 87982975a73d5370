"""Bad input through the `medtranslate` command: exit status 2, one "medtranslate: error:" line naming the
problem, no traceback, and nothing left in the output folder.

Most cases run `MedTranslateLib.cli.main` in-process; a few run a real `python -m MedTranslateLib.cli`
subprocess to prove that no traceback reaches stderr. The model is a tiny random-weight package (tiny_model).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_fixtures import anisotropic_volume, oblique_volume, write_dicom_series
from MedTranslateLib.cli import main
from MedTranslateLib.errors import InputError, ModelPackageError

PREFIX = "medtranslate: error:"


# --------------------------------------------------------------------------------------------- inputs


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def from_array(values: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    return image


def good_input(folder: Path) -> Path:
    return write(anisotropic_volume(), folder / "head.nii.gz")


def missing_input(folder: Path) -> Path:
    return folder / "nowhere.nii.gz"


def text_file(folder: Path) -> Path:
    path = folder / "x.nii.gz"
    path.write_text("patient notes, not an image\n" * 20)
    return path


def truncated_nifti(folder: Path) -> Path:
    whole = write(oblique_volume(), folder / "whole.nii.gz").read_bytes()
    path = folder / "truncated.nii.gz"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def four_d(folder: Path) -> Path:
    values = np.random.default_rng(0).random((3, 6, 8, 10)).astype(np.float32)  # (t, z, y, x)
    image = sitk.GetImageFromArray(values, isVector=False)
    assert image.GetDimension() == 4
    return write(image, folder / "fmri.nii.gz")


def rgb_png(folder: Path) -> Path:
    values = (np.random.default_rng(1).random((16, 20, 3)) * 255).astype(np.uint8)
    return write(sitk.GetImageFromArray(values, isVector=True), folder / "photo.png")


def vector_mha(folder: Path) -> Path:
    values = np.random.default_rng(2).random((6, 8, 10, 3)).astype(np.float32)
    return write(sitk.GetImageFromArray(values, isVector=True), folder / "field.mha")


def with_nan(folder: Path) -> Path:
    values = sitk.GetArrayFromImage(anisotropic_volume())
    values[5, 10, 10] = np.nan
    return write(from_array(values), folder / "nan.nii.gz")


def with_inf(folder: Path) -> Path:
    values = sitk.GetArrayFromImage(anisotropic_volume())
    values[2, 3, 4] = np.inf
    values[2, 3, 5] = -np.inf
    return write(from_array(values), folder / "inf.nrrd")


def constant(folder: Path) -> Path:
    return write(from_array(np.full((8, 16, 16), 300, dtype=np.int16)), folder / "constant.nii.gz")


def one_voxel(folder: Path) -> Path:
    return write(from_array(np.array([[[42.0]]], dtype=np.float32)), folder / "voxel.nii.gz")


def line_image(folder: Path) -> Path:
    return write(from_array(np.arange(10, dtype=np.float32).reshape(10, 1, 1)), folder / "line.mha")


def two_series(folder: Path) -> Path:
    write_dicom_series(oblique_volume(np.int16), folder / "dicom", series_number=1)
    write_dicom_series(anisotropic_volume(np.int16), folder / "dicom", series_number=2)
    return folder / "dicom"


def empty_folder(folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


# --------------------------------------------------------------------------------------------- packages


def copied_package(tiny_model: Path, folder: Path) -> Path:
    copy = folder / "package"
    shutil.copytree(tiny_model, copy)
    return copy


def corrupt_weights(tiny_model: Path, folder: Path) -> Path:
    package = copied_package(tiny_model, folder)
    weights = package / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) - 3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    return package


def edit_card(tiny_model: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    package = copied_package(tiny_model, folder)
    card = json.loads((package / "model.json").read_text(encoding="utf-8"))
    edit(card)
    (package / "model.json").write_text(json.dumps(card, indent=2))
    return package


def unknown_architecture(tiny_model: Path, folder: Path) -> Path:
    return edit_card(tiny_model, folder, lambda card: card["architecture"].update(name="transformer9000"))


def unknown_card_key(tiny_model: Path, folder: Path) -> Path:
    return edit_card(tiny_model, folder, lambda card: card.update(favourite_colour="blue"))


def card_not_json(tiny_model: Path, folder: Path) -> Path:
    package = copied_package(tiny_model, folder)
    (package / "model.json").write_text("{ not json")
    return package


# --------------------------------------------------------------------------------------------- cases

# name -> (input builder, output name, model builder or None for the tiny model, key words of the message)
InputBuilder = Callable[[Path], Path]
CASES: Dict[str, Tuple[InputBuilder, str, object, Tuple[str, ...]]] = {
    "missing-input": (missing_input, "out.nii.gz", None, ("no such file",)),
    "text-file": (text_file, "out.nii.gz", None, ("cannot be read",)),
    "truncated-nifti": (truncated_nifti, "out.nii.gz", None, ("truncated",)),
    "4d-image": (four_d, "out.nii.gz", None, ("4D",)),
    "rgb-png": (rgb_png, "out.nii.gz", None, ("RGB",)),
    "vector-mha": (vector_mha, "out.nii.gz", None, ("components",)),
    "nan-voxels": (with_nan, "out.nii.gz", None, ("NaN",)),
    "inf-voxels": (with_inf, "out.nii.gz", None, ("NaN", "infinite")),
    "constant-image": (constant, "out.nii.gz", None, ("constant",)),
    "one-voxel": (one_voxel, "out.nii.gz", None, ("point",)),
    "line-image": (line_image, "out.nii.gz", None, ("line",)),
    "two-dicom-series": (two_series, "out.nii.gz", None, ("2 DICOM series",)),
    "empty-folder": (empty_folder, "out.nii.gz", None, ("no DICOM series",)),
    "weights-sha-mismatch": (good_input, "out.nii.gz", corrupt_weights, ("SHA-256",)),
    "unknown-architecture": (good_input, "out.nii.gz", unknown_architecture, ("unknown architecture", "transformer9000")),
    "unknown-card-key": (good_input, "out.nii.gz", unknown_card_key, ("unknown key", "favourite_colour")),
    "card-not-json": (good_input, "out.nii.gz", card_not_json, ("not valid JSON",)),
    "missing-package": (good_input, "out.nii.gz", lambda m, f: f / "no-such-package", ("not found",)),
    "unknown-output-extension": (good_input, "out.png", None, ("cannot write", ".png")),
    "output-without-extension": (good_input, "out", None, ("cannot write",)),
    "output-folder-missing": (good_input, "missing/out.nii.gz", None, ("does not exist",)),
}


def case_arguments(name: str, tmp_path: Path, tiny_model: Path) -> Tuple[List[str], Path]:
    """argv for `main` and the output folder that must stay empty."""
    build_input, output, build_model, _ = CASES[name]
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    source = build_input(inputs)
    model = build_model(tiny_model, tmp_path) if build_model else tiny_model  # type: ignore[operator]
    return ["translate", str(source), str(outputs / output), "--model", str(model), "--device", "cpu"], outputs


def assert_one_error_line(stderr: str, key_words) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(PREFIX), lines[0]
    message = lines[0][len(PREFIX):].strip()
    assert message
    for word in key_words:
        assert word in message, message
    return message


def assert_left_empty(folder: Path) -> None:
    leftovers = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert leftovers == [], leftovers


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_error_line(name, tmp_path, tiny_model, capsys):
    argv, outputs = case_arguments(name, tmp_path, tiny_model)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    assert_one_error_line(captured.err, CASES[name][3])
    assert_left_empty(outputs)


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path, tiny_model, capsys, monkeypatch):
    source = good_input(tmp_path)
    digest, mtime = hashlib.sha256(source.read_bytes()).hexdigest(), source.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    for output in (str(source), f"{tmp_path}/./{source.name}", source.name, f"../{tmp_path.name}/{source.name}"):
        code = main(["translate", str(source), output, "--model", str(tiny_model), "--device", "cpu"])
        captured = capsys.readouterr()
        assert code == 2
        assert_one_error_line(captured.err, ("overwrite",))
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
    assert source.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [source.name]


def test_output_through_a_symlink_to_the_input_is_refused(tmp_path, tiny_model, capsys):
    source = good_input(tmp_path)
    (tmp_path / "alias.nii.gz").symlink_to(source)
    code = main(["translate", str(source), str(tmp_path / "alias.nii.gz"), "--model", str(tiny_model)])
    assert code == 2
    assert_one_error_line(capsys.readouterr().err, ("overwrite",))


def test_bad_batch_size_is_refused(tmp_path, tiny_model, capsys):
    source = good_input(tmp_path)
    code = main(["translate", str(source), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model),
                 "--batch-size", "0"])
    assert code == 2
    assert_one_error_line(capsys.readouterr().err, ("--batch-size",))
    assert not (tmp_path / "out.nii.gz").exists()


def test_info_on_a_broken_package_exits_2(tmp_path, tiny_model, capsys):
    code = main(["info", str(unknown_card_key(tiny_model, tmp_path))])
    assert code == 2
    assert_one_error_line(capsys.readouterr().err, ("unknown key",))


def test_evaluate_with_a_missing_file_exits_2(tmp_path, capsys):
    reference = good_input(tmp_path)
    code = main(["evaluate", str(tmp_path / "missing.nii.gz"), str(reference)])
    assert code == 2
    assert_one_error_line(capsys.readouterr().err, ("no such file",))


# --------------------------------------------------------------------------------------------- CT fed to an MR model


def ct_like(folder: Path) -> Path:
    """Values -1024..2000 HU, most of the volume air around -1000, a soft-tissue head and some bone."""
    rng = np.random.default_rng(3)
    values = np.full((10, 24, 24), -1000.0, dtype=np.float32) + rng.normal(0, 8, (10, 24, 24)).astype(np.float32)
    values[3:7, 8:16, 8:16] = 40.0
    values[4:6, 10:12, 10:12] = 2000.0
    values[0, 0, 0] = -1024.0
    values = np.clip(values, -1024, 2000)
    return write(from_array(np.rint(values).astype(np.int16)), folder / "ct.nii.gz")


def test_ct_values_fed_to_an_mr_model_warn_but_succeed(tmp_path, tiny_model, capsys):
    source = ct_like(tmp_path)
    output = tmp_path / "out" / "t2.nii.gz"
    output.parent.mkdir()
    code = main(["translate", str(source), str(output), "--model", str(tiny_model), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    warning_lines = [line for line in captured.err.splitlines() if "warning" in line.lower()]
    assert len(warning_lines) == 1, captured.err
    assert "MR-T1" in warning_lines[0] and "CT" in warning_lines[0]
    assert PREFIX not in captured.err
    assert f"wrote {output}" in captured.out
    assert [p.name for p in output.parent.iterdir()] == ["t2.nii.gz"]
    assert sitk.ReadImage(str(output)).GetSize() == sitk.ReadImage(str(source)).GetSize()


# --------------------------------------------------------------------------------------------- --debug


@pytest.mark.parametrize("name,error", [("constant-image", InputError), ("weights-sha-mismatch", ModelPackageError),
                                        ("missing-input", InputError)])
def test_debug_raises_instead_of_one_line(name, error, tmp_path, tiny_model, capsys):
    argv, outputs = case_arguments(name, tmp_path, tiny_model)
    with pytest.raises(error) as raised:
        main(["--debug"] + argv)
    for word in CASES[name][3]:
        assert word in str(raised.value)
    assert PREFIX not in capsys.readouterr().err
    assert_left_empty(outputs)


# --------------------------------------------------------------------------------------------- real subprocesses


def run_cli(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # MEDTRANSLATE_HOME already points into the test's temporary folder
    return subprocess.run([sys.executable, "-m", "MedTranslateLib.cli"] + argv, cwd=str(cwd), env=env,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=120)


@pytest.mark.parametrize("name", ["missing-input", "truncated-nifti", "weights-sha-mismatch"])
def test_subprocess_prints_one_line_and_no_traceback(name, tmp_path, tiny_model):
    argv, outputs = case_arguments(name, tmp_path, tiny_model)
    finished = run_cli(argv, tmp_path)
    assert finished.returncode == 2, finished.stderr
    assert_one_error_line(finished.stderr, CASES[name][3])
    assert finished.stdout == ""
    assert_left_empty(outputs)


def test_subprocess_with_debug_shows_the_traceback(tmp_path, tiny_model):
    argv, outputs = case_arguments("nan-voxels", tmp_path, tiny_model)
    finished = run_cli(["--debug"] + argv, tmp_path)
    assert finished.returncode != 0
    assert "Traceback" in finished.stderr
    assert "InputError" in finished.stderr and "NaN" in finished.stderr
    assert_left_empty(outputs)
