"""Hostile input, class by class: things that are not files, voxel types and values a translation cannot use,
non-finite numbers anywhere (cards, weights, network output), broken packages on the search path, ids that a
folder could shadow, and the permissions of what export writes. Each test builds its own hostile cases."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file, save_file

from geometry_fixtures import oblique_volume, write_dicom_series
from MedTranslateLib import TranslationError, load_model, translate_image
from MedTranslateLib.card import CardError, ModelCard
from MedTranslateLib.cli import main
from MedTranslateLib.engine import EngineOptions, SliceEngine
from MedTranslateLib.errors import InputError, ModelPackageError
from MedTranslateLib.registry import discover, resolve
from MedTranslateLib.volume import read_volume
from tiny_model import build_tiny_model, card_fields

PREFIX = "medtranslate: error:"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(PREFIX)]
    assert len(errors) == 1, err
    return errors[0]


# ----------------------------------------------------------------------------------- not regular files

def test_a_fifo_is_refused_at_once_as_input_output_or_model(tmp_path, tiny_model, capsys):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    command = [sys.executable, "-m", "MedTranslateLib.cli", "translate"]
    for arguments in ([str(fifo), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)],
                      [str(source), str(fifo), "--model", str(tiny_model)]):
        done = subprocess.run(command + arguments, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "FIFO" in done.stderr and "Traceback" not in done.stderr
    zipped = tmp_path / "model.zip"
    os.mkfifo(zipped)
    with pytest.raises(ModelPackageError, match="FIFO"):
        load_model(zipped)


# ----------------------------------------------------------------------------------- the library API

def test_the_library_refuses_what_is_not_a_scalar_image(tiny_model):
    model = load_model(tiny_model)
    image = oblique_volume()
    labels = sitk.Cast(sitk.Cast(image > 500, sitk.sitkUInt8), sitk.sitkLabelUInt8)
    for bad, words in ((labels, "label map"), ("scan.nii.gz", "translate_file"),
                       (sitk.GetArrayFromImage(image), "ndarray")):
        with pytest.raises(InputError, match=words):
            translate_image(bad, model, device="cpu")
    for batch_size in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="batch_size"):
            translate_image(image, model, device="cpu", batch_size=batch_size)


def test_values_beyond_float32_are_refused(tiny_model, tmp_path, capsys):
    values = sitk.GetArrayFromImage(oblique_volume()).astype(np.float64) * 1e300
    image = sitk.GetImageFromArray(values)
    with pytest.raises(InputError, match="float32"):
        translate_image(image, load_model(tiny_model), device="cpu")
    path = tmp_path / "huge.nrrd"
    sitk.WriteImage(image, str(path))
    assert main(["translate", str(path), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)]) == 2
    assert "float32" in one_error_line(capsys) and not (tmp_path / "out.nii.gz").exists()


# ----------------------------------------------------------------------------------- non-finite numbers

@pytest.mark.parametrize("change", [
    {"intensity": {"source": {"kind": "ct", "window": [-1024, float("inf")]}, "target": {"kind": "percentile"}}},
    {"spacing_mm": [float("nan"), 1.0]},
    {"metrics": {"model": {"psnr": float("inf")}}},
])
def test_cards_with_non_finite_numbers_are_invalid(change):
    with pytest.raises(CardError, match="finite"):
        ModelCard.from_dict(dict(card_fields(**change), weights_sha256="0" * 64))


def test_weights_holding_nan_are_refused_at_load(tmp_path):
    package = build_tiny_model(tmp_path / "nan")
    weights = load_file(package / "weights.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name].clone().fill_(float("nan"))
    save_file(weights, package / "weights.safetensors")
    card = json.loads((package / "model.json").read_text(encoding="utf-8"))
    card["weights_sha256"] = __import__("hashlib").sha256((package / "weights.safetensors").read_bytes()).hexdigest()
    (package / "model.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelPackageError, match="NaN or infinite"):
        load_model(package)


class Overflows(torch.nn.Module):
    """A network whose output overflows to infinity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0 + torch.finfo(torch.float32).max * 4


