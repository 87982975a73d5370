"""Training configurations: TOML (or YAML, or JSON) files validated on load into dataclasses.

A config has six sections; every key is checked, an unknown key is an error that names it and its section:

    [recipe]     name = "cyclegan" | "pix2pix" | "unet_l2" | "medgan", plus that recipe's own options
    [model]      card fields (id, modalities, ...), [model.generator] and [model.discriminator] network specs
    [intensity]  [intensity.source] and [intensity.target]: the card's intensity mappings
    [data]       folders or a CSV manifest, slicing, cropping, augmentation, validation hold-out
    [optim]      Adam and the constant-then-linear-decay learning-rate schedule
    [train]      seed, device, AMP, output folder, logging/validation/checkpoint cadence

Relative paths in a config file are relative to the file's folder; paths given with `--set` are relative to
the current folder. `--set dotted.key=value` parses the value as a TOML value (`1e-4`, `true`, `[0.8, 1.2]`,
`{kind = "ct", window = [-1024, 3071]}`), else takes it as a plain string, and type-checks it like the file.
"""
from __future__ import annotations

import copy
import json
import re
import sys
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type

from ..axes import SLICE_AXES
from ..card import FUSIONS, PAD_MODES, TASKS
from ..errors import InputError
from ..intensity import MODALITIES, IntensityPair

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
BEST_METRICS = {"mae": "lower", "psnr": "higher", "ssim": "higher"}  # train.keep_best: which way is better
SCALE_KNEE = 0.95  # data.scale moves the input's [0, 1] values below this; those above stretch to keep 1 at 1


class ConfigError(InputError):
    """A config that cannot be read or does not validate; the message names the key."""


def path_field(default: str = "") -> Any:
    """A string config field holding a path (made absolute on load: see load_config)."""
    return field(default=default, metadata={"path": True})


@dataclass
class ModelSection:
    """What the exported card says about the model, and the networks to build (`build_network` specs)."""

    source_modality: str
    target_modality: str
    generator: Dict[str, Any]
    discriminator: Dict[str, Any] = field(default_factory=dict)
    id: str = ""
    version: str = "0.1.0"
    task: str = "translation"
    license: str = "unspecified"
    intended_use: str = "Research use only; not for diagnosis."
    description: str = ""


@dataclass
class IntensitySection:
    """The card's intensity entry (see MedTranslateLib.intensity): how volumes map to [-1, 1]."""

    source: Dict[str, Any]
    target: Dict[str, Any]


@dataclass
class DataSection:
    """Where volumes come from and how slices are drawn from them."""

    paired: bool = True
    source: str = path_field()  # folder A (source modality)
    target: str = path_field()  # folder B (target modality)
    manifest: str = path_field()  # CSV with columns source,target (paths relative to the CSV); paired only
    slice_axis: str = "axial"   # the slicing plane (of validation, and of training unless `planes` lists more)
    planes: List[str] = field(default_factory=list)  # train on slices of each of these planes (e.g. all three,
                                                     # isotropic volumes); inference runs each and fuses them
    fusion: str = "mean"        # how inference fuses the planes' passes: "mean" | "median" (the card keeps it)
    context_slices: int = 0     # ±k neighbouring slices as extra input channels
    spacing_mm: List[float] = field(default_factory=list)  # [row, column] in-plane resampling; [] keeps the files'
    crop_size: int = 256
    batch_size: int = 1
    foreground_floor: float = 0.05   # slice weight = foreground fraction + floor
    flip: bool = True                # random left-right mirror
    gamma: List[float] = field(default_factory=lambda: [1.0, 1.0])  # input gamma jitter range on [0, 1]
    scale: List[float] = field(default_factory=lambda: [1.0, 1.0])  # input [0, 1] values below SCALE_KNEE scaled
                                     # by a factor in this range, the top stretched to keep 1 at 1: below 1 the tissue
                                     # sits low under a brighter scalp or vessels (as on post-contrast T1s)
    pad: str = "reflect"             # crops larger than the slice: "reflect" borders or "background" (-1);
                                     # the card keeps it, and inference pads slices alike
    val_count: int = 0               # hold out the last N pairs by sorted name ...
    val_names: List[str] = field(default_factory=list)  # ... or these names
    val_slices: int = 4              # fixed validation slices per validation volume
    workers: int = 0                 # DataLoader worker processes (0: sample in the training process)


