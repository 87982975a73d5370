"""Training data: volumes from folders (or a CSV manifest) -> random 2-D (2.5-D) slices, drawn on the fly.

Volumes are read with `volume.read_volume` (any format it reads, DICOM folders too), optionally resampled
in-plane (`resample`), presented as (slice, row, column) with `axes.reorientation` - the same view inference
uses - and mapped to [-1, 1] with the config's `IntensityPair` fitted per volume, the one intensity path that
inference shares. Sampling then draws:

- a slice, with probability proportional to its foreground fraction plus a small floor (from the slices of
  every plane in `data.planes`, views of one array, when the model trains on several);
- its ±k neighbours as channels, clamped at the volume's ends (`engine.slice_indices`);
- a random crop of `crop_size` (smaller slices are padded: mirrored borders, or background -1);
- a random left-right mirror (columns; for sagittal slices, the order of the context slices);
- a random gamma, then a random scale of the values below `SCALE_KNEE`, on the [0, 1]-rescaled input.

Everything random comes from a numpy Generator, so a seed fixes the stream. `SliceStream` is an infinite
IterableDataset whose generator state goes into checkpoints; `SliceDataset` is a map-style Dataset whose
item i depends only on (seed, i), for DataLoader workers and DistributedSampler.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from skimage.filters import threshold_otsu
from torch.utils.data import Dataset, IterableDataset

from ..axes import reorientation
from ..engine import pad_to_multiple, slice_indices
from ..errors import InputError
from ..intensity import IntensityMapping, IntensityRange
from ..resample import SPACING_TOLERANCE, in_plane_spacing_target, resample_to_spacing
from ..volume import describe_grid, read_volume, same_grid, volume_extension
from .config import SCALE_KNEE, DataSection, TrainConfig

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".vtk")  # .hdr: Analyze/.img
_SAMPLE_VOXELS = 1_000_000


# ----------------------------------------------------------------------------------------------- discovery

def volume_name(path: Path) -> str:
    """A volume's name for pairing and hold-out: the file name without its extension (.nii.gz as one)."""
    extension = volume_extension(path) if path.is_file() else ""
    return path.name[: len(path.name) - len(extension)] if extension else path.name


def list_volumes(folder: Path, role: str) -> Dict[str, Path]:
    """{name: path} of the volume files (and DICOM sub-folders) in `folder`; `role` names it in errors."""
    if not folder.is_dir():
        raise InputError(f"data.{role}: {folder} is not a folder")
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and volume_extension(path) not in VOLUME_EXTENSIONS:
            continue
        name = volume_name(path)
        if name in found:
            raise InputError(f"data.{role}: {found[name].name} and {path.name} in {folder} share the name '{name}'")
        found[name] = path
    if not found:
        raise InputError(f"data.{role}: {folder} holds no volumes ({', '.join(VOLUME_EXTENSIONS)} or DICOM folders)")
    return found


def paired_files(data: DataSection) -> List[Tuple[str, Path, Path]]:
    """[(name, source path, target path)] sorted by name, from the manifest or the two folders."""
    if data.manifest:
        return _manifest_pairs(Path(data.manifest))
    sources, targets = list_volumes(Path(data.source), "source"), list_volumes(Path(data.target), "target")
    alone = sorted(set(sources) ^ set(targets))
    if alone:
        where = [f"{name} (only in {'source' if name in sources else 'target'})" for name in alone[:5]]
        raise InputError(f"paired data: every volume needs a partner of the same name; unmatched: {', '.join(where)}"
                         f"{' …' if len(alone) > 5 else ''}")
    return [(name, sources[name], targets[name]) for name in sorted(sources)]


