"""Translating many volumes: folders and lists of files, resumable, sharded over torchrun's processes.

One model load for all files; an output that is already complete is skipped, so a re-run resumes; a bad file
is reported and the rest go on. Under torchrun (WORLD_SIZE > 1) each process takes every WORLD_SIZE-th file
of the sorted list, so every file is translated exactly once and no two processes write the same file; the
processes exchange their results (gloo) and rank 0 prints the summary.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import SimpleITK as sitk

from .dicom_series import is_dicom_file
from .errors import InputError, MedTranslateError
from .volume import WRITE_EXTENSIONS, volume_extension

READ_EXTENSIONS = WRITE_EXTENSIONS  # the formats a folder batch picks up (DICOM: folders of .dcm or bare files)
DICOM_OUTPUT = ".nii.gz"            # a DICOM series becomes NIfTI


@dataclass(frozen=True)
class Case:
    """One translation of a batch: `source` (a file or a DICOM folder) into `output`."""

    source: Path
    output: Path


@dataclass
class BatchSummary:
    """What a batch did: names (relative to the output folder) translated, skipped as complete, failed + why."""

    translated: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)

    def merge(self, other: "BatchSummary") -> None:
        self.translated += other.translated
        self.skipped += other.skipped
        self.failed += other.failed

    def line(self) -> str:
        return (f"translated {len(self.translated)}, skipped {len(self.skipped)} already complete, "
                f"failed {len(self.failed)}")


def is_batch(inputs: Sequence[str], output: str) -> bool:
    """A batch when several inputs are given, the output is an existing folder, or a folder is translated into
    a name without any extension; otherwise one input file or DICOM folder into one output file."""
    if len(inputs) > 1 or Path(output).is_dir():
        return True
    return Path(inputs[0]).is_dir() and not Path(output).suffix


def collect_cases(inputs: Sequence[Path], out_dir: Path) -> List[Case]:
    """The cases of `inputs`: a file is one case (written as OUT_DIR/its name); a folder contributes every volume
    file under it and every folder of DICOM files (each written under OUT_DIR with its relative path, a DICOM
    series as .nii.gz). Sorted by output path; two inputs that would write the same output are refused."""
    cases: List[Case] = []
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            cases.append(Case(path, out_dir / path.name))
        elif _dicom_files(path) and not _volume_files(path):
            cases.append(Case(path, out_dir / (path.name + DICOM_OUTPUT)))
        else:
            cases += _folder_cases(path, out_dir)
    by_output: Dict[Path, Path] = {}
    for case in cases:
        if case.output.resolve() == case.source.resolve():
            raise InputError(f"{case.output}: the output folder holds the inputs; outputs would overwrite them")
        if case.output in by_output:
            raise InputError(f"{by_output[case.output]} and {case.source} would both be written to {case.output}")
        by_output[case.output] = case.source
    if not cases:
        raise InputError(f"no volumes found in {', '.join(map(str, inputs))} "
                         f"({', '.join(READ_EXTENSIONS)} files or DICOM folders)")
    return sorted(cases, key=lambda case: str(case.output))


def _folder_cases(folder: Path, out_dir: Path) -> List[Case]:
    cases = []
    for root, folders, files in os.walk(folder):
        folders.sort()
        here = Path(root)
        relative = here.relative_to(folder)
        volumes = _volume_files(here)
        cases += [Case(file, out_dir / relative / file.name) for file in volumes]
        if not volumes and _dicom_files(here) and here != folder:
            cases.append(Case(here, out_dir / relative.parent / (here.name + DICOM_OUTPUT)))
    return cases


def _volume_files(folder: Path) -> List[Path]:
    """Image files directly in `folder` (a .raw/.zraw data file is read through its header, not listed)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and volume_extension(p) in READ_EXTENSIONS
                  and not p.name.startswith("."))


def _dicom_files(folder: Path) -> bool:
    """True when `folder` directly holds at least one DICOM file."""
    return any(path.is_file() and is_dicom_file(path) for path in folder.iterdir())


def is_complete(case: Case) -> bool:
    """True when the output exists and its header reads: outputs are renamed into place only once written
    and checked, so an output that exists is a finished one (a run cut short leaves none)."""
    if not case.output.is_file():
        return False
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(case.output))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return True


def shard(cases: Sequence[Case], rank: int, world: int) -> List[Case]:
    """Every `world`-th case starting at `rank`: disjoint shards that together hold every case once."""
    return list(cases[rank::world])


def translate_cases(cases: Sequence[Case], model: Any, on_file: Optional[Callable[[int, int, str], None]] = None,
                    **options: Any) -> BatchSummary:
    """Translate `cases` with one loaded `model` (translate_file's options); skip complete outputs, go on past
    failures. `on_file(done, total, name)` is called after each case."""
    from .translate import translate_file

    summary = BatchSummary()
    for number, case in enumerate(cases, start=1):
        name = str(case.output)
        if is_complete(case):
            summary.skipped.append(name)
        else:
            try:
                case.output.parent.mkdir(parents=True, exist_ok=True)
                translate_file(case.source, case.output, model, **options)
                summary.translated.append(name)
            except MedTranslateError as error:
                summary.failed.append((name, str(error)))
        if on_file is not None:
            on_file(number, len(cases), name)
    return summary


def torchrun_world() -> Tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: str, local_rank: int, world: int) -> str:
    """Under torchrun, `auto` means this process's own GPU (cuda:LOCAL_RANK) when there are GPUs, else the CPU."""
    import torch

    if world > 1 and device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local_rank % torch.cuda.device_count()}"
        return "cpu"
    return device


def gather_summaries(summary: BatchSummary, world: int) -> BatchSummary:
    """Every process's summary, merged (a gloo all-gather, so CPU-only processes take part); unchanged when
    there is one process."""
    if world == 1:
        return summary
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    try:
        parts: List[Any] = [None] * world
        dist.all_gather_object(parts, summary)
    finally:
        if created:
            dist.destroy_process_group()
    merged = BatchSummary()
    for part in parts:
        merged.merge(part)
    return merged
