"""Build the training and held-out data of the shipped models from SPM's real templates and tissue maps.

Every volume lies on the 2 mm MNI grid of SPM's avg152 templates (91×109×91). A *subject* is one random
in-plane warp (affine + elastic) of that anatomy, in one of two kinds:

- `real`: the real templates warped — avg152T1/T2/PD (ICBM152 averages of real scans) and OldNorm PET (an
  average real PET) — with a pseudo-CT made from the warped tissue maps (TPM, random HU per tissue);
- `sim`: every contrast simulated from the warped TPM tissue maps with random tissue properties
  (MedTranslateLib.simulate): spin-echo T1/T2/PD, pseudo-CT and FDG-like PET.

A third kind, `sharp`, feeds motion correction only: random warps of the sharp MNI ICBM152 2009a brain
(nilearn's wheel, BSD-3) set in avg152T1's head, whose anatomy is as crisp as a real scan's at 2 mm.

Targets are clean. Inputs are randomised (SynthSeg/SynthSR manner): T1 from random spin-echo timings, gamma,
bias field, Rician noise, thick-slice blur; CT with noise and blur; PET with a random point-spread function
and count noise; motion-corrupted T1 from rigid motion in k-space (test subjects: one motion history for all
slices, as interleaved multi-slice; training subjects: each slice its own); low-count PET by Poisson thinning.

Held out from every training volume: the axial slab z = 35..55 (a 15-slice test slab plus 3 guard slices
each side). Training subjects are written as two volumes (`*_inf` below the slab, `*_sup` above). The test set
is the slab of the unwarped real templates (`avg152`), of fresh simulated subjects, and the whole Colin27
head (`single_subj_T1`, a real single subject never used in training) for motion correction.

    python Training/data/prepare_shipped_data.py [--out Training/data/shipped] [--subjects 32] [--workers 2]

Layout: OUT/{train,test}/<volume kind>/<name>.nii.gz, e.g. train/t1_in/sim03_inf.nii.gz; train/cyclegan_t1
and train/cyclegan_t2 hold T1 and T2 of disjoint subjects, real-template and simulated alike (unpaired), plus
both contrasts of the slab of a few validation subjects (`val*`, the same name in both folders): the CycleGAN
config holds them out by name to choose its checkpoint; they are neither trained on nor test subjects.
train/t1_motion and train/t1_motion_target hold the motion-correction pairs of every training subject, the
sharp ones included; each pair's clean T1 has its own random contrast (gamma, scalp brightness, bias field),
shared by the target and the motion-corrupted input.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_mni2009_template import fetch as fetch_mni2009  # noqa: E402
from fetch_spm_templates import fetch  # noqa: E402

from MedTranslateLib import simulate  # noqa: E402
from MedTranslateLib.volume import write_volume  # noqa: E402

SLAB = (38, 53)   # held-out axial slices (index z of the 2 mm grid, inferior -> superior)
GUARD = 3         # slices each side of the slab used neither for training nor testing
TEMPLATES = {"t1": "canonical/avg152T1.nii", "t2": "canonical/avg152T2.nii", "pd": "canonical/avg152PD.nii",
             "pet": "toolbox/OldNorm/PET.nii", "colin27": "canonical/single_subj_T1.nii"}
TPM = "tpm/TPM.nii"
DEFAULT_OUT = REPO / "Training" / "data" / "shipped"
MR_KINDS = ("t1", "t2", "pd")
VALIDATION_SUBJECTS = 2  # of each kind, real and simulated: the CycleGAN's validation pairs
SOFT_TISSUE = simulate.TISSUES.index("soft")  # TPM channel of the scalp and other soft tissue
MOTION = {"max_rotation_deg": 8.0, "max_shift_voxels": 4.0}  # up to 8 degrees and 8 mm between moves
# a motion pair's random contrast (motion_contrast): gamma range, scalp gain (1 + gain u²), bias-field strength
MOTION_CONTRAST = {"gamma": (0.75, 1.35), "scalp_gain": 1.2, "max_bias": 0.15}


def _source_path(spm: Path, name: str) -> str:
    """SPM's file, or a gzipped copy of it (name + '.gz')."""
    path = spm / name
    return str(path if path.is_file() else path.with_name(path.name + ".gz"))


