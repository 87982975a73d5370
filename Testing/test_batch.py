"""Batches: a folder (files of every format, subfolders, a DICOM series, a bad file) or a list of files into a
folder; outputs follow the inputs' names and formats, each on its input's grid; a re-run resumes; a bad file
is reported and the rest go on; torchrun shards the files over real processes, every file exactly once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_fixtures import anisotropic_volume, flipped_volume, oblique_volume, write_dicom_series
from MedTranslateLib.batch import Case, collect_cases, is_batch, shard
from MedTranslateLib.cli import main
from MedTranslateLib.errors import InputError
from MedTranslateLib.volume import read_volume, same_grid

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path) -> Path:
    """in/: a.nii.gz, b.nrrd, c.mhd (+ c.zraw), sub/d.mha, dicom/ (a series of 24 files), bad.nii.gz."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sitk.WriteImage(oblique_volume(), str(folder / "a.nii.gz"))
    sitk.WriteImage(flipped_volume(), str(folder / "b.nrrd"))
    sitk.WriteImage(anisotropic_volume(), str(folder / "c.mhd"), True)
    sitk.WriteImage(oblique_volume(np.int16), str(folder / "sub" / "d.mha"))
    write_dicom_series(flipped_volume(np.int16), folder / "dicom")
    (folder / "bad.nii.gz").write_bytes(b"not an image at all")
    return folder


def outputs(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_is_translated_file_by_file_past_a_bad_one_and_resumes(study, tmp_path, tiny_model, capsys):
    out = tmp_path / "out"
    assert main(["translate", str(study), str(out), "--model", str(tiny_model)]) == 1
    captured = capsys.readouterr()
    assert "translated 5, skipped 0 already complete, failed 1 (6 inputs" in captured.out
    failures = [line for line in captured.err.splitlines() if line.startswith("medtranslate:")]
    assert len(failures) == 1 and "bad.nii.gz" in failures[0]
    written = outputs(out)
    assert sorted(written) == ["a.nii.gz", "b.nrrd", "c.mhd", "c.zraw", "dicom.nii.gz", "sub/d.mha"]
    for source, name in (("a.nii.gz", "a.nii.gz"), ("b.nrrd", "b.nrrd"), ("c.mhd", "c.mhd"),
                         ("sub/d.mha", "sub/d.mha"), ("dicom", "dicom.nii.gz")):
        assert same_grid(read_volume(out / name), read_volume(study / source), tolerance=1e-4), name

    (study / "bad.nii.gz").unlink()
    (out / "b.nrrd").unlink()
    assert main(["translate", str(study), str(out), "--model", str(tiny_model)]) == 0
    assert "translated 1, skipped 4 already complete, failed 0" in capsys.readouterr().out
    again = outputs(out)
    assert {k: v for k, v in again.items() if k != "b.nrrd"} == {k: v for k, v in written.items() if k != "b.nrrd"}
    assert "b.nrrd" in again


def test_a_list_of_files_goes_into_a_folder_and_clashes_are_refused(study, tmp_path, tiny_model, capsys):
    out = tmp_path / "listed"
    assert main(["translate", str(study / "a.nii.gz"), str(study / "sub" / "d.mha"), str(out), "--model",
                 str(tiny_model)]) == 0
    assert sorted(outputs(out)) == ["a.nii.gz", "d.mha"]
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(study / "a.nii.gz", twin / "a.nii.gz")
    assert main(["translate", str(study / "a.nii.gz"), str(twin / "a.nii.gz"), str(out), "--model",
                 str(tiny_model)]) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert main(["translate", str(study), str(study), "--model", str(tiny_model)]) == 2
    assert "output folder holds the inputs" in capsys.readouterr().err


def test_what_makes_a_batch(study, tmp_path):
    assert is_batch([str(study)], str(tmp_path / "results"))          # a folder into a name without extension
    assert is_batch([str(study / "a.nii.gz"), str(study / "b.nrrd")], str(tmp_path / "x"))
    assert is_batch([str(study / "a.nii.gz")], str(tmp_path))          # into an existing folder
    assert not is_batch([str(study / "dicom")], str(tmp_path / "dicom.nii.gz"))  # one DICOM folder, one file
    assert not is_batch([str(study / "a.nii.gz")], str(tmp_path / "out"))        # a file: "out" is refused
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no volumes found"):
        collect_cases([tmp_path / "empty"], tmp_path / "o")


def test_shards_are_disjoint_and_cover_every_case():
    cases = [Case(Path(f"in/{n}.nii.gz"), Path(f"out/{n}.nii.gz")) for n in range(11)]
    for world in (1, 2, 3, 4, 16):
        parts = [shard(cases, rank, world) for rank in range(world)]
        flat = [case for part in parts for case in part]
        assert sorted(flat, key=str) == sorted(cases, key=str) and len(flat) == len(set(flat))


def test_torchrun_shards_a_folder_over_two_cpu_processes(study, tmp_path, tiny_model):
    """Two real torchrun processes (gloo): every file once, each rank writing its own, one summary from rank 0."""
    (study / "bad.nii.gz").unlink()
    out = tmp_path / "sharded"
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    command = launcher + ["--standalone", "--nproc_per_node=2", "-m", "MedTranslateLib.cli", "translate",
                          str(study), str(out), "--model", str(tiny_model), "--device", "cpu", "--precision", "fp32"]
    environment = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=240)
    for leftover in tmp_path.glob("torchelastic_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("translated 5, skipped 0 already complete, failed 0 (5 inputs by 2 processes") == 1
    assert sorted(outputs(out)) == ["a.nii.gz", "b.nrrd", "c.mhd", "c.zraw", "dicom.nii.gz", "sub/d.mha"]
    reference = tmp_path / "single"
    assert main(["translate", str(study), str(reference), "--model", str(tiny_model), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    for name in ("a.nii.gz", "b.nrrd", "sub/d.mha"):
        np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(out / name))),
                                   sitk.GetArrayFromImage(sitk.ReadImage(str(reference / name))), rtol=1e-4, atol=1e-2)
