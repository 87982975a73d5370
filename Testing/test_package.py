"""Model packages: card schema, SHA-256 check, no pickles, folders and zips, the registry's search order."""
from __future__ import annotations

import json
import zipfile

import pytest
import torch

from MedTranslateLib import list_models, load_model
from MedTranslateLib.card import ModelCard
from MedTranslateLib.errors import ModelPackageError
from MedTranslateLib.package import WEIGHTS_FILE, load_package, read_card
from MedTranslateLib.registry import PATH_VARIABLE, resolve
from tiny_model import build_tiny_model, card_fields


@pytest.fixture()
def package(tmp_path):
    return build_tiny_model(tmp_path / "tiny")


def rewrite_card(package, **changes):
    card = json.loads((package / "model.json").read_text(encoding="utf-8"))
    card.update(changes)
    for key in [k for k, v in changes.items() if v is None and k != "spacing_mm"]:
        del card[key]
    (package / "model.json").write_text(json.dumps(card))


def test_load_gives_card_and_eval_network_with_fp16_weights_restored(package):
    model = load_package(package)
    assert isinstance(model.card, ModelCard) and model.card.id == "tiny-test-model"
    assert not model.network.training
    torch.manual_seed(1234)
    reference = build_tiny_model(package.parent / "again")
    assert read_card(reference).weights_sha256 == model.card.weights_sha256  # deterministic export
    assert all(p.dtype == torch.float32 for p in model.network.parameters())


def test_zip_package_loads_like_the_folder(package, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in package.iterdir():
            out.write(file, f"tiny/{file.name}")
    from_zip, from_folder = load_package(archive), load_package(package)
    for a, b in zip(from_zip.network.state_dict().values(), from_folder.network.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("changes, words", [
    ({"colour": "blue"}, "unknown key"),
    ({"license": None}, "missing key 'license'"),
    ({"task": "segmentation"}, "task"),
    ({"source_modality": "X-ray"}, "source_modality"),
    ({"slice_axis": "oblique"}, "slice_axis"),
    ({"context_slices": "1"}, "context_slices"),
    ({"pad": "zeros"}, "pad"),
    ({"spacing_mm": [1.0]}, "spacing_mm"),
    ({"schema_version": 99}, "schema_version"),
    ({"intensity": {"source": {"kind": "ct"}, "target": {"kind": "ct", "window": [0, 1]}}}, "window"),
])
def test_card_schema_errors_name_the_key(package, changes, words):
    rewrite_card(package, **changes)
    with pytest.raises(ModelPackageError, match=words):
        load_package(package)


def test_hash_mismatch_is_refused(package):
    weights = package / WEIGHTS_FILE
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelPackageError, match="SHA-256"):
        load_package(package)


def test_unknown_architecture_and_wrong_shapes_are_refused(tmp_path):
    unknown = build_tiny_model(tmp_path / "a")
    rewrite_card(unknown, architecture={"name": "transformer"})
    with pytest.raises(ModelPackageError, match="unknown architecture 'transformer'"):
        load_package(unknown)
    wider = build_tiny_model(tmp_path / "b")
    rewrite_card(wider, architecture={"name": "unet", "variant": "classic", "width": 8, "depth": 2})
    with pytest.raises(ModelPackageError, match="does not fit"):
        load_package(wider)


def test_pickled_weights_are_never_loaded(package):
    """A torch.save pickle renamed to weights.safetensors is rejected by the safetensors parser."""
    weights = package / WEIGHTS_FILE
    torch.save(load_package(package).network.state_dict(), weights)
    import hashlib
    rewrite_card(package, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(ModelPackageError, match="not a safetensors file"):
        load_package(package)


def test_registry_search_order_env_then_user_then_bundled(tmp_path, monkeypatch):
    first, second, home = tmp_path / "first", tmp_path / "second", tmp_path / "home"
    build_tiny_model(first / "pkg", version="1.0.0")
    build_tiny_model(second / "pkg", version="2.0.0")
    build_tiny_model(home / "models" / "user-pkg", id="user-model")
    monkeypatch.setenv(PATH_VARIABLE, f"{first}:{second}")
    monkeypatch.setenv("MEDTRANSLATE_HOME", str(home))
    cards = {card.id: card for card in list_models()}
    assert cards["tiny-test-model"].version == "1.0.0"
    assert "user-model" in cards
    assert resolve("user-model") == home / "models" / "user-pkg"
    assert load_model("tiny-test-model").card.version == "1.0.0"


def test_registry_skips_broken_packages_with_a_warning(tmp_path, monkeypatch):
    build_tiny_model(tmp_path / "good")
    broken = build_tiny_model(tmp_path / "broken", id="broken")
    (broken / "model.json").write_text("{not json")
    monkeypatch.setenv(PATH_VARIABLE, str(tmp_path))
    with pytest.warns(UserWarning, match="broken"):
        ids = [card.id for card in list_models()]
    assert "tiny-test-model" in ids and "broken" not in ids


def test_unknown_model_names_the_known_ones(tmp_path, monkeypatch):
    build_tiny_model(tmp_path / "tiny")
    monkeypatch.setenv(PATH_VARIABLE, str(tmp_path))
    with pytest.raises(ModelPackageError, match="tiny-test-model"):
        load_model("no-such-model")


def test_bundled_models_all_load():
    for card in list_models():
        model = load_model(card.id)
        assert model.card.in_channels == 2 * card.context_slices + 1


def test_card_round_trip_keeps_every_key():
    fields = card_fields(weights_sha256="0" * 64, warnings=["w"], description="d", pad="background",
                         precision="fp32")
    assert ModelCard.from_dict(fields).to_dict() == fields
    del fields["pad"], fields["precision"]  # a card written before the keys existed: mirrored borders and
    # autocast as the machine allows, said explicitly from now on
    assert ModelCard.from_dict(fields).to_dict() == {**fields, "pad": "reflect", "precision": "auto"}


def test_loading_a_model_imports_no_compiler():
    """Every Apply in Slicer and every CLI call loads a model in a fresh process: counting a network's values on
    the meta device must not pull in TorchDynamo (1 s on this CPU, 5 s on a GPU machine before this held)."""
    import subprocess
    import sys

    code = ("import sys, torch, MedTranslateLib; before = 'torch._dynamo' in sys.modules; "
            "MedTranslateLib.load_model('mr-t1-to-t2-pix2pix'); "
            "print(before or 'torch._dynamo' not in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True", done.stdout + done.stderr