@functools.lru_cache(maxsize=1)
def load_sources(spm: Path, mni: Path) -> Tuple[sitk.Image, Dict[str, np.ndarray], np.ndarray]:
    """The 2 mm grid, the real templates as (Z, Y, X) float32 (and `t1_sharp`, see sharp_t1), and TPM
    resampled onto it as (6, Z, Y, X).

    Read once per process (cached); callers treat the arrays as read-only.
    """
    images = {key: sitk.ReadImage(_source_path(spm, name), sitk.sitkFloat32) for key, name in TEMPLATES.items()}
    grid = images["t1"]
    arrays = {key: sitk.GetArrayFromImage(image) for key, image in images.items()}
    arrays["t1_sharp"] = sharp_t1(mni, grid, arrays["t1"])
    tpm4d = sitk.ReadImage(_source_path(spm, TPM), sitk.sitkFloat32)
    size = list(tpm4d.GetSize())
    channels = []
    for index in range(size[3]):
        channel = sitk.Extract(tpm4d, size[:3] + [0], [0, 0, 0, index])
        channels.append(sitk.GetArrayFromImage(sitk.Resample(channel, grid, sitk.Transform(), sitk.sitkLinear,
                                                             1.0 if index == 5 else 0.0)))
    tissues = np.clip(np.stack(channels), 0.0, None)
    tissues /= np.maximum(tissues.sum(axis=0, keepdims=True), 1e-6)
    return grid, arrays, tissues.astype(np.float32)


def sharp_t1(mni: Path, grid: sitk.Image, avg152: np.ndarray) -> np.ndarray:
    """(Z, Y, X) T1 on `grid`: the sharp MNI ICBM152 2009a brain (1 mm, anti-aliased onto the 2 mm grid) scaled
    to avg152T1's brain intensities, blended into avg152T1's head (scalp and skull, which 2009a lacks)."""
    image = sitk.SmoothingRecursiveGaussian(sitk.ReadImage(str(mni), sitk.sitkFloat32), 0.85)
    brain = sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    mask = brain > 0.05 * brain.max()
    weight = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), 1.0), 0.0, 1.0)
    scale = np.percentile(avg152[mask], 99) / np.percentile(brain[mask], 99)
    return (weight * brain * scale + (1.0 - weight) * avg152).astype(np.float32)


def warp_tissues(tissues: np.ndarray, warp: Optional[simulate.InPlaneWarp]) -> np.ndarray:
    if warp is None:
        return tissues
    warped = np.stack([warp.apply(channel, order=1, fill=1.0 if index == 5 else 0.0)
                       for index, channel in enumerate(tissues)])
    return warped / np.maximum(warped.sum(axis=0, keepdims=True), 1e-6)


def clean_volumes(kind: str, arrays: Dict[str, np.ndarray], tissues: np.ndarray,
                  warp: Optional[simulate.InPlaneWarp], rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], Dict]:
    """Targets of one subject: t1, t2, pd, ct (HU), pet; plus what the inputs are drawn from."""
    tissues = warp_tissues(tissues, warp)
    hu = simulate.random_ct_hu(rng) if warp is not None else simulate.nominal_ct_hu()
    volumes = {"ct": simulate.pseudo_ct(tissues, hu)}
    if kind == "real":
        for key in MR_KINDS + ("pet",):
            volumes[key] = arrays[key] if warp is None else warp.apply(arrays[key], order=1, fill=0.0)
        properties = simulate.nominal_mr()
    else:
        properties = simulate.random_mr(rng, spread=0.1)
        for key in MR_KINDS:
            volumes[key] = simulate.mr_spin_echo(tissues, properties, *simulate.SEQUENCES[key.upper()])
        volumes["pet"] = simulate.pet_uptake(tissues, simulate.random_pet_uptake(rng),
                                             float(rng.uniform(5.0, 8.0)), (2.0, 2.0, 2.0))
    return {k: v.astype(np.float32) for k, v in volumes.items()}, {"tissues": tissues, "mr": properties, "hu": hu}


def _percentile_top(image: np.ndarray) -> float:
    return max(float(np.percentile(image, 99.5)), 1e-6)


