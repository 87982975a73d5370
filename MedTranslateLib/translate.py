"""The public translation calls: a SimpleITK image or a file in, the same grid out in target units."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from .axes import Reorientation, reorientation
from .card import ModelCard
from .device import select_device
from .engine import EngineOptions, SliceEngine
from .errors import InputError, TranslationError
from .image_buffer import ImageBuffer
from .intensity import IntensityRange, plausibility_warning, to_output_units
from .memory import check_memory
from .networks import size_multiple
from .package import TranslationModel
from .progress import Progress, ProgressCallback, report
from .registry import load_model
from .resample import SLAB_SLICES, SPACING_TOLERANCE, in_plane_spacing_target, resample_onto_array, resample_to_spacing
from .volume import PathLike, as_volume, check_writable, input_files, read_volume, volume_extension, write_volume

ModelLike = Union[str, Path, TranslationModel]
PLANE_SPACING_LIMIT = 2.0  # a plane runs when its pixels are at most this many times the model's spacing
MAX_UPSAMPLING = 8.0       # coarsest input pixels translated, as a multiple of the model's spacing
MAX_SLICE_SIDE = 8192      # widest slice, in pixels at the model's spacing
CHUNK_SLICES = 16          # slices resampled, translated and resampled back at a time when a pass resamples


def translate_image(image: sitk.Image, model: ModelLike, device: str = "auto", batch_size: int = 8,
                    precision: str = "auto", tta: bool = False, compile: bool = False,
                    progress: Optional[ProgressCallback] = None, cancel: Any = None) -> sitk.Image:
    """Translate a volume with a model; the result lies exactly on `image`'s grid, in target units.

    `image` is not modified. A 2D image is translated as a one-slice volume and comes back as a 2D image
    on its own grid. `cancel` is a threading.Event (or a callable returning bool) checked before every
    batch; when set, TranslationCancelled is raised.
    A model trained on several planes runs one pass along each plane the input's resolution allows
    (`passes_for`) and fuses them voxel by voxel as its card says (mean or median).
    """
    return _translate([image], model, device, batch_size, precision, tta, compile, progress, cancel)


def _translate(held: List[sitk.Image], model: ModelLike, device: str = "auto", batch_size: int = 8,
               precision: str = "auto", tta: bool = False, compile: bool = False,
               progress: Optional[ProgressCallback] = None, cancel: Any = None) -> sitk.Image:
    """translate_image's work. The input comes in a list that this function empties, so that when the caller
    keeps no other reference (translate_file) the input is freed before the result is finished: the peak is
    the input during the passes, or the result, not both plus a copy."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, not {batch_size!r}")
    model = load_model(model)
    card = model.card
    image = held.pop()
    volume = as_volume(image)
    warning = plausibility_warning(sitk.GetArrayViewFromImage(volume), card.source_modality)
    if warning:
        warnings.warn(warning)
    if card.precision == "fp32":  # measured to lose accuracy under autocast: the card's word is final
        precision = "fp32"
    engine = SliceEngine(model.network, select_device(device), card.context_slices,
                         EngineOptions(batch_size=batch_size, precision=precision, tta=tta, compile=compile),
                         pad=card.pad)
    planes = passes_for(volume, card, size_multiple(model.network))
    check_work_grids(volume, planes, card)
    result = ImageBuffer(volume.GetSize(), sitk.sitkFloat32)  # the passes write into the image returned
    # the input's intensity range, fitted once on the input itself, serves every pass
    source_range = card.intensity_pair.source.fit(sitk.GetArrayViewFromImage(volume))
    ranges = (source_range, card.intensity_pair.target_range(source_range))
    if len(planes) == 1:
        _one_pass(volume, planes[0], card, engine, ranges, progress, cancel, out=result)
    else:
        _fused_passes(volume, planes, card, engine, ranges, progress, cancel, out=result)
    if not np.isfinite(result.array.sum(dtype=np.float64)):  # the mapping back to units overflowed float32 (a
        # float64 sum cannot overflow here, and is NaN or infinite exactly when a voxel is: no mask array)
        raise TranslationError("the translation holds NaN or infinite values after mapping back to "
                               f"{card.target_modality} units; nothing was written")
    grids = [(volume.GetSpacing(), volume.GetOrigin(), volume.GetDirection())]
    if image.GetDimension() == 2:
        grids.append((image.GetSpacing(), image.GetOrigin(), image.GetDirection()))
    del image, volume  # not needed any more; freed here when the caller passed it on (translate_file)
    translated = _in_output_units(result, card.target_modality)
    del result
    for number, grid in enumerate(grids):
        if number:  # back to a 2D image on its own grid
            translated = translated[:, :, 0]
        for setter, value in zip((translated.SetSpacing, translated.SetOrigin, translated.SetDirection), grid):
            setter(value)
    return translated