def _manifest_pairs(manifest: Path) -> List[Tuple[str, Path, Path]]:
    if not manifest.is_file():
        raise InputError(f"data.manifest: {manifest}: no such file")
    with open(manifest, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "source" not in columns or "target" not in columns:
            raise InputError(f"{manifest}: a manifest needs the columns source,target (found: {', '.join(columns)})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    pairs: Dict[str, Tuple[str, Path, Path]] = {}
    for line, row in enumerate(rows, start=2):
        if not row["source"] or not row["target"]:
            raise InputError(f"{manifest}, line {line}: empty source or target")
        source, target = manifest.parent / row["source"], manifest.parent / row["target"]
        name = volume_name(source)
        if name in pairs:
            raise InputError(f"{manifest}, line {line}: the name '{name}' appears twice")
        pairs[name] = (name, source, target)
    if not pairs:
        raise InputError(f"{manifest}: the manifest lists no pairs")
    return [pairs[name] for name in sorted(pairs)]


def split_names(names: Sequence[str], data: DataSection, available: Optional[Sequence[str]] = None) -> List[str]:
    """The validation names: `val_names` (each must exist in `available`), or the last `val_count` sorted."""
    pool = sorted(available if available is not None else names)
    if data.val_names:
        missing = [n for n in data.val_names if n not in pool]
        if missing:
            raise InputError(f"data.val_names: no pair named {', '.join(missing)} (pairs: {', '.join(pool[:8])}"
                             f"{' …' if len(pool) > 8 else ''})")
        held = list(dict.fromkeys(data.val_names))
    else:
        if data.val_count > len(pool):
            raise InputError(f"data.val_count = {data.val_count}, but only {len(pool)} pairs can be held out")
        held = pool[len(pool) - data.val_count:] if data.val_count else []
    if held and len(set(names) - set(held)) == 0:
        raise InputError("validation would hold out every training volume; lower data.val_count")
    return held


# -------------------------------------------------------------------------------------------------- volumes

@dataclass
class Volume:
    """One volume in network range, as (slices, rows, columns) float32, with its per-slice sampling weight."""

    name: str
    path: str
    array: np.ndarray
    weights: np.ndarray
    range: IntensityRange
    spacing: Tuple[float, float]  # in-plane (row, column) mm
    plane: str = "axial"          # the slicing plane of `array`
    direction: Tuple[float, ...] = ()    # the file's direction cosines and voxel spacing: how `array` was
    spacing_ijk: Tuple[float, ...] = ()  # presented (axes.reorientation), so other planes can be viewed


def sliced_along(volume: Volume, plane: str, floor: float) -> Volume:
    """The same voxels sliced along `plane`: a view of `volume.array`, with its own slice weights and spacing."""
    if plane == volume.plane:
        return volume
    voxels = reorientation(volume.direction, volume.plane).undo(volume.array)  # [k, j, i] view
    orientation = reorientation(volume.direction, plane)
    array = orientation.apply(voxels)
    spacing = orientation.spacing(volume.spacing_ijk)
    return Volume(volume.name, volume.path, array, slice_weights(array, floor), volume.range,
                  (spacing[1], spacing[2]), plane, volume.direction, volume.spacing_ijk)


@dataclass
class Pair:
    """A source volume and its target on the same grid."""

    name: str
    source: Volume
    target: Volume


def _oriented(image: sitk.Image, slice_axis: str) -> np.ndarray:
    view = reorientation(image.GetDirection(), slice_axis).apply(sitk.GetArrayViewFromImage(image))
    return np.ascontiguousarray(view, dtype=np.float32)


def _resampled(image: sitk.Image, data: DataSection) -> sitk.Image:
    if not data.spacing_mm:
        return image
    target = in_plane_spacing_target(image, reorientation(image.GetDirection(), data.slice_axis), data.spacing_mm)
    return image if target is None else resample_to_spacing(image, target)


def prepare_volume(image: sitk.Image, name: str, path: str, fit: Callable[[np.ndarray], IntensityRange],
                   data: DataSection) -> Volume:
    """Resample, orient, fit the intensity range to this volume (`fit`: oriented units -> range) and map it
    to [-1, 1]."""
    image = _resampled(image, data)
    orientation = reorientation(image.GetDirection(), data.slice_axis)
    units = _oriented(image, data.slice_axis)
    fitted = fit(units)
    network = fitted.to_network(units)
    spacing = orientation.spacing(image.GetSpacing())
    return Volume(name, path, network, slice_weights(network, data.foreground_floor), fitted,
                  (spacing[1], spacing[2]), data.slice_axis, tuple(image.GetDirection()), tuple(image.GetSpacing()))


def slice_weights(array: np.ndarray, floor: float) -> np.ndarray:
    """(S,) foreground fraction of each slice (voxels above the volume's Otsu threshold) plus `floor`."""
    sample = array.reshape(-1)[:: max(1, array.size // _SAMPLE_VOXELS)]
    threshold = threshold_otsu(sample) if sample.min() < sample.max() else sample.min()
    fraction = (array > threshold).reshape(len(array), -1).mean(axis=1)
    return fraction.astype(np.float64) + floor


def load_pair(name: str, source: Path, target: Path, config: TrainConfig) -> Pair:
    """Read a pair; refuse it (naming it) when the two volumes are not on one grid."""
    source_image, target_image = read_volume(source), read_volume(target)
    if not same_grid(source_image, target_image, tolerance=1e-3):
        raise InputError(f"pair '{name}': {source} ({describe_grid(source_image)}) and {target} "
                         f"({describe_grid(target_image)}) are not on the same grid; register and resample them first")
    pair = config.intensity_pair
    source_volume = prepare_volume(source_image, name, str(source), pair.source.fit, config.data)
    return Pair(name, source_volume, prepare_volume(target_image, name, str(target),
                                                    lambda units: pair.paired_target_range(units, source_volume.range),
                                                    config.data))


def load_single(name: str, path: Path, mapping: IntensityMapping, config: TrainConfig) -> Volume:
    return prepare_volume(read_volume(path), name, str(path), mapping.fit, config.data)


# ------------------------------------------------------------------------------------------------- sampling

class SliceSampler:
    """Draws one training sample {"source": (2k+1, s, s), "target": (1, s, s)} float32 from a Generator.

    Paired: both crops come from the same slice, window and mirror. Unpaired: source and target are drawn
    independently from their own volumes. The gamma and scale jitters touch the source only.
    """

    def __init__(self, sources: Sequence[Volume], targets: Sequence[Volume], data: DataSection, paired: bool) -> None:
        if paired and len(sources) != len(targets):
            raise ValueError("paired sampling needs as many targets as sources")
        self.sources, self.targets = list(sources), list(targets)
        self.data = data
        self.paired = paired
        self.source_table = _Table(self.sources)
        self.target_table = self.source_table if paired else _Table(self.targets)

    def draw(self, generator: np.random.Generator) -> Dict[str, np.ndarray]:
        volume, index = self.source_table.draw(generator)
        source = self._stack(self.sources[volume], index, self.data.context_slices)
        if self.paired:
            target = self._stack(self.targets[volume], index, 0)
            both = self._augment(np.concatenate([source, target]), generator, self.sources[volume].plane)
            source, target = both[:-1], both[-1:]
        else:
            source = self._augment(source, generator, self.sources[volume].plane)
            t_volume, t_index = self.target_table.draw(generator)
            target = self._augment(self._stack(self.targets[t_volume], t_index, 0), generator,
                                   self.targets[t_volume].plane)
        source = self._intensity(source, generator)
        return {"source": np.ascontiguousarray(source), "target": np.ascontiguousarray(target)}

    @staticmethod
    def _stack(volume: Volume, index: int, context: int) -> np.ndarray:
        numbers = slice_indices(len(volume.array), context, np.array([index]))[0]
        return volume.array[numbers]

    def _augment(self, stack: np.ndarray, generator: np.random.Generator, plane: str) -> np.ndarray:
        """Random crop (padded when the slice is smaller) and left-right mirror of a (C, H, W) stack of a
        `plane` slice."""
        crop = self.data.crop_size
        height, width = stack.shape[-2:]
        ch, cw = min(height, crop), min(width, crop)
        top = int(generator.integers(0, height - ch + 1))
        left = int(generator.integers(0, width - cw + 1))
        stack = stack[:, top:top + ch, left:left + cw]
        if (ch, cw) != (crop, crop):
            stack = pad_to_size(stack, crop, self.data.pad)
        if self.data.flip and generator.random() < 0.5:
            if plane == "sagittal" and self.paired:
                # mirroring the head swaps the neighbours of a sagittal slice, not its columns
                context = stack[:-1][::-1]
                stack = np.concatenate([context, stack[-1:]])
            elif plane == "sagittal":
                stack = stack[::-1]
            else:
                stack = stack[:, :, ::-1]
        return stack

    def _intensity(self, source: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """(C, H, W) source in [-1, 1] -> unit ** gamma through `knee_curve(scale)`, mapped back to [-1, 1]. The
        scale is drawn only where the config sets a range, so configs without one keep their random stream."""
        gamma = generator.uniform(*self.data.gamma)
        scale = generator.uniform(*self.data.scale) if self.data.scale != [1.0, 1.0] else 1.0
        if gamma == 1.0 and scale == 1.0:
            return source
        unit = np.clip((source + 1.0) / 2.0, 0.0, 1.0) ** gamma
        return (knee_curve(unit, scale) * 2.0 - 1.0).astype(np.float32)


def knee_curve(unit: np.ndarray, scale: float) -> np.ndarray:
    """[0, 1] values below SCALE_KNEE times `scale`, the rest on the line from (SCALE_KNEE, scale * SCALE_KNEE) to
    (1, 1): the tissue moves down (scale < 1, as under a brighter scalp or vessels) or up, the top stays at 1."""
    low = SCALE_KNEE * scale
    top = low + (unit - SCALE_KNEE) * (1.0 - low) / (1.0 - SCALE_KNEE)
    return np.where(unit < SCALE_KNEE, unit * scale, top)


def pad_to_size(stack: np.ndarray, size: int, mode: str) -> np.ndarray:
    """(C, h, w) with h, w <= size -> (C, size, size), centred, padded as inference pads (`engine.pad_to_multiple`,
    `mode` "reflect" or "background")."""
    return pad_to_multiple(torch.from_numpy(np.ascontiguousarray(stack))[None], size, mode)[0].numpy()


class _Table:
    """Cumulative slice weights over all volumes, for weighted (volume, slice) draws."""

    def __init__(self, volumes: Sequence[Volume]) -> None:
        self.owner = np.concatenate([np.full(len(v.weights), i) for i, v in enumerate(volumes)])
        self.index = np.concatenate([np.arange(len(v.weights)) for v in volumes])
        weights = np.concatenate([v.weights for v in volumes])
        self.cumulative = np.cumsum(weights / weights.sum())

    def draw(self, generator: np.random.Generator) -> Tuple[int, int]:
        position = min(int(np.searchsorted(self.cumulative, generator.random(), side="right")),
                       len(self.cumulative) - 1)
        return int(self.owner[position]), int(self.index[position])


def collate(samples: Sequence[Dict[str, np.ndarray]]) -> Dict[str, torch.Tensor]:
    """[{"source": (C,H,W), "target": (1,H,W)}] -> {"source": (B,C,H,W), "target": (B,1,H,W)} tensors."""
    return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}


class SliceStream(IterableDataset):
    """Endless samples from one numpy Generator seeded by (seed, rank); its state is checkpointable.

    In DataLoader worker processes each worker seeds its own generator from (seed, rank, worker id).
    """

    def __init__(self, sampler: SliceSampler, seed: int, rank: int = 0) -> None:
        super().__init__()
        self.sampler = sampler
        self.seed, self.rank = seed, rank
        self.generator = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, rank)))

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        generator = self.generator
        if info is not None:
            generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1, self.rank, info.id)))
        while True:
            yield self.sampler.draw(generator)

    def next_batch(self, batch_size: int) -> Dict[str, torch.Tensor]:
        return collate([self.sampler.draw(self.generator) for _ in range(batch_size)])

    def state_dict(self) -> Dict[str, Any]:
        return {"kind": "stream", "generator": json.dumps(self.generator.bit_generator.state)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.bit_generator.state = json.loads(state["generator"])


class SliceDataset(Dataset):
    """`length` samples; item i is drawn from a Generator seeded by (seed, i) alone, so any sampler
    (DistributedSampler included) and any number of workers give the same items."""

    def __init__(self, sampler: SliceSampler, seed: int, length: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.sampler.draw(np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0, index))))


