"""Where model packages are found: bundled, the user's folder, and folders named by an environment variable.

Search order (the first package with an id wins): `$MEDTRANSLATE_MODEL_PATH` folders (os.pathsep-separated),
the user folder `$MEDTRANSLATE_HOME/models` (default `~/.medtranslate/models`), then MedTranslateLib/models/.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, Tuple, Union

from .card import ModelCard
from .errors import ModelPackageError
from .package import CARD_FILE, TranslationModel, load_package, read_card

BUNDLED_DIR = Path(__file__).resolve().parent / "models"
PATH_VARIABLE = "MEDTRANSLATE_MODEL_PATH"
HOME_VARIABLE = "MEDTRANSLATE_HOME"


def search_folders() -> List[Path]:
    """The folders searched for packages, in priority order."""
    folders = [Path(p).expanduser() for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p]
    home = Path(os.environ.get(HOME_VARIABLE, "~/.medtranslate")).expanduser()
    return folders + [home / "models", BUNDLED_DIR]


def _candidates(folder: Path) -> List[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if (p.is_dir() and (p / CARD_FILE).is_file()) or (p.is_file() and p.suffix == ".zip"))


def discover() -> Dict[str, Tuple[ModelCard, Path]]:
    """Every valid package by id; invalid ones are skipped with a warning naming them."""
    found: Dict[str, Tuple[ModelCard, Path]] = {}
    for folder in search_folders():
        for path in _candidates(folder):
            try:
                card = read_card(path)
            except ModelPackageError as error:
                warnings.warn(f"skipping model package: {error}")
                continue
            found.setdefault(card.id, (card, path))
    return found


def list_models() -> List[ModelCard]:
    """Cards of every package found, sorted by id."""
    return [card for _, (card, _) in sorted(discover().items())]


def resolve(model: Union[str, Path]) -> Path:
    """A package path from an id or a path."""
    candidate = Path(model).expanduser()
    if candidate.exists():
        return candidate
    found = discover()
    if str(model) in found:
        return found[str(model)][1]
    known = ", ".join(sorted(found)) or "none"
    raise ModelPackageError(f"model '{model}' not found (known models: {known}; or give a package path)")


def load_model(model: Union[str, Path, TranslationModel]) -> TranslationModel:
    """Load a package by id or path (a loaded model is returned as is)."""
    if isinstance(model, TranslationModel):
        return model
    return load_package(resolve(model))