def _in_output_units(result: ImageBuffer, modality: str) -> sitk.Image:
    """The result as the modality's output image: itself (float32), or an int16 image of HU for CT, converted
    16 slices at a time (no full-size temporary)."""
    if to_output_units(result.array[:1], modality).dtype == result.array.dtype:
        return result.image
    converted = ImageBuffer(result.image.GetSize(), sitk.sitkInt16)
    for start in range(0, result.array.shape[0], SLAB_SLICES):
        converted.array[start:start + SLAB_SLICES] = to_output_units(result.array[start:start + SLAB_SLICES],
                                                                     modality)
    return converted.image


def passes_for(volume: sitk.Image, card: ModelCard, multiple: int = 1) -> List[str]:
    """The planes to run: the card's planes whose pixels are at most PLANE_SPACING_LIMIT times the model's
    spacing (a 6 mm-slice volume is not translated from its blurred through-plane views), or when none
    qualifies the one with the finest pixels; of those, the planes whose slices are at least half the network's
    size `multiple` across at the model's spacing, or when none is the widest. A narrower slice would be mostly
    padding: a 15-slice slab's through-plane slices are thin bands that no training crop looked like (PET
    denoising 2.0 on 15-slice slabs: SSIM 0.685 fused over three planes, 0.894 axial alone)."""
    planes = card.inference_planes
    if len(planes) == 1:
        return planes
    model = max(card.spacing_mm) if card.spacing_mm else None
    size_kji, spacing = volume.GetSize()[::-1], volume.GetSpacing()
    coarsest: Dict[str, float] = {}
    narrowest: Dict[str, float] = {}
    for plane in planes:
        orientation = reorientation(volume.GetDirection(), plane)
        pixel = orientation.spacing(spacing)[1:]
        extent = [size_kji[axis] * step for axis, step in zip(orientation.axes[1:], pixel)]
        coarsest[plane] = max(pixel)
        narrowest[plane] = min(mm / (model or step) for mm, step in zip(extent, pixel))
    fine = ([p for p in planes if model is None or coarsest[p] <= PLANE_SPACING_LIMIT * model]
            or [min(planes, key=lambda plane: coarsest[plane])])
    return [p for p in fine if narrowest[p] >= multiple / 2] or [max(fine, key=lambda p: narrowest[p])]


def check_work_grids(volume: sitk.Image, planes: List[str], card: ModelCard) -> None:
    """Refuse, before anything is resampled, a plane whose pixels are more than MAX_UPSAMPLING times coarser
    than the model's (40 mm pixels made 1 mm show the network interpolated blur, at 1,600 times the memory),
    resampled slices wider than MAX_SLICE_SIDE, or a translation that needs more memory than is available."""
    voxels = float(np.prod(volume.GetSize(), dtype=np.float64))
    # the float32 result, which the passes of a mean are added into; a median keeps every pass
    result = voxels * 4 * (len(planes) if card.fusion == "median" and len(planes) > 1 else 1)
    needed = result
    for plane in planes:
        orientation = reorientation(volume.GetDirection(), plane)
        target = in_plane_spacing_target(volume, orientation, card.spacing_mm) or volume.GetSpacing()
        factors = [old / new for old, new in zip(volume.GetSpacing(), target)]
        if max(factors) > MAX_UPSAMPLING:
            coarsest = max(volume.GetSpacing()[2 - axis] for axis in orientation.axes[1:])
            raise InputError(f"the {plane} pixels ({coarsest:g} mm) are {max(factors):.3g} times coarser than the "
                             f"model's {max(card.spacing_mm):g} mm; at most {MAX_UPSAMPLING}x is translated")
        size = [n * f for n, f in zip(volume.GetSize(), factors)]
        side = max(size[2 - axis] for axis in orientation.axes[1:])
        if side > MAX_SLICE_SIDE:
            raise InputError(f"the {plane} slices would be {side:.0f} pixels wide at the model's spacing; at most "
                             f"{MAX_SLICE_SIDE} are translated")
        slices = size[2 - orientation.axes[0]]
        chunk = slices if card.context_slices else min(slices, CHUNK_SLICES)
        resampled = float(np.prod(size, dtype=np.float64)) / slices * chunk * 8 if factors != [1, 1, 1] else 0.0
        needed = max(needed, result + resampled)  # a resampled float32 chunk and its output
    check_memory(needed, f"translating {'×'.join(map(str, volume.GetSize()))} voxels")