def randomised_mr(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, bias field, thick-slice and in-plane blur, Rician noise."""
    out = simulate.gamma(image, float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))))
    out = out * simulate.bias_field(out.shape, rng, float(rng.uniform(0.0, 0.25)))
    out = simulate.blur_resolution(out, (rng.uniform(0.0, 2.5), rng.uniform(0.0, 1.2), rng.uniform(0.0, 1.2)))
    return simulate.rician_noise(out, float(rng.uniform(0.0, 0.03)) * _percentile_top(out), rng)


def input_volumes(kind: str, clean: Dict[str, np.ndarray], extra: Dict, rng: np.random.Generator,
                  randomise: bool) -> Dict[str, np.ndarray]:
    """Inputs of one subject: t1_in, ct_in, pet_in, t1_motion, pet_full (target) and pet_low."""
    out: Dict[str, np.ndarray] = {}
    if kind == "sim":  # T1 weighting from random spin-echo timings, not the target's nominal sequence
        tr, te = rng.uniform(400.0, 700.0), rng.uniform(8.0, 20.0)
        t1_source = simulate.mr_spin_echo(extra["tissues"], extra["mr"], tr, te)
    else:
        t1_source = clean["t1"]
    out["t1_in"] = randomised_mr(t1_source, rng) if randomise else t1_source
    ct = clean["ct"]
    if randomise:
        ct = simulate.blur_resolution(ct, (rng.uniform(0.0, 2.0), rng.uniform(0.0, 0.8), rng.uniform(0.0, 0.8)))
        ct = ct + rng.normal(0.0, rng.uniform(3.0, 20.0), size=ct.shape).astype(np.float32)
    out["ct_in"] = np.clip(ct, -1024.0, 3071.0)
    pet = clean["pet"]
    if randomise:
        pet = simulate.blur_resolution(pet, (rng.uniform(0.0, 1.5),) * 3)
        pet = simulate.poisson_counts(pet, float(rng.uniform(100.0, 1000.0)), rng)
    out["pet_in"] = pet.astype(np.float32)
    events = simulate.random_motion(rng, int(rng.integers(2, 7)), **MOTION)
    moved = simulate.kspace_motion(clean["t1"], events, phase_axis=int(rng.integers(0, 2)))
    out["t1_motion"] = simulate.rician_noise(moved, 0.01 * _percentile_top(moved), rng)
    full = simulate.poisson_counts(clean["pet"], float(rng.uniform(300.0, 1000.0)), rng)
    out["pet_full"] = full
    out["pet_low"] = simulate.poisson_thinning(full, float(rng.uniform(0.04, 0.2)), rng)
    return out


def _write(volume: np.ndarray, grid: sitk.Image, z_range: Tuple[int, int], path: Path) -> None:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume[z_range[0]:z_range[1]], dtype=np.float32))
    first = grid.TransformIndexToPhysicalPoint((0, 0, z_range[0]))
    image.SetSpacing(grid.GetSpacing())
    image.SetDirection(grid.GetDirection())
    image.SetOrigin(first)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(image, path)


def _training_parts(depth: int) -> Dict[str, Tuple[int, int]]:
    """A training subject's two volumes: below (`inf`) and above (`sup`) the held-out slab and its guards."""
    return {"inf": (0, SLAB[0] - GUARD), "sup": (SLAB[1] + GUARD, depth)}


def motion_contrast(clean: np.ndarray, scalp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A motion pair's clean T1 with a random contrast (MOTION_CONTRAST): gamma, then the scalp (TPM soft tissue,
    (Z, Y, X) probability) brightened by a factor 1 + gain u², u uniform in [0, 1] (most pairs near the templates'
    contrast, some with the bright fat of real T1 scans: Colin27's brain sits far below its scalp), then a mild
    bias field."""
    low, high = MOTION_CONTRAST["gamma"]
    out = simulate.gamma(clean, float(np.exp(rng.uniform(np.log(low), np.log(high)))))
    out = out * (1.0 + MOTION_CONTRAST["scalp_gain"] * float(rng.uniform(0.0, 1.0)) ** 2 * scalp)
    bias = float(rng.uniform(0.0, MOTION_CONTRAST["max_bias"]))
    return (out * simulate.bias_field(out.shape, rng, bias)).astype(np.float32)


def motion_pair(clean: np.ndarray, scalp: np.ndarray, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Training motion pair: the target is `clean` with a random contrast (motion_contrast); the input is the
    target with every slice moved its own way (varied, SynthSR manner), then Rician noise."""
    target = motion_contrast(clean, scalp, rng)
    moved = simulate.slicewise_motion(target, rng, (2, 6), **MOTION)
    return {"t1_motion_target": target,
            "t1_motion": simulate.rician_noise(moved, 0.01 * _percentile_top(moved), rng)}


def make_sharp_subject(name: str, rng: np.random.Generator, grid: sitk.Image, arrays: Dict[str, np.ndarray],
                       tissues: np.ndarray, out: Path) -> str:
    """Motion-correction training pairs only: a random warp of the sharp T1 (see sharp_t1)."""
    warp = simulate.random_warp(arrays["t1"].shape[1:], rng)
    clean = warp.apply(arrays["t1_sharp"], order=1, fill=0.0)
    volumes = motion_pair(clean, warp_tissues(tissues, warp)[SOFT_TISSUE], rng)
    for part, z_range in _training_parts(clean.shape[0]).items():
        for key, volume in volumes.items():
            _write(volume, grid, z_range, out / "train" / key / f"{name}_{part}.nii.gz")
    return name


def make_subject(task: Tuple[str, str, int, str, Path, Path, Path]) -> str:
    """One subject: (name, kind, seed, split, spm folder, MNI 2009a file, out folder) -> its files under
    out/split/."""
    name, kind, seed, split, spm, mni, out = task
    rng = np.random.default_rng(seed)
    grid, arrays, tissues = load_sources(spm, mni)
    if kind == "sharp":
        return make_sharp_subject(name, rng, grid, arrays, tissues, out)
    warp = None if name == "avg152" else simulate.random_warp(arrays["t1"].shape[1:], rng)
    clean, extra = clean_volumes(kind, arrays, tissues, warp, rng)
    if split == "val":  # CycleGAN validation pairs: both clean contrasts, into both unpaired pools
        for pool, key in (("cyclegan_t1", "t1"), ("cyclegan_t2", "t2")):
            _write(clean[key], grid, SLAB, out / "train" / pool / f"{name}.nii.gz")
        return name
    volumes = dict(clean)
    volumes.update(input_volumes(kind, clean, extra, rng, randomise=name != "avg152"))
    if split == "train":  # motion pairs for training, in their own folders with the sharp subjects' pairs
        volumes.update(motion_pair(clean["t1"], extra["tissues"][SOFT_TISSUE], rng))
    parts = _training_parts(arrays["t1"].shape[0]) if split == "train" else {"": SLAB}
    for part, z_range in parts.items():
        stem = f"{name}_{part}" if part else name
        for key, volume in volumes.items():
            _write(volume, grid, z_range, out / split / key / f"{stem}.nii.gz")
        if split == "train":  # unpaired CycleGAN pools: T1 of even subjects, T2 of odd ones (real and simulated)
            pool = "cyclegan_t1" if seed % 2 == 0 else "cyclegan_t2"
            key = "t1" if pool == "cyclegan_t1" else "t2"
            _write(volumes[key], grid, z_range, out / split / pool / f"{stem}.nii.gz")
    return name


def make_colin27(spm: Path, mni: Path, out: Path, seed: int) -> None:
    """Colin27 (a real single subject, whole head) and a motion-corrupted copy: held out for motion correction."""
    rng = np.random.default_rng(seed)
    grid, arrays, _ = load_sources(spm, mni)
    clean = arrays["colin27"]
    moved = simulate.kspace_motion(clean, simulate.random_motion(rng, 4, **MOTION), phase_axis=0)
    moved = simulate.rician_noise(moved, 0.01 * _percentile_top(moved), rng)
    for key, volume in (("t1", clean), ("t1_motion", moved)):
        _write(volume, grid, (0, clean.shape[0]), out / "test_colin27" / key / "colin27.nii.gz")


def subject_plan(subjects: int, test_subjects: int, seed: int,
                 sharp_subjects: int = 0) -> List[Tuple[str, str, int, str]]:
    """(name, kind, seed, split): half real-template and half simulated training subjects, sharp-T1 training
    subjects (motion correction only), CycleGAN validation subjects, then test ones."""
    plan = [(f"{'real' if i % 4 < 2 else 'sim'}{i:02d}", "real" if i % 4 < 2 else "sim", seed + i, "train")
            for i in range(subjects)]
    plan += [(f"sharp{i:02d}", "sharp", seed + 6000 + i, "train") for i in range(sharp_subjects)]
    plan += [(f"val{kind}{i}", kind, seed + 5000 + 10 * i + (kind == "sim"), "val")
             for i in range(VALIDATION_SUBJECTS) for kind in ("real", "sim")]
    plan.append(("avg152", "real", seed + 1000, "test"))
    plan += [(f"simtest{i}", "sim", seed + 2000 + i, "test") for i in range(test_subjects)]
    plan += [(f"realtest{i}", "real", seed + 3000 + i, "test") for i in range(test_subjects)]
    return plan


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--spm", type=Path, default=None, help="SPM template folder (default: fetch into .cache)")
    parser.add_argument("--subjects", type=int, default=32, help="training subjects (half real, half simulated)")
    parser.add_argument("--sharp-subjects", type=int, default=16,
                        help="motion-correction training subjects warped from the sharp MNI 2009a T1")
    parser.add_argument("--test-subjects", type=int, default=2, help="simulated and warped-real test subjects each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.spm is None:
        paths = fetch(volumes=list(TEMPLATES.values()) + [TPM])
        args.spm = paths[0].parents[1]
    mni = fetch_mni2009()
    started = time.time()
    plan = subject_plan(args.subjects, args.test_subjects, args.seed, args.sharp_subjects)
    tasks = [(name, kind, seed, split, args.spm, mni, args.out) for name, kind, seed, split in plan]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done in pool.map(make_subject, tasks):
            print(f"  {done}", flush=True)
    make_colin27(args.spm, mni, args.out, args.seed + 4000)
    info = {"script": "Training/data/prepare_shipped_data.py", "subjects": args.subjects,
            "sharp_subjects": args.sharp_subjects,
            "test_subjects": args.test_subjects, "seed": args.seed, "held_out_slab_z": list(SLAB), "guard": GUARD,
            "plan": [{"name": n, "kind": k, "seed": s, "split": p} for n, k, s, p in plan],
            "seconds": round(time.time() - started, 1)}
    (args.out / "dataset.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    print(f"wrote {args.out} ({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
