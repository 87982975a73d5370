"""The public translation calls: a SimpleITK image or a file in, the same grid out in target units."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import SimpleITK as sitk

from .axes import reorientation
from .device import select_device
from .engine import EngineOptions, SliceEngine
from .errors import InputError
from .intensity import plausibility_warning, to_output_units
from .package import TranslationModel
from .progress import ProgressCallback, report
from .registry import load_model
from .resample import in_plane_spacing_target, resample_onto, resample_to_spacing
from .volume import PathLike, as_volume, check_writable, read_volume, write_volume

ModelLike = Union[str, Path, TranslationModel]


def translate_image(image: sitk.Image, model: ModelLike, device: str = "auto", batch_size: int = 8,
                    precision: str = "auto", tta: bool = False, compile: bool = False,
                    progress: Optional[ProgressCallback] = None, cancel: Any = None) -> sitk.Image:
    """Translate a volume with a model; the result lies exactly on `image`'s grid, in target units.

    `image` is not modified. A 2D image is treated as a one-slice volume. `cancel` is a threading.Event
    (or a callable returning bool) checked before every batch; when set, TranslationCancelled is raised.
    """
    model = load_model(model)
    card = model.card
    volume = as_volume(image)
    warning = plausibility_warning(sitk.GetArrayViewFromImage(volume), card.source_modality)
    if warning:
        warnings.warn(warning)
    orientation = reorientation(volume.GetDirection(), card.slice_axis)
    target_spacing = in_plane_spacing_target(volume, orientation, card.spacing_mm)
    work = volume
    if target_spacing is not None:
        report(progress, "resampling", 0, 1)
        work = resample_to_spacing(volume, target_spacing)
    source = sitk.GetArrayViewFromImage(work)  # [k, j, i], no copy
    mapping = card.intensity_pair
    source_range = mapping.source.fit(source)
    target_range = mapping.target_range(source_range)
    output = np.empty(source.shape, dtype=np.float32)
    engine = SliceEngine(model.network, select_device(device), card.context_slices,
                         EngineOptions(batch_size=batch_size, precision=precision, tta=tta, compile=compile),
                         mirror_context=card.slice_axis == "sagittal", pad=card.pad)
    engine.run(orientation.apply(source), orientation.apply(output), source_range.to_network,
               target_range.from_network, progress, cancel)
    if target_spacing is not None:
        report(progress, "resampling", 0, 1)
        on_work_grid = sitk.GetImageFromArray(output)
        on_work_grid.CopyInformation(work)
        output = sitk.GetArrayFromImage(resample_onto(on_work_grid, volume, background=target_range.low))
    translated = sitk.GetImageFromArray(to_output_units(output, card.target_modality))
    translated.CopyInformation(volume)
    return translated


def translate_file(input_path: PathLike, output_path: PathLike, model: ModelLike, **options: Any) -> sitk.Image:
    """Read, translate and write atomically; `options` are translate_image's. Returns the written image."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_output_path(input_path, output_path)
    model = load_model(model)
    progress: Optional[ProgressCallback] = options.get("progress")
    report(progress, "reading", 0, 1)
    image = read_volume(input_path)
    result = translate_image(image, model, **options)
    report(progress, "writing", 0, 1)
    write_volume(result, output_path)
    return result


def check_output_path(input_path: Path, output_path: Path) -> None:
    """Refuse, before any work, an output that would overwrite the input or cannot be written."""
    if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
        raise InputError(f"{output_path}: output would overwrite the input; choose another file")
    check_writable(output_path)
