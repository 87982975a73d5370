"""Where model packages are found: bundled, the user's folder, and folders named by an environment variable.

Search order (the first package with an id wins, with a warning naming both): `$MEDTRANSLATE_MODEL_PATH`
folders (os.pathsep-separated), the user folder `$MEDTRANSLATE_HOME/models` (default `~/.medtranslate/models`),
then MedTranslateLib/models/. A broken package is listed with its reason and never hides the others. A model
argument is a path only when it looks like one (a folder separator, a leading `.` or `~`, or `.zip`); anything
else is an id, so a folder in the current directory that happens to bear a model's id does not shadow it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple, Union

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


class Discovery(NamedTuple):
    """What the search folders hold: valid packages by id (card, path), and broken ones (path, reason)."""

    found: Dict[str, Tuple[ModelCard, Path]]
    broken: List[Tuple[Path, str]]


def _candidates(folder: Path) -> List[Path]:
    try:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if (p.is_dir() and (p / CARD_FILE).exists()) or (p.suffix == ".zip" and not p.is_dir()))
    except OSError:  # an unreadable folder holds nothing we can use
        return []


def discover() -> Discovery:
    """Every package on the search path: valid ones by id (the first of an id wins; a second one is named in a
    warning), broken ones with their reason."""
    found: Dict[str, Tuple[ModelCard, Path]] = {}
    broken: List[Tuple[Path, str]] = []
    for folder in search_folders():
        for path in _candidates(folder):
            try:
                card = read_card(path)
            except ModelPackageError as error:
                broken.append((path, str(error)))
                continue
            if card.id in found:
                warnings.warn(f"model '{card.id}' is in {found[card.id][1]} and in {path}; using the first")
                continue
            found[card.id] = (card, path)
    return Discovery(found, broken)


def list_models() -> List[ModelCard]:
    """Cards of every valid package found, sorted by id; each broken package is named in a warning."""
    found, broken = discover()
    for path, reason in broken:
        warnings.warn(f"skipping model package: {reason}")
    return [card for _, (card, _) in sorted(found.items())]


def looks_like_path(model: Union[str, Path]) -> bool:
    """True for a Path, or a string with a folder separator, a leading '.' or '~', or ending in .zip."""
    if isinstance(model, Path):
        return True
    text = str(model)
    return (any(sep in text for sep in ("/", os.sep, os.altsep or "/")) or text.startswith((".", "~"))
            or text.lower().endswith(".zip"))


def resolve(model: Union[str, Path]) -> Path:
    """A package path from an id or a path (see looks_like_path)."""
    if looks_like_path(model):
        candidate = Path(model).expanduser()
        if not candidate.exists():
            raise ModelPackageError(f"{candidate}: model package not found (no such file or folder)")
        return candidate
    found = discover().found
    if str(model) in found:
        return found[str(model)][1]
    known = ", ".join(sorted(found)) or "none"
    raise ModelPackageError(f"model '{model}' not found (known models: {known}; or give a package path, "
                            f"e.g. ./{model})")


def load_model(model: Union[str, Path, TranslationModel]) -> TranslationModel:
    """Load a package by id or path (a loaded model is returned as is)."""
    if isinstance(model, TranslationModel):
        return model
    return load_package(resolve(model))