def test_a_non_finite_network_output_is_an_error_never_a_volume():
    volume = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    output = np.zeros_like(volume)
    with pytest.raises(TranslationError, match="NaN or infinite"):
        SliceEngine(Overflows(), torch.device("cpu"), 0, EngineOptions(channels_last=False)).run(
            volume, output, lambda a: a, lambda a: a)
    assert not output.any()


# ----------------------------------------------------------------------------------- the search path

def broken_packages(folder: Path) -> dict:
    """A folder of broken packages, one per way a card can be broken: name -> what the reason says."""
    folder.mkdir()
    cases = {}
    deep = folder / "deep"
    deep.mkdir()
    (deep / "model.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    cases["deep"] = "nested too deeply"
    latin = folder / "latin1"
    latin.mkdir()
    (latin / "model.json").write_bytes('{"id": "caf\xe9"}'.encode("latin-1"))
    cases["latin1"] = "not UTF-8"
    huge = folder / "huge.zip"
    with zipfile.ZipFile(huge, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", " " * (3 << 20))  # 3 MiB of spaces, a few kB on disk
    cases["huge.zip"] = "more than a package may hold"
    (folder / "corrupt.zip").write_bytes(b"PK\x03\x04" + os.urandom(200))
    cases["corrupt.zip"] = "zip"
    two = folder / "two-cards.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a/model.json", "{}")
        archive.writestr("b/model.json", "{}")
    cases["two-cards.zip"] = "2 files named model.json"
    return cases


def test_broken_packages_are_listed_with_their_reason_and_never_hide_the_others(tmp_path, tiny_model, monkeypatch,
                                                                                 capsys):
    cases = broken_packages(tmp_path / "broken")
    shutil.copytree(tiny_model, tmp_path / "good" / "tiny")
    monkeypatch.setenv("MEDTRANSLATE_MODEL_PATH", os.pathsep.join([str(tmp_path / "broken"), str(tmp_path / "good")]))
    found, broken = discover()
    reasons = {path.name: reason for path, reason in broken}
    for name, words in cases.items():
        assert words in reasons[name], (name, reasons.get(name))
    assert "tiny-test-model" in found
    assert main(["models", "--json"]) == 0
    captured = capsys.readouterr()
    assert "tiny-test-model" in [card["id"] for card in json.loads(captured.out)]
    assert all(f"broken model package {tmp_path / 'broken' / name}" in captured.err for name in cases)
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    assert main(["translate", str(source), str(tmp_path / "out.nii.gz"), "--model", "tiny-test-model"]) == 0


def test_the_same_id_twice_warns_naming_both_and_a_folder_named_like_an_id_does_not_shadow_it(
        tmp_path, tiny_model, monkeypatch):
    first, second = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"
    shutil.copytree(tiny_model, first)
    shutil.copytree(tiny_model, second)
    monkeypatch.setenv("MEDTRANSLATE_MODEL_PATH", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    with pytest.warns(UserWarning, match="tiny-test-model") as caught:
        assert resolve("tiny-test-model") == first
    assert str(first) in str(caught[0].message) and str(second) in str(caught[0].message)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-test-model").mkdir()  # an unrelated folder bearing the id
    with pytest.warns(UserWarning):
        assert resolve("tiny-test-model") == first
        assert resolve("./a/tiny") == Path("./a/tiny")


# ----------------------------------------------------------------------------------- what export writes

def test_packages_get_the_users_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        package = build_tiny_model(tmp_path / "shared")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(package.stat().st_mode) == 0o755


# ----------------------------------------------------------------------------------- output names

def test_output_extensions_itk_cannot_write_are_refused_before_the_work(tmp_path, tiny_model, capsys):
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    for name in ("out.NII.GZ", "out.Nii", "out.nRRD"):
        assert main(["translate", str(source), str(tmp_path / name), "--model", str(tiny_model)]) == 2
        assert "extension" in one_error_line(capsys)
    assert main(["translate", str(source), str(tmp_path / "out.NRRD"), "--model", str(tiny_model)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.NRRD"]


def test_a_long_output_name_works(tmp_path, tiny_model):
    long_name = "x" * (250 - len(".nii.gz")) + ".nii.gz"
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    assert main(["translate", str(source), str(tmp_path / long_name), "--model", str(tiny_model)]) == 0
    assert (tmp_path / long_name).is_file() and len(list(tmp_path.iterdir())) == 2


# ----------------------------------------------------------------------------------- writes that fail

FULL_DISK = """
import resource, sys
from MedTranslateLib.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # files stop at 4 kB: a short write, as on a full disk
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"])
def test_a_write_that_fails_part_way_fails_and_keeps_the_previous_output(tmp_path, tiny_model, extension):
    """RLIMIT_FSIZE makes every write past 4 kB short (Python ignores SIGXFSZ), as a full disk does: ITK's
    NIfTI writer only prints then, so the file is checked before it replaces the previous output."""
    source, output = tmp_path / "in.nii.gz", tmp_path / f"out{extension}"
    sitk.WriteImage(oblique_volume(), str(source))
    assert main(["translate", str(source), str(output), "--model", str(tiny_model)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = subprocess.run([sys.executable, "-c", FULL_DISK, "translate", str(source), str(output), "--model",
                             str(tiny_model)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("medtranslate:")]
    assert len(lines) == 1 and ("cannot be written" in lines[0] or "failed part-way" in lines[0]), result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing replaced, no staging left


def header_and_data(folder: Path, header: str, data: str) -> Path:
    """A MetaImage or detached NRRD input whose header names `data` as its data file (written by ITK, renamed)."""
    image = oblique_volume()
    extension = Path(header).suffix
    sitk.WriteImage(image, str(folder / f"written{extension}"), True)
    written_data = next(p for p in folder.iterdir() if p.name.startswith("written") and p.suffix != extension)
    written_data.rename(folder / data)
    text = (folder / f"written{extension}").read_text(encoding="latin-1").replace(written_data.name, data)
    (folder / f"written{extension}").unlink()
    (folder / header).write_text(text, encoding="latin-1")
    return folder / header


@pytest.mark.parametrize("header, data, output", [
    ("in.mhd", "out.zraw", "out.mhd"),          # MetaImage data file named like the output's
    ("in.nhdr", "out.raw.gz", "out.nhdr"),      # detached NRRD, the same
    ("in.mhd", "out.raw.gz", "out.nhdr"),       # across formats
    ("in.nhdr", "shared.zraw", "shared.mhd"),
])
def test_an_output_never_lands_on_one_of_the_inputs_files(tmp_path, tiny_model, capsys, header, data, output):
    source = header_and_data(tmp_path, header, data)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["translate", str(source), str(tmp_path / output), "--model", str(tiny_model)]) == 2
    assert "a file of the input" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_last_check_before_renaming_protects_the_inputs_files(tmp_path):
    """Even past translate_file's early check, write_volume never renames over a protected file."""
    from MedTranslateLib.volume import input_files, read_volume, write_volume

    source = header_and_data(tmp_path, "in.mhd", "out.zraw")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(InputError, match="out.zraw, a file of the input"):
        write_volume(read_volume(source), tmp_path / "out.mhd", protected=input_files(source))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_upper_case_metaimage_extensions_are_refused_as_itk_renames_them(tmp_path, tiny_model, capsys):
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    for name in ("out.MHA", "out.MHD"):
        assert main(["translate", str(source), str(tmp_path / name), "--model", str(tiny_model)]) == 2
        assert "extension" in one_error_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["in.nii.gz"]


# ----------------------------------------------------------------------------------- signals

def big_input(folder: Path) -> Path:
    """A volume large enough (160×192×192 float32, incompressible) that writing its translation takes a moment."""
    values = np.random.default_rng(0).random((160, 192, 192), dtype=np.float32) * 1000
    path = folder / "in.nii"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path), False)
    return path


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_writing_leaves_nothing_behind(tmp_path, tiny_model, signum, status):
    """The signal arrives once the hidden staging folder exists, that is, while the output is being written.
    The command gets SIGINT's default disposition, as a foreground command has: a test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    source = big_input(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "MedTranslateLib.cli", "translate", str(source),
                                str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[1],
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.nii.gz") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the write never started"
        time.sleep(0.002)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert [line for line in stderr.splitlines() if line.startswith("medtranslate:")] == [
        f"medtranslate: {'terminated' if signum == signal.SIGTERM else 'interrupted'}; nothing was written"]
    assert [p.name for p in tmp_path.iterdir()] == ["in.nii"]


def test_sigterm_while_translating_exits_143_and_writes_nothing(tmp_path, tiny_model):
    source = big_input(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "MedTranslateLib.cli", "translate", str(source),
                                str(tmp_path / "out.nii.gz"), "--model", str(tiny_model), "--progress", "jsonl"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[1])
    assert json.loads(process.stdout.readline())["event"] == "progress"  # past start-up: reading or translating
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 or (process.returncode == 0 and (tmp_path / "out.nii.gz").is_file()), stderr
    assert {p.name for p in tmp_path.iterdir()} <= {"in.nii", "out.nii.gz"}


# ----------------------------------------------------------------------------------- what ITK lets through

def nifti_with(folder: Path, name: str, dims=None, sform=None) -> Path:
    """A NIfTI-1 file written by ITK, then its header edited: `dims` (dim[1..3]) or `sform` rows (3×4, code 1)."""
    path = folder / name
    sitk.WriteImage(oblique_volume(), str(path), False)
    header = bytearray(path.read_bytes())
    if dims is not None:
        struct.pack_into("<3h", header, 42, *dims)
    if sform is not None:
        struct.pack_into("<h", header, 254, 1)
        struct.pack_into("<12f", header, 280, *np.asarray(sform, dtype=np.float32).ravel())
    path.write_bytes(bytes(header))
    return path


def test_headers_itk_would_read_wrongly_are_refused_with_one_line(tmp_path, tiny_model, capsys):
    """ITK reads a dimension of -5 as 1 (one slice of 40), replaces a sheared or rescaled sform by the qform,
    and misreports truncated MetaImage data; each is refused, naming the problem."""
    sheared = [[0.9, 0.4, 0, 0], [0, 1.3, 0, 0], [0, 0, 2.5, 0]]
    rescaled = [[1.8, 0, 0, 0], [0, 1.3, 0, 0], [0, 0, 2.5, 0]]
    meta = tmp_path / "short.mha"
    sitk.WriteImage(oblique_volume(), str(meta), False)
    meta.write_bytes(meta.read_bytes()[:-5000])
    cases = {nifti_with(tmp_path, "dims.nii", dims=(48, 40, -5)): "invalid dimensions",
             nifti_with(tmp_path, "sheared.nii", sform=sheared): "sform is sheared",
             nifti_with(tmp_path, "rescaled.nii", sform=rescaled): "sform is scaled unlike the voxel size",
             meta: "truncated"}
    for path, problem in cases.items():
        assert main(["translate", str(path), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)]) == 2
        assert problem in one_error_line(capsys)
    assert not (tmp_path / "out.nii.gz").exists()


def test_a_direction_that_is_not_orthonormal_is_refused_not_coerced(tmp_path, tiny_model, capsys):
    image = oblique_volume()
    image.SetDirection((1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(InputError, match="not orthonormal"):
        translate_image(image, load_model(tiny_model))
    sitk.WriteImage(image, str(tmp_path / "sheared.mha"))  # MetaImage keeps any direction matrix
    assert main(["translate", str(tmp_path / "sheared.mha"), str(tmp_path / "out.nii.gz"), "--model",
                 str(tiny_model)]) == 2
    assert "not orthonormal" in one_error_line(capsys)


@pytest.mark.parametrize("case", ["empty folder", "truncated MetaImage", "sheared sform"])
def test_library_messages_stay_off_stderr_and_come_back_with_debug(tmp_path, tiny_model, case):
    """ITK and GDCM print warnings on the process's stderr (file descriptor 2); the command shows one line,
    and --debug adds what the libraries said."""
    if case == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "truncated MetaImage":
        source = tmp_path / "short.mha"
        sitk.WriteImage(oblique_volume(), str(source), False)
        source.write_bytes(source.read_bytes()[:-5000])
    else:
        source = nifti_with(tmp_path, "sheared.nii", sform=[[0.9, 0.4, 0, 0], [0, 1.3, 0, 0], [0, 0, 2.5, 0]])
    command = [sys.executable, "-m", "MedTranslateLib.cli", "translate", str(source), str(tmp_path / "o.nii.gz"),
               "--model", str(tiny_model)]
    plain = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    if case == "empty folder":  # GDCM's own warning: kept for --debug
        debug = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True,
                               cwd=Path(__file__).parents[1])
        assert "No Series were found" in debug.stderr and "the libraries printed" in debug.stderr


# ----------------------------------------------------------------------------------- DICOM folders

def damaged_series(folder: Path, damage: str) -> Path:
    """A DICOM series of the oblique phantom (geometry_fixtures.write_dicom_series), then damaged."""
    files = write_dicom_series(oblique_volume(np.int16), folder)
    if damage == "missing slice":
        files[len(files) // 2].unlink()
    elif damage == "duplicate position":
        shutil.copy(files[3], folder / "copy_of_slice_3.dcm")
    elif damage == "truncated slice":
        files[5].write_bytes(files[5].read_bytes()[:-700])
    elif damage == "uneven spacing":  # the slices of one half moved 40 % of a gap along the normal
        image = oblique_volume(np.int16)
        shift = 0.4 * np.array(image.GetDirection()).reshape(3, 3)[:, 2] * image.GetSpacing()[2]
        for file in files[len(files) // 2:]:
            _retag(file, "0020|0032", lambda v: "\\".join(f"{float(x) + d:.6f}" for x, d in zip(v.split("\\"), shift)))
    elif damage == "mixed sizes":
        small = sitk.ReadImage(str(files[2]))[:-4, :, :]
        for key in sitk.ReadImage(str(files[2])).GetMetaDataKeys():
            small.SetMetaData(key, sitk.ReadImage(str(files[2])).GetMetaData(key))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(files[2]))
        writer.Execute(small)
    return folder


def _retag(file: Path, tag: str, change) -> None:
    image = sitk.ReadImage(str(file))
    image.SetMetaData(tag, change(image.GetMetaData(tag)))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(file))
    writer.Execute(image)


@pytest.mark.parametrize("damage, problem", [
    ("missing slice", "missing slices"),
    ("duplicate position", "duplicate slice position"),
    ("truncated slice", "cannot be read"),
    ("uneven spacing", "uneven slice spacing"),
    ("mixed sizes", "mixes slice sizes"),
])
def test_a_dicom_folder_that_is_not_one_even_volume_is_refused_naming_why(tmp_path, tiny_model, capsys, damage,
                                                                          problem):
    """ITK's series reader translates each of these silently onto a uniform grid (a warning on stderr at most)."""
    folder = damaged_series(tmp_path / "series", damage)
    assert main(["translate", str(folder), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)]) == 2
    assert problem in one_error_line(capsys)
    assert not (tmp_path / "out.nii.gz").exists()


def test_several_series_are_listed_and_one_is_picked_with_series(tmp_path, tiny_model, capsys):
    folder = tmp_path / "two"
    write_dicom_series(oblique_volume(np.int16), folder, series_number=1)
    write_dicom_series(oblique_volume(np.int16)[:, :, :12], folder, series_number=2)
    assert main(["translate", str(folder), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model)]) == 2
    line = one_error_line(capsys)
    uids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    assert "--series UID" in line and all(uid in line for uid in uids) and "MedTranslate test series 2" in line
    second = next(uid for uid in uids if len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) == 12)
    assert main(["translate", str(folder), str(tmp_path / "out.nii.gz"), "--model", str(tiny_model),
                 "--series", second]) == 0
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetSize()[2] == 12
    assert main(["translate", str(folder), str(tmp_path / "o.nii.gz"), "--model", str(tiny_model),
                 "--series", "1.2.3.4"]) == 2
    assert "no DICOM series with UID 1.2.3.4" in one_error_line(capsys)