# ------------------------------------------------------------------------------------------------ the set

@dataclass
class ValidationSlices:
    """Fixed slices of one validation pair: network-range inputs and unclipped references in their own units;
    the reverse half (target -> source) only for recipes with an inverse generator (CycleGAN), else None."""

    name: str
    indices: List[int]
    inputs: np.ndarray          # (N, 2k+1, H, W) source slices, network range
    targets: np.ndarray         # (N, H, W) target units (the unclipped volume)
    target_range: IntensityRange
    source_range: IntensityRange
    reverse_inputs: Optional[np.ndarray] = None  # (N, 2k+1, H, W) target slices, network range
    sources: Optional[np.ndarray] = None         # (N, H, W) source units (the unclipped volume)


@dataclass
class TrainingData:
    """Everything the trainer needs from the data: the sampler, validation slices, provenance."""

    sampler: SliceSampler
    validation: List[ValidationSlices]
    spacing_mm: List[float]
    provenance: Dict[str, Any] = field(default_factory=dict)

    def stream(self, seed: int, rank: int = 0) -> SliceStream:
        return SliceStream(self.sampler, seed, rank)


def load_training_data(config: TrainConfig, log: Any = None, reverse: bool = False) -> TrainingData:
    """Discover, split, read and prepare every volume the config names; `reverse` also prepares the
    validation slices of the target -> source direction."""
    data = config.data
    mapping = config.intensity_pair
    if data.paired:
        files = paired_files(data)
        names = [name for name, _, _ in files]
        held = split_names(names, data)
        pairs = [load_pair(name, source, target, config) for name, source, target in files]
        train_pairs = [p for p in pairs if p.name not in held]
        sources, targets = [p.source for p in train_pairs], [p.target for p in train_pairs]
        val_pairs = [p for p in pairs if p.name in held]
        provenance: Dict[str, Any] = {
            "paired": True,
            **({"manifest": data.manifest} if data.manifest else {"source": data.source, "target": data.target}),
            "training": [p.name for p in train_pairs],
            "validation": [p.name for p in val_pairs],
            "files": {p.name: [Path(p.source.path).name, Path(p.target.path).name] for p in pairs},
        }
    else:
        source_files = list_volumes(Path(data.source), "source")
        target_files = list_volumes(Path(data.target), "target")
        common = sorted(set(source_files) & set(target_files))
        held = split_names(sorted(source_files), data, available=common) if (data.val_count or data.val_names) else []
        if held and not set(target_files) - set(held):
            raise InputError("validation would hold out every target volume; lower data.val_count")
        sources = [load_single(n, p, mapping.source, config) for n, p in source_files.items() if n not in held]
        targets = [load_single(n, p, mapping.target, config) for n, p in target_files.items() if n not in held]
        val_pairs = [load_pair(n, source_files[n], target_files[n], config) for n in held]
        provenance = {
            "paired": False, "source": data.source, "target": data.target,
            "training_source": [v.name for v in sources], "training_target": [v.name for v in targets],
            "validation": held,
            "files": {"source": sorted(p.name for p in source_files.values()),
                      "target": sorted(p.name for p in target_files.values())},
        }
    provenance["counts"] = {
        "training_source_volumes": len(sources), "training_target_volumes": len(targets),
        "validation_pairs": len(val_pairs), "training_source_slices": int(sum(len(v.array) for v in sources)),
    }
    if len(data.planes) > 1:
        sources, targets = (in_planes(volumes, data) for volumes in (sources, targets))
    spacing = _common_spacing(sources + targets + [v for p in val_pairs for v in (p.source, p.target)])
    sampler = SliceSampler(sources, targets, data, paired=data.paired)
    validation = [validation_slices(p, data, reverse) for p in val_pairs]
    return TrainingData(sampler, validation, spacing, provenance)