def context_step(card: ModelCard, slice_mm: float) -> float:
    """How many of the input's slices (`slice_mm` apart) the context neighbours lie apart. A model trained on
    several planes learned from isotropic volumes, so its neighbours lay one model pixel (card.spacing_mm) apart;
    on other slice spacings they are interpolated there (6.5 mm slices: 1/6.5 of the way to the next slice).
    Otherwise, and within SPACING_TOLERANCE, the neighbouring slices as they are (1)."""
    if not card.context_slices or len(card.inference_planes) < 2 or not card.spacing_mm:
        return 1.0
    step = max(card.spacing_mm) / slice_mm
    return 1.0 if abs(step - 1.0) <= SPACING_TOLERANCE else step


def _one_pass(volume: sitk.Image, plane: str, card: ModelCard, engine: SliceEngine,
              ranges: Tuple[IntensityRange, IntensityRange], progress: Optional[ProgressCallback], cancel: Any,
              out: ImageBuffer, accumulate: bool = False) -> None:
    """Fill `out` (float32 on `volume`'s grid) with the network's output in target units (before
    to_output_units), or add it to `out` (`accumulate`), from `plane` slices resampled in-plane to the card's
    spacing; `ranges`: the input's (source, target) intensity ranges."""
    orientation = reorientation(volume.GetDirection(), plane)
    target_spacing = in_plane_spacing_target(volume, orientation, card.spacing_mm)
    source = sitk.GetArrayViewFromImage(volume)  # [k, j, i], no copy
    source_range, target_range = ranges
    step = context_step(card, orientation.spacing(volume.GetSpacing())[0])
    if target_spacing is None:
        engine.run(orientation.apply(source), orientation.apply(out.array), source_range.to_network,
                   target_range.from_network, progress, cancel, mirror_context=plane == "sagittal",
                   accumulate=accumulate, context_step=step)
        return
    # neighbouring slices (card.context_slices) would cross a chunk's edge: then the whole volume at once
    _resampled_pass(volume, orientation, target_spacing, ranges, engine, progress, cancel, out, accumulate,
                    mirror_context=plane == "sagittal", chunk=None if card.context_slices else CHUNK_SLICES,
                    context_step=step)


def _resampled_pass(volume: sitk.Image, orientation: Reorientation, target_spacing: Tuple[float, ...],
                    ranges: Tuple[IntensityRange, IntensityRange], engine: SliceEngine,
                    progress: Optional[ProgressCallback], cancel: Any, out: ImageBuffer, accumulate: bool,
                    mirror_context: bool, chunk: Optional[int], context_step: float = 1.0) -> None:
    """A pass whose slices are resampled in-plane: `chunk` slices at a time (or all), each chunk resampled,
    translated and resampled back onto its own slices of the input grid, written into (or added to) `out`
    (`context_step`: SliceEngine.run's; in-plane resampling keeps the slice spacing).
    Resampling is in-plane only, so each chunk's work grid is exactly that slab of the whole work grid and
    no volume-sized copy exists beside the input and the result."""
    source_range, target_range = ranges
    slice_index_axis = 2 - orientation.axes[0]  # SimpleITK index axis the slices are stacked along
    count = volume.GetSize()[slice_index_axis]
    background = float(np.min(sitk.GetArrayViewFromImage(volume)))
    step = chunk or count
    for start in range(0, count, step):
        stop = min(count, start + step)
        index, size = [0, 0, 0], list(volume.GetSize())
        index[slice_index_axis], size[slice_index_axis] = start, stop - start
        part = volume if step == count else sitk.RegionOfInterest(volume, size, index)
        report(progress, "resampling", start, count)
        work = resample_to_spacing(part, target_spacing, background)
        output = ImageBuffer(work.GetSize(), sitk.sitkFloat32)

        def in_chunk(update: Progress, offset: int = start) -> None:
            if progress is not None:
                progress(Progress(update.stage, update.done + offset, count))
        engine.run(orientation.apply(sitk.GetArrayViewFromImage(work)), orientation.apply(output.array),
                   source_range.to_network, target_range.from_network, in_chunk, cancel,
                   mirror_context=mirror_context, context_step=context_step)
        result = output.image  # the network's output in place: no copy into a new image
        result.CopyInformation(work)
        del work, output
        region = [slice(None)] * 3
        region[orientation.axes[0]] = slice(start, stop)
        resample_onto_array(result, part, background=target_range.low, out=out.array[tuple(region)],
                            accumulate=accumulate)


