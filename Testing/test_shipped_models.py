"""The bundled models: each documented and better than its baselines; the catalogue covers every seed-paper task."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import SimpleITK as sitk

from MedTranslateLib import list_models, load_model, translate_image
from MedTranslateLib.cli import main
from MedTranslateLib.demo import DEMO_MODEL, SAMPLE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Training"))
from shipped_models import CONFIGS, PRECEDING, RUN_NAMES, SHIPPED  # noqa: E402

CATALOGUE = [model.id for model in SHIPPED]
BUNDLED = [card.id for card in list_models() if card.id in CATALOGUE]  # those that beat their baselines
TASKS = {  # what the seed papers ask for: (source, target, task)
    ("MR-T1", "MR-T2", "translation"), ("MR-T2", "MR-T1", "translation"), ("MR-T1", "MR-PD", "translation"),
    ("CT", "MR-T1", "translation"), ("MR-T1", "CT", "translation"), ("PET", "CT", "translation"),
    ("MR-T1", "MR-T1", "motion-correction"), ("PET", "PET", "denoising"),
}


def test_catalogue_covers_every_task_and_method_of_the_seed_papers():
    configs = {model.id: model.config for model in SHIPPED}
    assert all(path.is_file() for path in configs.values())
    text = "\n".join(path.read_text(encoding="utf-8") for path in configs.values())
    for source, target, task in TASKS:
        assert f'source_modality = "{source}"\ntarget_modality = "{target}"' in text or source == "MR-T2"
        assert f'task = "{task}"' in text
    for recipe in ("cyclegan", "pix2pix", "unet_l2", "medgan"):
        assert f'name = "{recipe}"' in text


def test_a_run_that_starts_from_another_names_its_folder_and_trains_after_it():
    from MedTranslateLib.training.config import load_config

    for run, first in PRECEDING.items():
        config = load_config(CONFIGS / f"{run}.toml")
        assert Path(config.train.init_from) == Path(load_config(CONFIGS / f"{first}.toml").train.out_dir)
        assert RUN_NAMES.index(first) < RUN_NAMES.index(run)
    assert not [run for run in RUN_NAMES if load_config(CONFIGS / f"{run}.toml").train.init_from
                and run not in PRECEDING]


def test_a_run_waits_while_the_run_it_starts_from_is_pending_or_training():
    from build_shipped_models import next_ready

    preceding = {"second": "first"}
    assert next_ready(["second", "first", "other"], set(), preceding) == "first"
    assert next_ready(["second", "other"], {"first"}, preceding) == "other"
    assert next_ready(["second"], {"first"}, preceding) is None
    assert next_ready(["second"], set(), preceding) == "second"  # first finished (or was not asked for)


def test_demo_model_is_bundled_and_training_readme_reports_every_catalogue_model():
    assert DEMO_MODEL in BUNDLED
    readme = (REPO / "Training" / "README.md").read_text(encoding="utf-8")
    for model_id in CATALOGUE:
        assert f"| `{model_id}` |" in readme, f"{model_id} missing from Training/README.md's table"
        assert f"results/shipped/{model_id}.png" in readme and (REPO / "Training" / "results" / "shipped" /
                                                                 f"{model_id}.png").is_file()


def test_models_command_lists_every_bundled_model(capsys):
    assert main(["models", "--json"]) == 0
    listed = {card["id"] for card in json.loads(capsys.readouterr().out)}
    assert set(BUNDLED) <= listed


@pytest.mark.parametrize("model_id", BUNDLED)
def test_card_documents_data_and_beats_both_baselines(model_id):
    card = load_model(model_id).card
    training, metrics = card.training, card.metrics
    assert "spm-runtime-R2025b" in training["data"] and "GPL-2" in training["data"]
    assert "TPM" in training["simulation"] and "held out" in training["split"]
    assert training["hardware"] and training["steps"] > 0 and training["complete"]
    if "selected" in training:  # a checkpoint chosen on validation volumes: the card says which step and how
        assert f"step {training['selected']['step']} of {training['planned_steps']}, chosen by" in training["split"]
    assert metrics["beats_baselines"] and metrics["cases"] >= 5
    model = metrics["model"]
    for baseline in (metrics["baseline_identity"], metrics["baseline_histogram_matching"]):
        assert model["mae"] < baseline["mae"] and model["psnr"] > baseline["psnr"] and model["ssim"] > baseline["ssim"]
    assert ("HU" == metrics["units"]) == (card.target_modality == "CT")
    size = sum(f.stat().st_size for f in Path(load_model(model_id).path).iterdir())
    assert size < 12 * 2 ** 20  # small: fp16 weights (the largest bundled now are 6.3 MiB)


@pytest.mark.parametrize("model_id", BUNDLED)
def test_model_translates_a_real_volume_onto_its_grid(model_id):
    image = sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)[:, :, 40:48]  # Colin27, 8 axial slices
    output = translate_image(image, load_model(model_id), device="cpu")
    assert output.GetSize() == image.GetSize()
    assert output.GetOrigin() == image.GetOrigin() and output.GetSpacing() == image.GetSpacing()
    assert output.GetDirection() == image.GetDirection()
    values = sitk.GetArrayFromImage(output)
    assert np.isfinite(values).all() and values.std() > 0


ABSOLUTE_PATH = re.compile(r"(^|[\s\"'(=:,])(/[^/\s\"']+/|[A-Za-z]:[\\/]|~/)")  # /x/..., C:\..., ~/...


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


@pytest.mark.parametrize("document", sorted((REPO / "MedTranslateLib" / "models").glob("*/model.json"))
                         + [REPO / "Training" / "results" / "shipped" / "metrics.json"], ids=lambda p: p.parent.name)
def test_bundled_cards_and_results_hold_no_path_of_the_building_machine(document):
    data = json.loads(document.read_text(encoding="utf-8"))
    leaks = [text for text in strings_in(data) if ABSOLUTE_PATH.search(text)]
    assert not leaks, leaks[:3]
    assert '"out_dir"' not in document.read_text(encoding="utf-8")
