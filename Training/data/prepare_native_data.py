"""Native-resolution (1 mm) training subjects, SynthSeg/SynthSR style, for the MR contrast models.

Each subject is a random 3D deformation (affine + smooth nonlinear: MedTranslateLib.simulate.deform) of a sharp
1 mm head: the MNI ICBM152 2009a brain (GM/WM maps and the CSF inside its brain mask; nilearn's wheel, BSD-3,
template under MNI's permissive notice) inside SPM's TPM head (extra-cerebral CSF, bone, soft tissue, air;
PyPI spm-runtime-R2025b, GPL-2), see MedTranslateLib.simulate.anatomy.

Inputs (T1-weighted, randomised per subject):
- `spin-echo`: spin-echo T1 with BrainWeb relaxation times jittered ±15 % and random TR 350-800 / TE 8-25 ms;
- `random`: random T1-like intensities per tissue (WM > GM > CSF by random margins, random scalp and bone);
- `real`: the real 2009a T1 itself (skull-stripped), deformed like the maps;
then skull-stripped (always for `real`, else 30 %), a partial field of view (20 %: the head cut by a random
plane), gamma 0.7-1.4, bias field, Rician noise up to 4 %, and thick slices (50 %: a Gaussian blur of 1.5-6 mm
FWHM along a random axis).
Targets, sharp and noise-free, from the same deformed maps with the literature values (MedTranslateLib.simulate,
nominal BrainWeb tissues): spin-echo T2 (TR 4000 / TE 100 ms) and PD (TR 3000 / TE 15 ms), skull-stripped and
cut like their input.

Layout: OUT/{train,test}/{t1,t2,pd}/<subject>.nii.gz on 1 mm grids cropped to each head; OUT/dataset.json
records every subject's draws. Test subjects use seeds disjoint from the training ones. A subject whose volumes
all exist is kept (its draws read back from dataset.json), so a larger --subjects or --test adds only the new ones.

    python Training/data/prepare_native_data.py [--out Training/data/native] [--subjects 24] [--test 6]
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_mni2009_template import fetch as fetch_mni2009  # noqa: E402
from fetch_spm_templates import fetch as fetch_spm  # noqa: E402

from MedTranslateLib import simulate  # noqa: E402
from MedTranslateLib.simulate.anatomy import head_tissues  # noqa: E402
from MedTranslateLib.simulate.deform import deform, random_deformation  # noqa: E402
from MedTranslateLib.volume import write_volume  # noqa: E402

DEFAULT_OUT = REPO / "Training" / "data" / "native"
INPUT_KINDS = {"spin-echo": 0.4, "random": 0.4, "real": 0.2}
TARGETS = ("t2", "pd")
TEST_SEED_OFFSET = 10_000
AIR = simulate.TISSUES.index("air")


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Tuple[sitk.Image, np.ndarray, np.ndarray, np.ndarray]:
    """The 2009a grid, the head's (6, Z, Y, X) tissue maps, its brain mask and the real 2009a T1 (read once per
    process; callers treat the arrays as read-only)."""
    t1, gm, wm = (sitk.ReadImage(str(fetch_mni2009(kind=kind)), sitk.sitkFloat32) for kind in ("t1", "gm", "wm"))
    (tpm,) = fetch_spm(volumes=["tpm/TPM.nii"])
    tissues, brain = head_tissues(t1, gm, wm, sitk.ReadImage(str(tpm), sitk.sitkFloat32))
    return t1, tissues, brain, sitk.GetArrayFromImage(t1)


def t1_contrast(kind: str, tissues: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """(Z, Y, X) T1-weighted image of the deformed `tissues` with a random contrast of `kind`, and its draws."""
    if kind == "spin-echo":
        tr, te = float(rng.uniform(350.0, 800.0)), float(rng.uniform(8.0, 25.0))
        return simulate.mr_spin_echo(tissues, simulate.random_mr(rng, 0.15), tr, te), {"tr_ms": tr, "te_ms": te}
    white = float(rng.uniform(0.6, 1.0))
    grey = white * float(rng.uniform(0.55, 0.85))
    values = {"wm": white, "gm": grey, "csf": grey * float(rng.uniform(0.1, 0.6)),
              "bone": float(rng.uniform(0.0, 0.15)), "soft": float(rng.uniform(0.4, 1.2)), "air": 0.0}
    return np.tensordot(np.array([values[t] for t in simulate.TISSUES], np.float32), tissues, axes=1), values


def field_of_view(shape: Tuple[int, ...], rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """(Z, Y, X) float32 mask: 1 everywhere, or (20 %) 1 on one side of a random plane cutting the head."""
    if rng.random() >= 0.2:
        return np.ones(shape, np.float32), {}
    axis, keep = int(rng.integers(0, 3)), float(rng.uniform(0.6, 0.85))
    cut = int(shape[axis] * keep)
    mask = np.ones(shape, np.float32)
    index = [slice(None)] * 3
    index[axis] = slice(cut, None) if rng.random() < 0.5 else slice(0, shape[axis] - cut)
    mask[tuple(index)] = 0.0
    return mask, {"cut_axis": axis, "kept_fraction": keep}


def corrupt(image: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Gamma, bias field, thick slices (50 %) and Rician noise on a clean input."""
    draws: Dict[str, Any] = {"gamma": float(rng.uniform(0.7, 1.4)), "bias": float(rng.uniform(0.0, 0.25)),
                             "noise": float(rng.uniform(0.0, 0.04))}
    image = simulate.gamma(image, draws["gamma"]) * simulate.bias_field(image.shape, rng, draws["bias"])
    if rng.random() < 0.5:
        axis, fwhm = int(rng.integers(0, 3)), float(rng.uniform(1.5, 6.0))
        widths = [0.0, 0.0, 0.0]
        widths[axis] = fwhm
        image = simulate.blur_resolution(image, widths)
        draws.update(thick_axis=axis, thick_fwhm_mm=fwhm)
    top = float(np.percentile(image, 99.5))
    return simulate.rician_noise(image, draws["noise"] * top, rng), draws


