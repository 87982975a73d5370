"""The `medtranslate` command end to end on real MRI volumes (SPM templates from PyPI, bundled sample)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from MedTranslateLib.cli import main
from MedTranslateLib.demo import DEMO_MODEL

CLI = [sys.executable, "-m", "MedTranslateLib.cli"]


def evaluate(capsys, prediction, reference) -> dict:
    assert main(["evaluate", str(prediction), str(reference), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_translate_real_t1_then_evaluate_against_real_t2(spm_templates, tmp_path, capsys):
    out = tmp_path / "t2.nii.gz"
    result = subprocess.run(CLI + ["translate", str(spm_templates["t1"]), str(out), "--model", DEMO_MODEL,
                                   "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    source, translated = sitk.ReadImage(str(spm_templates["t1"])), sitk.ReadImage(str(out))
    assert translated.GetSize() == source.GetSize()
    np.testing.assert_allclose(translated.GetSpacing(), source.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(translated.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(translated.GetDirection(), source.GetDirection(), atol=1e-6)
    model = evaluate(capsys, out, spm_templates["t2"])
    identity = evaluate(capsys, spm_templates["t1"], spm_templates["t2"])
    assert set(model) == {"mae", "mse", "psnr", "ssim", "voxels", "units"}
    assert model["ssim"] > identity["ssim"] + 0.3 and model["mae"] < identity["mae"] / 2


def test_evaluate_text_output_and_mask(spm_templates, tmp_path, capsys):
    reference = sitk.ReadImage(str(spm_templates["t2"]))
    mask = sitk.Cast(reference > 0.2, sitk.sitkUInt8)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    assert main(["evaluate", str(spm_templates["t1"]), str(spm_templates["t2"]), "--mask",
                 str(tmp_path / "mask.nii.gz")]) == 0
    text = capsys.readouterr().out
    assert "SSIM" in text and "PSNR" in text and f"inside {int(sitk.GetArrayViewFromImage(mask).sum())}" in text


def test_evaluate_identical_volumes_is_perfect(spm_templates, capsys):
    metrics = evaluate(capsys, spm_templates["t2"], spm_templates["t2"])
    assert metrics["mae"] == 0 and metrics["ssim"] > 0.9999


def test_models_json_and_info(capsys):
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert DEMO_MODEL in [card["id"] for card in cards]
    assert main(["models"]) == 0
    assert DEMO_MODEL in capsys.readouterr().out
    assert main(["info", DEMO_MODEL]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["metrics"]["model"]["ssim"] > card["metrics"]["baseline_identity"]["ssim"]


def test_demo_writes_volume_and_preview(tmp_path):
    result = subprocess.run(CLI + ["demo", "--out", str(tmp_path / "demo"), "--device", "cpu"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    preview = sitk.ReadImage(str(tmp_path / "demo" / "preview.png"))
    assert preview.GetSize()[0] > 150 and "preview:" in result.stdout
    output = sitk.ReadImage(str(tmp_path / "demo" / "colin27_t2.nii.gz"))
    assert output.GetSize() == (91, 109, 91)