# ----------------------------------------------------------------------------------- memory, sizes, small ones

PEAK_MEMORY = """
import resource, sys
from MedTranslateLib.cli import main
status = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MiB")  # Linux: kB
sys.exit(status)
"""


def test_coarse_pixels_are_refused_before_resampling_within_little_memory(tmp_path):
    """40 mm pixels made 2 mm would be a 1,600-fold larger grid (6.4 GB measured): refused before any of it."""
    model = build_tiny_model(tmp_path / "model", spacing_mm=[2.0, 2.0])
    coarse = sitk.GetImageFromArray(np.random.default_rng(0).random((40, 64, 64), dtype=np.float32))
    coarse.SetSpacing((40.0, 40.0, 2.0))
    sitk.WriteImage(coarse, str(tmp_path / "coarse.nii.gz"))
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, "translate", str(tmp_path / "coarse.nii.gz"),
                             str(tmp_path / "out.nii.gz"), "--model", str(model)], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 2 and "20 times coarser than the model's 2 mm" in result.stderr, result.stderr
    assert int(result.stdout.split()[-2]) < 800  # MiB: the interpreter, torch and the input
    assert not (tmp_path / "out.nii.gz").exists()


def test_a_translation_larger_than_the_memory_available_is_refused_first(tmp_path, tiny_model, monkeypatch):
    import MedTranslateLib.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)  # a machine with 1 kB free
    with pytest.raises(InputError, match="needs about .* GiB of memory, but only"):
        translate_image(oblique_volume(), load_model(tiny_model))
    sitk.WriteImage(oblique_volume(), str(tmp_path / "in.nii.gz"))
    size = "×".join(map(str, oblique_volume().GetSize()))
    with pytest.raises(InputError, match=f"reading and translating its {size} voxels"):
        read_volume(tmp_path / "in.nii.gz")