@dataclass
class OptimSection:
    """Adam, constant learning rate until `decay_start`, then linear decay to 0 at `steps`."""

    steps: int
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: int = 0        # >= steps: no decay


@dataclass
class TrainSection:
    """How the run executes and reports."""

    out_dir: str = path_field("runs/train")
    seed: int = 0
    device: str = "auto"        # auto | cpu | cuda | cuda:N (torchrun: each rank takes cuda:LOCAL_RANK)
    amp: bool = True            # autocast (fp16) + GradScaler, on CUDA only
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only where impossible)
    log_every: int = 50
    val_every: int = 1000       # 0: validate only at the end
    checkpoint_every: int = 1000  # 0: checkpoint only at the end (and on Ctrl-C / SIGTERM)
    keep_checkpoints: int = 3
    keep_best: str = ""         # "mae" | "psnr" | "ssim": also keep checkpoints/best.pt, the validated step scoring
                                # best on it (mean of both directions when the recipe has an inverse); "": off
    init_from: str = path_field()  # a checkpoint (or a run folder: its latest) of the same recipe and networks
                                   # whose weights start this run (fine-tuning: optimizers, schedule and step
                                   # start afresh); "": random init


@dataclass
class TrainConfig:
    """A validated training configuration; `recipe` holds the recipe's own Options dataclass."""

    recipe_name: str
    recipe: Any
    model: ModelSection
    intensity: IntensitySection
    data: DataSection
    optim: OptimSection
    train: TrainSection
    path: Optional[str] = None  # the file it came from, if any

    @property
    def in_channels(self) -> int:
        return 2 * self.data.context_slices + 1

    @property
    def intensity_pair(self) -> IntensityPair:
        return IntensityPair.from_dict(self.intensity_dict())

    def intensity_dict(self) -> Dict[str, Any]:
        return {"source": copy.deepcopy(self.intensity.source), "target": copy.deepcopy(self.intensity.target)}

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (strings, numbers, lists, dicts): what checkpoints and cards hold."""
        return {
            "recipe": {"name": self.recipe_name, **asdict(self.recipe)},
            "model": asdict(self.model),
            "intensity": asdict(self.intensity),
            "data": asdict(self.data),
            "optim": asdict(self.optim),
            "train": asdict(self.train),
        }


SECTIONS: Dict[str, Type[Any]] = {"model": ModelSection, "intensity": IntensitySection, "data": DataSection,
                                  "optim": OptimSection, "train": TrainSection}


# ---------------------------------------------------------------------------------------------------- loading

def load_config(path: Any, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read, apply `--set` overrides ("dotted.key=value"), validate. Raises ConfigError naming the problem."""
    path = Path(path)
    raw = read_config_file(path)
    base = path.resolve().parent
    _absolutize(raw, base)
    for override in overrides:
        apply_override(raw, override)
    config = config_from_dict(raw)
    config.path = str(path.resolve())
    return config


def read_config_file(path: Path) -> Dict[str, Any]:
    """The raw nested dict of a .toml/.yaml/.yml/.json file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: config must be {', '.join(CONFIG_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); save the config as UTF-8") from None
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text)
        elif suffix == ".json":
            raw = json.loads(text)
        else:
            raw = _load_yaml(text, path)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()} ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a table of sections")
    return raw


_YAML_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{path}: YAML configs need PyYAML (pip install PyYAML), or use TOML") from None
    class Loader(yaml.SafeLoader):
        """YAML 1.1 reads 1e-4 (no dot) as a string; take it as the number it is, as TOML and JSON do."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    try:
        return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


