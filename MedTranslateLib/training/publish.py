"""What a model card may say about the data and the machine a model was trained on.

A card travels: a researcher shares it, a hospital publishes it. So it records the training data as the user
would publish it — each data folder relative to the config file when it lies inside the config's folder, else
only the folder's own name, or a placeholder of the user's choosing (`redact`) — with counts, never an
absolute path, an individual file name or a volume name. Machine-local settings (the run's output folder, the
host name) are left out. Checkpoints, which stay on the training machine, keep everything.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path, PurePath
from typing import Any, Dict, Optional

from .config import path_keys
DATA_KEYS = ("source", "target", "manifest")  # config data keys (and provenance keys) that name the data
MACHINE_LOCAL = {"train": ("out_dir",)}       # config keys a card never holds
VOLUME_NAME_KEYS = {"data": ("val_names",)}   # config keys that list volume names (from file names)
PROVENANCE_KEYS = ("paired", "counts")        # what else of the data's provenance a card keeps
MACHINE_TRAINING_KEYS = ("exported_on",)      # card training keys that describe the exporting machine


def data_reference(path: str, config_dir: Optional[str] = None, redact: Optional[str] = None) -> str:
    """How a card names the data at `path`: `redact` when given; else relative to `config_dir` when `path`
    lies inside it; else the last component of `path` (a folder's or a file's own name)."""
    if redact is not None:
        return redact
    if not path:
        return ""
    if config_dir:
        relative = os.path.relpath(os.path.normpath(path), os.path.normpath(config_dir))
        if not relative.startswith(os.pardir) and not os.path.isabs(relative):
            return PurePath(relative).as_posix()
    return PurePath(path.replace("\\", "/")).name


def publishable_config(config: Dict[str, Any], config_dir: Optional[str] = None,
                       redact: Optional[str] = None) -> Dict[str, Any]:
    """A copy of a config dict (`TrainConfig.to_dict()`) fit for a card: every path key named by
    `data_reference`, volume-name lists replaced by their count, machine-local keys dropped."""
    config = copy.deepcopy(config)
    recipe = config.get("recipe")
    for section, keys in path_keys(recipe.get("name") if isinstance(recipe, dict) else None).items():
        table = config.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            if isinstance(table.get(key), str) and table[key]:
                table[key] = data_reference(table[key], config_dir, redact)
    for section, keys in VOLUME_NAME_KEYS.items():
        table = config.get(section)
        for key in keys:
            if isinstance(table, dict) and isinstance(table.get(key), list) and table[key]:
                table[key] = [f"<{len(table[key])} volume name(s) withheld>"]
    for section, keys in MACHINE_LOCAL.items():
        table = config.get(section)
        for key in keys:
            if isinstance(table, dict):
                table.pop(key, None)
    return config


def publishable_provenance(provenance: Any, config_dir: Optional[str] = None,
                           redact: Optional[str] = None) -> Any:
    """The card's `training.data` from the run's data provenance: whether paired, where (see
    `data_reference`) and how many; volume and file names dropped. Prose (an evaluated card's) is kept."""
    if not isinstance(provenance, dict):
        return provenance
    card = {key: provenance[key] for key in PROVENANCE_KEYS if key in provenance}
    for key in DATA_KEYS:
        if isinstance(provenance.get(key), str) and provenance[key]:
            card[key] = data_reference(provenance[key], config_dir, redact)
    return card


def publishable_training(training: Dict[str, Any], config_dir: Optional[str] = None,
                         redact: Optional[str] = None) -> Dict[str, Any]:
    """A card's `training` entry cleaned of paths, names and machine-local settings (see the module
    docstring); also cleans cards exported before this existed, which still load either way."""
    training = {k: v for k, v in training.items() if k not in MACHINE_TRAINING_KEYS}
    if "data" in training:
        training["data"] = publishable_provenance(training["data"], config_dir, redact)
    if isinstance(training.get("config"), dict):
        training["config"] = publishable_config(training["config"], config_dir, redact)
    return training


def config_folder(config_file: Optional[str]) -> Optional[str]:
    """The folder of the config file a run was started from, or None when it was built in code."""
    return str(Path(config_file).parent) if config_file else None