def _fused_passes(volume: sitk.Image, planes: List[str], card: ModelCard, engine: SliceEngine,
                  ranges: Tuple[IntensityRange, IntensityRange], progress: Optional[ProgressCallback], cancel: Any,
                  out: ImageBuffer) -> None:
    """Fill `out` with the passes along `planes` fused voxel by voxel (card.fusion): for the mean every pass is
    added into `out` as it is made (slab by slab when it is resampled back: no further volume on `volume`'s
    grid), for the median all passes are kept. Progress counts the slices of every pass as one task."""
    counts = [volume.GetSize()[2 - reorientation(volume.GetDirection(), plane).axes[0]] for plane in planes]
    total, before = sum(counts), 0
    passes = []
    for number, (plane, count) in enumerate(zip(planes, counts)):
        def report_pass(update: Progress, offset: int = before) -> None:
            if progress is not None:
                translating = update.stage == "translating"
                progress(Progress(update.stage, update.done + offset if translating else update.done,
                                  total if translating else update.total))
        target = out if card.fusion == "mean" else ImageBuffer(out.size, out.pixel_id)
        _one_pass(volume, plane, card, engine, ranges, report_pass, cancel, out=target,
                  accumulate=card.fusion == "mean" and number > 0)
        before += count
        if card.fusion == "median":
            passes.append(target)
    if passes:
        np.median(np.stack([part.array for part in passes]), axis=0, out=out.array)
    else:
        np.divide(out.array, len(planes), out=out.array)


def translate_file(input_path: PathLike, output_path: PathLike, model: ModelLike, series: Optional[str] = None,
                   **options: Any) -> sitk.Image:
    """Read, translate and write atomically; `series` picks a series of a DICOM folder; `options` are
    translate_image's. Returns the written image."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_output_path(input_path, output_path)
    model = load_model(model)
    progress: Optional[ProgressCallback] = options.get("progress")
    report(progress, "reading", 0, 1)
    result = _translate([read_volume(input_path, series)], model, **options)  # the input
    # is held by nothing else, so it is freed before the result is finished
    report(progress, "writing", 0, 1)
    write_volume(result, output_path, protected=input_files(input_path))
    return result


def check_output_path(input_path: Path, output_path: Path) -> None:
    """Refuse, before any work, an output that would overwrite the input or one of its files (a header format's
    data file included), or cannot be written."""
    check_writable(output_path)
    inputs = [file.resolve() for file in input_files(input_path)] if input_path.exists() else []
    for written in output_files(output_path):
        if written.exists() and written.resolve() in inputs:
            what = "the input" if written.resolve() == input_path.resolve() else f"{written.name}, a file of the input"
            raise InputError(f"{output_path}: output would overwrite {what}; choose another file")


def output_files(output_path: Path) -> List[Path]:
    """The files writing `output_path` (compressed) makes: a header format adds its data file."""
    data_file = {".mhd": ".zraw", ".nhdr": ".raw.gz"}.get(volume_extension(output_path))
    if data_file is None:
        return [output_path]
    stem = output_path.name[:-len(volume_extension(output_path))]
    return [output_path, output_path.with_name(stem + data_file)]