def parse_value(text: str) -> Any:
    """A `--set` value: a TOML value when it parses as one, else the plain string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: Dict[str, Any], override: str) -> None:
    """Apply one "section.key=value" (or "model.generator.width=8") to the raw config dict, in place."""
    key, equals, text = override.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ConfigError(f"--set '{override}': expected dotted.key=value")
    parts = key.split(".")
    if any(not p for p in parts) or len(parts) < 2:
        raise ConfigError(f"--set '{override}': the key must name a section and a key, e.g. optim.lr=1e-4")
    value = parse_value(text.strip())
    if isinstance(value, str) and _is_path_key(raw, parts) and value:
        value = str((Path.cwd() / value).resolve())
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set '{override}': '{'.'.join(parts[:depth + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Validate a raw nested dict (paths already absolute) into a TrainConfig."""
    from .recipes import RECIPES, get_recipe

    if not isinstance(raw, Mapping):
        raise ConfigError("the config must be a table of sections")
    known = ("recipe",) + tuple(SECTIONS)
    unknown = [s for s in raw if s not in known]
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}] (known: {', '.join(known)})")
    for section in known:
        if section not in raw:
            raise ConfigError(f"config has no [{section}] section")
    recipe_raw = raw["recipe"]
    if not isinstance(recipe_raw, Mapping) or "name" not in recipe_raw:
        raise ConfigError(f"[recipe] needs a name ({', '.join(RECIPES)})")
    name = recipe_raw["name"]
    if name not in RECIPES:
        raise ConfigError(f"recipe.name '{name}' is unknown (known: {', '.join(RECIPES)})")
    recipe_cls = get_recipe(name)
    options = build_section(recipe_cls.Options, {k: v for k, v in recipe_raw.items() if k != "name"}, "recipe")
    sections = {key: build_section(cls, raw[key], key) for key, cls in SECTIONS.items()}
    config = TrainConfig(recipe_name=name, recipe=options, **sections)
    _validate(config, recipe_cls)
    return config


