"""Shared fixtures: real MRI templates from PyPI (fetched once into .cache/data/spm), threads for 2 cores."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Training" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def spm_templates() -> dict:
    """Paths of SPM's real templates (avg152 T1/T2/PD, Colin27 T1, the 4D TPM) by short name."""
    from fetch_spm_templates import fetch

    names = {"t1": "canonical/avg152T1.nii", "t2": "canonical/avg152T2.nii", "pd": "canonical/avg152PD.nii",
             "colin_t1": "canonical/single_subj_T1.nii", "tpm": "tpm/TPM.nii"}
    paths = fetch(volumes=tuple(names.values()))
    return dict(zip(names, paths))


@pytest.fixture(autouse=True)
def no_user_model_folders(tmp_path_factory, monkeypatch):
    """Keep the user's ~/.medtranslate and $MEDTRANSLATE_MODEL_PATH out of every test."""
    monkeypatch.setenv("MEDTRANSLATE_HOME", str(tmp_path_factory.getbasetemp() / "home"))
    monkeypatch.delenv("MEDTRANSLATE_MODEL_PATH", raising=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight MR-T1 -> MR-T2 package (Testing/tiny_model.py), built once per session."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-test-model")