@pytest.mark.parametrize("architecture, problem", [
    ({"name": "unet", "variant": "pix2pix", "width": 1024, "num_downs": 8}, "would hold"),  # 1e11 values
    ({"name": "resnet", "width": 8, "n_blocks": 100000}, "must lie in"),                  # 75 s to build
    ({"name": "unet", "variant": "pix2pix", "width": 8, "num_downs": 60}, "must lie in"),  # 2^60-pixel inputs
    ({"name": "unet", "variant": "classic", "width": 96, "depth": 5}, "does not fit"),     # ~0.3 GB, tiny weights
])
def test_a_card_asking_for_an_absurd_network_is_refused_before_allocating(tmp_path, architecture, problem):
    package = build_tiny_model(tmp_path / "model")
    card = json.loads((package / "model.json").read_text(encoding="utf-8"))
    card["architecture"] = architecture
    (package / "model.json").write_text(json.dumps(card), encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ModelPackageError, match=problem):
        load_model(package)
    assert time.monotonic() - started < 10


def test_a_config_asking_for_an_absurd_network_is_a_config_error(tmp_path, capsys):
    config = Path(__file__).parents[1] / "Training" / "configs" / "pix2pix_t1_t2.toml"
    assert main(["train", str(config), "--set", "model.generator.width=1024", "--set",
                 "model.generator.num_downs=8", "--set", f"train.out_dir={tmp_path}"]) == 2
    assert "would hold" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_weights_of_a_type_the_network_cannot_use_are_refused(tmp_path):
    package = build_tiny_model(tmp_path / "model")
    weights = package / "weights.safetensors"
    state = load_file(str(weights))
    save_file({name: (t * 100).to(torch.int8) if t.is_floating_point() else t for name, t in state.items()},
              str(weights))
    card = json.loads((package / "model.json").read_text(encoding="utf-8"))
    card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (package / "model.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelPackageError, match="as int8; the network needs floating-point weights"):
        load_model(package)


@pytest.mark.parametrize("spacing", [[True, True], ["1", "1"], [1.0], [1.0, -1.0], [None, 1.0]])
def test_spacings_that_are_not_two_positive_numbers_are_invalid(spacing):
    with pytest.raises(CardError, match="spacing_mm"):
        ModelCard.from_dict(dict(card_fields(spacing_mm=spacing), weights_sha256="0" * 64))


def test_control_characters_in_cards_and_errors_never_reach_the_terminal(tmp_path, monkeypatch, capsys):
    """A card's id, or a file name, holding a terminal escape or a newline is printed escaped, on one line."""
    build_tiny_model(tmp_path / "models" / "evil", id="evil\x1b[2J\nmodel")
    monkeypatch.setenv("MEDTRANSLATE_MODEL_PATH", str(tmp_path / "models"))
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "\x1b" not in listing and "evil\\x1b[2J\\nmodel" in listing
    assert main(["models", "--json"]) == 0
    assert "evil\x1b[2J\nmodel" in [card["id"] for card in json.loads(capsys.readouterr().out)]
    bad = tmp_path / "bad\nname\x1b.nii.gz"
    bad.write_bytes(b"not an image")
    assert main(["translate", str(bad), str(tmp_path / "o.nii.gz"), "--model", "evil\x1b[2J\nmodel"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err


# ----------------------------------------------------------------------------------- the other commands

def test_evaluate_mask_is_validated_like_an_input(tmp_path, capsys):
    image = oblique_volume()
    prediction, reference = tmp_path / "p.nii.gz", tmp_path / "r.nii.gz"
    sitk.WriteImage(image, str(prediction))
    sitk.WriteImage(image, str(reference))
    empty, garbage, fifo = tmp_path / "empty.nii.gz", tmp_path / "garbage.nii.gz", tmp_path / "fifo.nii.gz"
    sitk.WriteImage(image * 0, str(empty))
    garbage.write_bytes(b"not an image at all")
    os.mkfifo(fifo)
    for mask, words in ((empty, "empty"), (garbage, "cannot be read"), (fifo, "FIFO"),
                        (tmp_path / "none.nii.gz", "no such")):
        assert main(["evaluate", str(prediction), str(reference), "--mask", str(mask)]) == 2
        assert words in one_error_line(capsys)
    ones = tmp_path / "ones.nii.gz"
    sitk.WriteImage(image * 0 + 1, str(ones))  # a constant mask that selects everything is a mask
    assert main(["evaluate", str(prediction), str(reference), "--mask", str(ones), "--json"]) == 0


def test_configs_that_are_not_utf8_and_checkpoints_without_a_config_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_bytes('[model]\nid = "caf\xe9"\n'.encode("latin-1"))
    assert main(["train", str(config)]) == 2
    assert "UTF-8" in one_error_line(capsys)
    from MedTranslateLib.training.checkpoint import FORMAT, FORMAT_VERSION

    checkpoint = tmp_path / "no_config.pt"
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, "step": 1}, checkpoint)
    assert main(["export", str(checkpoint), str(tmp_path / "package")]) == 2
    assert "no training config" in one_error_line(capsys)
    assert not (tmp_path / "package").exists()