def build_section(cls: Type[Any], raw: Any, section: str) -> Any:
    """Instantiate dataclass `cls` from `raw`, rejecting unknown keys and values of the wrong type."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{section}] must be a table of keys, not {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(f"unknown key '{key}' in section [{section}] (known: {', '.join(names)})")
    values: Dict[str, Any] = {}
    for f in fields(cls):
        if f.name in raw:
            values[f.name] = _check_type(raw[f.name], hints[f.name], f"{section}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
            raise ConfigError(f"section [{section}] is missing the key '{f.name}'")
    return cls(**values)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, not {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, not {_describe(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, not {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, not {_describe(value)}")
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, not {_describe(value)}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a table, not {_describe(value)}")
        return copy.deepcopy(dict(value))
    raise TypeError(f"config field {key} has an unsupported type {hint}")  # a programming error


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def path_keys(recipe_name: Any) -> Dict[str, Tuple[str, ...]]:
    """{section: keys} of every config key holding a path, for the recipe named `recipe_name` (its own Options'
    path keys under "recipe"; none for an unknown recipe)."""
    keys = {section: tuple(f.name for f in fields(cls) if f.metadata.get("path")) for section, cls in SECTIONS.items()}
    keys["recipe"] = _recipe_path_keys(recipe_name)
    return keys


def _recipe_path_keys(name: Any) -> Tuple[str, ...]:
    from .recipes import RECIPES, get_recipe

    if name not in RECIPES:
        return ()
    return tuple(f.name for f in fields(get_recipe(name).Options) if f.metadata.get("path"))


def _recipe_name(raw: Mapping[str, Any]) -> Any:
    recipe = raw.get("recipe")
    return recipe.get("name") if isinstance(recipe, Mapping) else None


def _is_path_key(raw: Mapping[str, Any], parts: List[str]) -> bool:
    if len(parts) != 2:
        return False
    section, key = parts
    return key in path_keys(_recipe_name(raw)).get(section, ())


def _absolutize(raw: Dict[str, Any], base: Path) -> None:
    """Make the file's relative paths absolute, relative to the config file's folder."""
    for section, keys in path_keys(_recipe_name(raw)).items():
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value:
                table[key] = str((base / value).resolve())


# ------------------------------------------------------------------------------------------------- semantics

def _validate(config: TrainConfig, recipe_cls: Any) -> None:
    model, data, optim, train = config.model, config.data, config.optim, config.train
    for key in ("source_modality", "target_modality"):
        if getattr(model, key) not in MODALITIES:
            raise ConfigError(f"model.{key} '{getattr(model, key)}' is unknown (known: {', '.join(MODALITIES)})")
    if model.task not in TASKS:
        raise ConfigError(f"model.task '{model.task}' is unknown (known: {', '.join(TASKS)})")
    _check_network(model.generator, "model.generator", generator=True)
    if recipe_cls.uses_discriminator:
        if not model.discriminator:
            raise ConfigError(f"recipe {config.recipe_name} needs [model.discriminator] (a patchgan spec)")
        _check_network(model.discriminator, "model.discriminator", generator=False)
    elif model.discriminator:
        raise ConfigError(f"model.discriminator: recipe {config.recipe_name} trains no discriminator; remove it")
    try:
        config.intensity_pair
    except ValueError as error:
        raise ConfigError(str(error)) from None

    if data.slice_axis not in SLICE_AXES:
        raise ConfigError(f"data.slice_axis '{data.slice_axis}' is unknown (known: {', '.join(SLICE_AXES)})")
    _at_least(data.context_slices, 0, "data.context_slices")
    if any(plane not in SLICE_AXES for plane in data.planes) or len(set(data.planes)) != len(data.planes):
        raise ConfigError(f"data.planes must list distinct planes among {', '.join(SLICE_AXES)}, not {data.planes}")
    if data.planes and data.slice_axis not in data.planes:
        raise ConfigError(f"data.planes must include data.slice_axis '{data.slice_axis}' (validation slices)")
    if len(data.planes) > 1 and data.spacing_mm:
        raise ConfigError("data.planes with several planes needs data.spacing_mm = [] (volumes isotropic in-plane in "
                          "every plane)")
    if data.fusion not in FUSIONS:
        raise ConfigError(f"data.fusion '{data.fusion}' is unknown (known: {', '.join(FUSIONS)})")
    _at_least(data.crop_size, 8, "data.crop_size")
    from ..networks.factory import spec_size_multiple

    generator = config.model.generator
    downs = spec_size_multiple(generator).bit_length() - 1  # the network's own count, whatever its keys
    if generator.get("upsample") == "pixelshuffle" and data.crop_size >> downs < 2:
        raise ConfigError(f"model.generator.upsample 'pixelshuffle' needs training crops of at least 2x2 pixels at "
                          f"the bottleneck: data.crop_size {data.crop_size} with {downs} downsamplings "
                          "leaves 1x1, where the innermost sub-pixel convolution trains only its centre tap (the "
                          "others then act untrained on larger slices); lower num_downs (depth) or raise crop_size")
    _at_least(data.batch_size, 1, "data.batch_size")
    _at_least(data.val_count, 0, "data.val_count")
    _at_least(data.val_slices, 1, "data.val_slices")
    _at_least(data.workers, 0, "data.workers")
    if data.foreground_floor < 0:
        raise ConfigError("data.foreground_floor must be >= 0")
    for key, ceiling in (("gamma", float("inf")), ("scale", 1.0 / SCALE_KNEE)):
        low_high = getattr(data, key)
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] <= ceiling:
            bound = f" <= {ceiling:.4g}" if ceiling < float("inf") else ""
            raise ConfigError(f"data.{key} must be [low, high] with 0 < low <= high{bound}, not {low_high}")
    if data.pad not in PAD_MODES:
        raise ConfigError(f"data.pad '{data.pad}' is unknown (known: {', '.join(PAD_MODES)})")
    if data.spacing_mm and (len(data.spacing_mm) != 2 or min(data.spacing_mm) <= 0):
        raise ConfigError(f"data.spacing_mm must be [] or [row_mm, column_mm] > 0, not {data.spacing_mm}")
    if data.val_count and data.val_names:
        raise ConfigError("data.val_count and data.val_names are alternatives; set one")
    if data.manifest:
        if not data.paired:
            raise ConfigError("data.manifest lists pairs; it needs data.paired = true")
        if data.source or data.target:
            raise ConfigError("data.manifest replaces data.source and data.target; set either")
    elif not (data.source and data.target):
        raise ConfigError("data needs source and target folders (data.source, data.target) or data.manifest")
    if recipe_cls.needs_pairs and not data.paired:
        raise ConfigError(f"recipe {config.recipe_name} trains on paired data; set data.paired = true")
    if config.intensity.target.get("kind") == "source":
        if not (data.paired and recipe_cls.exports[1] is None):
            raise ConfigError("intensity.target.kind 'source' needs paired data and a one-way recipe: the target "
                              "is mapped with its paired source's range")
        if config.model.source_modality != config.model.target_modality:
            raise ConfigError(f"intensity.target.kind 'source' is for same-modality tasks, not "
                              f"{config.model.source_modality} -> {config.model.target_modality}")
        if data.gamma != [1.0, 1.0] or data.scale != [1.0, 1.0]:
            raise ConfigError("data.gamma and data.scale jitter the source only, so with intensity.target.kind "
                              "'source' the target would no longer be the same scan; leave them at [1.0, 1.0]")
    if recipe_cls.name == "cyclegan" and data.context_slices:
        raise ConfigError("recipe cyclegan needs data.context_slices = 0 (its generators map images both ways)")

    _at_least(optim.steps, 1, "optim.steps")
    if not optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, not {optim.lr}")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(optim, key) < 1:
            raise ConfigError(f"optim.{key} must be in [0, 1), not {getattr(optim, key)}")
    _at_least(optim.decay_start, 0, "optim.decay_start")  # at or past optim.steps: a constant learning rate

    _at_least(train.log_every, 1, "train.log_every")
    _at_least(train.val_every, 0, "train.val_every")
    _at_least(train.checkpoint_every, 0, "train.checkpoint_every")
    _at_least(train.keep_checkpoints, 1, "train.keep_checkpoints")
    if train.keep_best not in ("", *BEST_METRICS):
        raise ConfigError(f"train.keep_best must be one of {', '.join(BEST_METRICS)} or \"\", "
                          f"not {train.keep_best!r}")
    if train.keep_best and not (data.val_count or data.val_names):
        raise ConfigError("train.keep_best needs validation volumes (data.val_count or data.val_names)")
    if not train.out_dir:
        raise ConfigError("train.out_dir must name a folder")
    recipe_cls.validate_options(config)


def _at_least(value: int, low: int, key: str) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, not {value}")


def _check_network(spec: Dict[str, Any], key: str, generator: bool) -> None:
    """Check a network spec with the network factory's own argument and size checks, without building it."""
    from ..networks.factory import check_spec, parameter_count

    try:
        check_spec(spec)
        parameter_count(spec, in_channels=1)  # refuses absurd sizes; counted on the meta device
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    if generator and spec.get("name") == "patchgan":
        raise ConfigError(f"{key}: patchgan is a discriminator, not a generator")
    if not generator and spec.get("name") != "patchgan":
        raise ConfigError(f"{key}: the discriminator must be a patchgan, not {spec.get('name')}")


def flat_items(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1}; network specs and intensity tables flatten too."""
    items: Dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.update(flat_items(value, name + "."))
        else:
            items[name] = value
    return items