def in_planes(volumes: Sequence[Volume], data: DataSection) -> List[Volume]:
    """Every volume sliced along each of `data.planes` (views, no copies), volume by volume, so that paired
    sources and targets stay in step."""
    return [sliced_along(volume, plane, data.foreground_floor) for volume in volumes for plane in data.planes]


def _common_spacing(volumes: Sequence[Volume]) -> List[float]:
    first = volumes[0].spacing
    for volume in volumes[1:]:
        if any(abs(a - b) > SPACING_TOLERANCE * b for a, b in zip(volume.spacing, first)):
            raise InputError(f"volumes have different in-plane spacings ({volumes[0].name}: "
                             f"{first[0]:g}×{first[1]:g} mm, {volume.name}: {volume.spacing[0]:g}×"
                             f"{volume.spacing[1]:g} mm); set data.spacing_mm to resample them to one")
    return [round(float(s), 6) for s in first]


def validation_slices(pair: Pair, data: DataSection, reverse: bool = False) -> ValidationSlices:
    """`val_slices` slices spread evenly over the slices with at least half the peak foreground fraction."""
    fraction = pair.source.weights - data.foreground_floor
    candidates = np.flatnonzero(fraction >= 0.5 * fraction.max())
    picks = np.unique(candidates[np.linspace(0, len(candidates) - 1, data.val_slices).round().astype(int)])
    rows = slice_indices(len(pair.source.array), data.context_slices, picks)
    slices = ValidationSlices(pair.name, [int(i) for i in picks], np.ascontiguousarray(pair.source.array[rows]),
                              _reference_slices(pair.target, picks, data), pair.target.range, pair.source.range)
    if reverse:
        slices.reverse_inputs = np.ascontiguousarray(pair.target.array[rows])
        slices.sources = _reference_slices(pair.source, picks, data)
    return slices


def _reference_slices(volume: Volume, picks: np.ndarray, data: DataSection) -> np.ndarray:
    """(N, H, W) slices `picks` of `volume` in its own units, unclipped: read again rather than undo the mapping."""
    array = _oriented(_resampled(read_volume(volume.path), data), data.slice_axis)[picks]
    return np.ascontiguousarray(array, dtype=np.float32)