def make_subject(name: str, seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Input `t1` and targets `t2`, `pd` of one subject as (Z, Y, X) float32 on the 2009a grid, and its draws."""
    _, tissues, brain, real_t1 = load_anatomy()
    rng = np.random.default_rng(seed)
    coordinates = random_deformation(brain.shape, rng)
    deformed = np.stack([deform(channel, coordinates, fill=1.0 if index == AIR else 0.0)
                         for index, channel in enumerate(tissues)])
    deformed /= np.maximum(deformed.sum(axis=0, keepdims=True), 1e-6)
    kind = str(rng.choice(list(INPUT_KINDS), p=list(INPUT_KINDS.values())))
    stripped = kind == "real" or rng.random() < 0.3
    if kind == "real":
        clean, contrast = deform(real_t1, coordinates), {}
    else:
        clean, contrast = t1_contrast(kind, deformed, rng)
    keep, cut = field_of_view(brain.shape, rng)
    if stripped:
        keep = keep * np.clip(deform(brain, coordinates), 0.0, 1.0)
    source, corruption = corrupt(np.clip(clean, 0.0, None) * keep, rng)
    volumes = {"t1": source}
    for target in TARGETS:
        volumes[target] = simulate.mr_spin_echo(deformed, simulate.nominal_mr(), *simulate.SEQUENCES[target.upper()]) * keep
    draws = {"name": name, "seed": seed, "input": kind, "skull_stripped": stripped, "contrast": contrast,
             "corruption": corruption, **cut}
    return volumes, draws


def head_box(volume: np.ndarray, margin: int = 4) -> Tuple[slice, ...]:
    """The bounding box of the voxels above 1 % of the volume's maximum, grown by `margin`."""
    nonzero = np.argwhere(volume > 0.01 * volume.max())
    low = np.maximum(nonzero.min(axis=0) - margin, 0)
    high = np.minimum(nonzero.max(axis=0) + margin + 1, volume.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def write_subject(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    grid = load_anatomy()[0]
    volumes, draws = make_subject(name, seed)
    box = head_box(volumes["t2"] + volumes["t1"])
    origin = grid.TransformIndexToPhysicalPoint([box[2].start, box[1].start, box[0].start])
    for key, array in volumes.items():
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[box], dtype=np.float32))
        image.SetSpacing(grid.GetSpacing())
        image.SetDirection(grid.GetDirection())
        image.SetOrigin(origin)
        folder = out / split / key
        folder.mkdir(parents=True, exist_ok=True)
        write_volume(image, folder / f"{name}.nii.gz")
    return {"split": split, **draws}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--subjects", type=int, default=24, help="training subjects")
    parser.add_argument("--test", type=int, default=6, help="held-out test subjects")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [("train", f"subj{i:03d}", i) for i in range(args.subjects)]
    jobs += [("test", f"test{i:03d}", TEST_SEED_OFFSET + i) for i in range(args.test)]
    listed = args.out / "dataset.json"
    done = {entry["name"]: entry for entry in
            (json.loads(listed.read_text(encoding="utf-8"))["plan"] if listed.is_file() else [])
            if all((args.out / entry["split"] / key / f"{entry['name']}.nii.gz").is_file()
                   for key in ("t1",) + TARGETS)}
    todo = [job for job in jobs if job[1] not in done]
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        made = {entry["name"]: entry for entry in pool.map(write_subject, [args.out] * len(todo), *zip(*todo))} \
            if todo else {}
    plan = [done.get(name) or made[name] for _, name, _ in jobs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset.json").write_text(json.dumps({"subjects": args.subjects, "test": args.test, "plan": plan},
                                                      indent=1) + "\n", encoding="utf-8")
    print(f"{len(todo)} new of {len(plan)} subjects in {args.out}, in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
