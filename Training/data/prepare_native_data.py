"""Native-resolution training subjects, SynthSeg/SynthSR style: 1 mm for the MR contrast, CT and motion models,
2 mm for the PET models.

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
nominal BrainWeb tissues): spin-echo T2 (TR 4000 / TE 100 ms) and PD (TR 3300 / TE 35 ms), skull-stripped and
cut like their input; and `ct`, a CT in HU (per-tissue HU of the subject, the skull's density varying smoothly
in space; air where the input is stripped or cut).

Whole-head volumes of the same deformed subject (never skull-stripped; their own crop), drawn from a second
random stream so that the volumes above stay as they were:
- `ct_in` -> `t1_target` (CT -> T1): a CT with its own HU draw, thick slices (50 %: 1.5-5 mm along a random
  axis), in-plane blur and noise of 3-20 HU; the target a sharp spin-echo T1 (TR 500 / TE 15 ms, nominal tissues);
- `t1_motion` -> `t1_motion_target` (motion correction): a still T1 of random contrast (spin-echo, random
  per-tissue intensities, or the real 2009a brain set in the simulated head), fine texture within tissues
  (simulate.tissue_texture: speckle of up to 15 %, and simulate.sheet_texture: thin bright or dark sheets of up to
  35 %, which slices cut as sharp curved lines like sulci and vessels; real scans show both, smooth maps neither),
  gamma, bias field and (50 %) a
  coarser resolution (scan_resolution), shared by target and input; the input moved in k-space
  (MedTranslateLib.simulate.motion: 2-6 moves of up to 6 degrees and 6 mm, axial slices, each slice its own moves
  or one history for all), or not at all (MOTION_STILL); half of the coarser-resolution pairs are
  acquired and moved on a 2 mm grid (block means) and brought back to 1 mm by linear interpolation, input and
  target alike (ACQUIRED_COARSE); Rician noise of up to 3 % (simulate.rician_noise), drawn independently for input
  and target: a moved scan's noise is its own acquisition's, which no still scan shares, so the target is a still
  scan with noise of its own at the same level (Noise2Noise: under an L1 loss the network learns the still scan's
  median, which keeps a magnitude image's Rician floor in dark tissue, as real scans show it, and not the black of
  a noise-free image).

And on a 2 mm grid (the 1 mm maps averaged over 2x2x2 blocks; PET is reconstructed at 2 mm or coarser), from a
third random stream:
- `pet_in` -> `ct_pet` (PET -> CT, attenuation): FDG-like PET (uptake per tissue drawn by
  simulate.random_pet_uptake, scalp and bone uptake down to none, PET_EXTRACEREBRAL, as in SPM's average of
  real PET; a Gaussian point-spread function of PET_FWHM_MM, 5-10 mm, that average's ~8 mm inside the range;
  residual scatter and randoms, a background in and around the head of up to 8 % and 3 % of grey matter's
  uptake, as real PET shows in the air; extra blur up to 1.5 voxels; Poisson counts of 100-1000 at the 99th
  percentile); the target a noise-free CT of the whole head (HU as `ct`);
- `pet_low` -> `pet_full` (low-count PET denoising): a full-count realisation (300-1000 counts) and a copy
  thinned to 4-20 % of its counts (binomial thinning: exactly the Poisson image of the shorter scan).

Layout: OUT/{train,test}/<volume>/<subject>.nii.gz on 1 mm (2 mm for PET_VOLUMES) grids cropped to each head;
OUT/dataset.json records every subject's draws. Test subjects use seeds disjoint from the training ones. A subject
whose volumes all exist is kept (its draws read back from dataset.json), so a larger --subjects or --test adds only
the new ones; --redo-pet and --redo-head draw the PET or whole-head volumes of the kept subjects again (after a
change to their simulation).

    python Training/data/prepare_native_data.py [--out Training/data/native] [--subjects 24] [--test 6] [--redo-pet]
        [--redo-head] [--only-head] [--workers 2]
    python Training/data/prepare_native_data.py --save-anatomy FILE    # the templates' anatomy, 8 bits, ~10 MB
    python Training/data/prepare_native_data.py --anatomy FILE ...     # subjects from it (no template packages)
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
from scipy import ndimage
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
BRAIN_VOLUMES = ("t1",) + TARGETS + ("ct",)  # the skull-stripped or cut subject and its targets: one crop
HEAD_VOLUMES = ("ct_in", "t1_target", "t1_motion", "t1_motion_target")  # the whole head: another crop
PET_VOLUMES = ("pet_in", "ct_pet", "pet_full", "pet_low")  # the whole head on a 2 mm grid (PET's resolution)
PET_FACTOR = 2  # the PET grid's voxels are this many 1 mm voxels a side
PET_FWHM_MM = (5.0, 10.0)  # the point-spread function's range; SPM's average of real PET scans is about 8 mm
PET_EXTRACEREBRAL = {"bone": (0.0, 0.2), "soft": (0.0, 0.3)}  # uptake relative to grey matter: none to some
PET_SCATTER = (0.0, 0.08)  # residual scatter's peak and the randoms' level, relative to grey matter: SPM's average
PET_RANDOMS = (0.0, 0.03)  # real PET shows 2-4 % of its maximum in the air around the head, the simulation had 0
MOTION = {"max_rotation_deg": 6.0, "max_shift_voxels": 6.0}  # 1 mm voxels: up to 6 mm between moves
MOTION_SLICE_AXIS = 0  # motion pairs are acquired as axial slices, the one plane the motion model runs in: the
#                        ghosts of a 2D acquisition lie in its slices, and a view across them shows no learnable pattern
# fine texture within tissues, shared by a motion pair's input and target: real heads show it, smooth tissue maps do
# not, and without it the network took fine structure for noise and smoothed real scans (motion 2.5)
MOTION_TEXTURE = (0.0, 0.15)  # the range of its amplitude (simulate.tissue_texture)
MOTION_TEXTURE_SIGMA_VOXELS = (0.5, 1.5)  # the range of its smoothing
# sharp curved lines within tissues (sulci, vessels), shared by input and target alike: with speckle alone the
# network still removed the fine edges of real scans (motion 2.7); simulate.sheet_texture's ranges:
MOTION_SHEETS = (-0.35, 0.35)  # its amplitude: dark (sulci) or bright (vessels, as after contrast) lines
MOTION_SHEETS_SCALE_VOXELS = (2.0, 5.0)  # the smoothing of the noise whose zero level set draws them: their spacing
MOTION_SHEETS_WIDTH_VOXELS = (0.4, 1.0)  # their half-width
MOTION_STILL = 0.15  # the share of motion pairs whose input did not move: a still scan must come back as it is
ACQUIRED_COARSE = 0.5  # of the motion pairs at a coarser resolution, the share acquired (and moved) on a grid
ACQUISITION_FACTOR = 2  # that many times coarser (2 mm), as the 2 mm and thick-slice real scans are acquired
TEST_SEED_OFFSET = 10_000
ANATOMY_VARIABLE = "MEDTRANSLATE_ANATOMY"  # load_anatomy reads this save_anatomy file instead of the templates
AIR = simulate.TISSUES.index("air")
BONE = simulate.TISSUES.index("bone")


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Tuple[sitk.Image, np.ndarray, np.ndarray, np.ndarray]:
    """The 2009a grid, the head's (6, Z, Y, X) tissue maps, its brain mask and the real 2009a T1 (read once per
    process; callers treat the arrays as read-only): from the templates, or from the file that the environment
    variable ANATOMY_VARIABLE names (save_anatomy's, on a machine without the template packages)."""
    saved = os.environ.get(ANATOMY_VARIABLE)
    if saved:
        return read_saved_anatomy(Path(saved))
    t1, gm, wm = (sitk.ReadImage(str(fetch_mni2009(kind=kind)), sitk.sitkFloat32) for kind in ("t1", "gm", "wm"))
    (tpm,) = fetch_spm(volumes=["tpm/TPM.nii"])
    tissues, brain = head_tissues(t1, gm, wm, sitk.ReadImage(str(tpm), sitk.sitkFloat32))
    return t1, tissues, brain, sitk.GetArrayFromImage(t1)


def save_anatomy(path: Path) -> None:
    """The templates' anatomy in about 10 MB (a lent GPU machine receives 64 MiB and has no template packages):
    tissue maps and brain mask in 8 bits (steps of 1/255), the real T1 in float16, the grid's geometry."""
    grid, tissues, brain, real_t1 = load_anatomy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file object: savez would add .npz to a name without it
        np.savez_compressed(handle, tissues=np.round(tissues * 255.0).astype(np.uint8),
                            brain=np.round(brain * 255.0).astype(np.uint8), real_t1=real_t1.astype(np.float16),
                            spacing=np.array(grid.GetSpacing()), origin=np.array(grid.GetOrigin()),
                            direction=np.array(grid.GetDirection()))


def read_saved_anatomy(path: Path) -> Tuple[sitk.Image, np.ndarray, np.ndarray, np.ndarray]:
    """load_anatomy's tuple from save_anatomy's file; the tissue maps renormalised to sum to 1."""
    with np.load(path) as saved:
        tissues = saved["tissues"].astype(np.float32) / 255.0
        tissues /= np.maximum(tissues.sum(axis=0, keepdims=True), 1e-6)
        brain = saved["brain"].astype(np.float32) / 255.0
        real_t1 = saved["real_t1"].astype(np.float32)
        grid = sitk.GetImageFromArray(real_t1)
        grid.SetSpacing([float(v) for v in saved["spacing"]])
        grid.SetOrigin([float(v) for v in saved["origin"]])
        grid.SetDirection([float(v) for v in saved["direction"]])
    return grid, tissues, brain, real_t1


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


def ct_hu(tissues: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """(Z, Y, X) HU of (6, Z, Y, X) `tissues`: simulate.random_ct_hu per tissue, the skull's HU scaled by a smooth
    field (exp of a N(0, 0.15) field: denser and thinner bone in places), and its draws."""
    hu = simulate.random_ct_hu(rng)
    soft = {name: (0.0 if name == "bone" else value) for name, value in hu.items()}
    ct = simulate.pseudo_ct(tissues, soft)
    ct += hu["bone"] * simulate.bias_field(ct.shape, rng, 0.15) * tissues[BONE]
    return ct.astype(np.float32), hu


def move_head(image: np.ndarray, rng: np.random.Generator, voxel_mm: float = 1.0) -> Tuple[np.ndarray, Dict[str, Any]]:
    """`image` (Z, Y, X, voxels of `voxel_mm`) acquired as axial slices (MOTION_SLICE_AXIS) with rigid motion in
    k-space: each slice its own 2-6 moves, or (50 %) one history for all slices (interleaved multi-slice)."""
    motion = {**MOTION, "max_shift_voxels": MOTION["max_shift_voxels"] / voxel_mm}
    slices = np.moveaxis(image, MOTION_SLICE_AXIS, 0)
    if rng.random() < 0.5:
        moved, kind = simulate.slicewise_motion(slices, rng, (2, 6), **motion), "each slice"
    else:
        events = simulate.random_motion(rng, int(rng.integers(2, 7)), **motion)
        moved, kind = simulate.kspace_motion(slices, events, phase_axis=int(rng.integers(0, 2))), "one history"
    return np.moveaxis(moved, 0, MOTION_SLICE_AXIS), {"slice_axis": MOTION_SLICE_AXIS, "motion": kind}


def head_volumes(deformed: np.ndarray, brain: np.ndarray, real_t1: np.ndarray, keep: np.ndarray,
                 rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The whole-head pairs (HEAD_VOLUMES) of one deformed subject: (6, Z, Y, X) tissues, its deformed brain mask
    and real 2009a T1, and its field of view `keep` (all (Z, Y, X)); and their draws."""
    ct, hu = ct_hu(deformed, rng)
    draws: Dict[str, Any] = {"ct_hu": hu, "ct_noise_hu": float(rng.uniform(3.0, 20.0))}
    widths = [0.0] + [float(rng.uniform(0.0, 0.8))] * 2
    if rng.random() < 0.5:
        axis = int(rng.integers(0, 3))
        widths[axis] = float(rng.uniform(1.5, 5.0))
        draws.update(ct_thick_axis=axis, ct_thick_fwhm_mm=widths[axis])
    ct = simulate.blur_resolution(ct, widths) + rng.normal(0.0, draws["ct_noise_hu"], ct.shape).astype(np.float32)
    volumes = {"ct_in": np.clip(np.where(keep > 0.5, ct, -1000.0), -1024.0, 3071.0),
               "t1_target": simulate.mr_spin_echo(deformed, simulate.nominal_mr(), *simulate.SEQUENCES["T1"]) * keep}
    kind = str(rng.choice(list(INPUT_KINDS), p=list(INPUT_KINDS.values())))
    clean, contrast = t1_contrast("spin-echo" if kind == "real" else kind, deformed, rng)
    if kind == "real":  # the real 2009a brain, its white matter at the simulated white matter's level
        white = deformed[simulate.TISSUES.index("wm")] > 0.9
        scale = float(np.median(clean[white]) / max(np.median(real_t1[white]), 1e-6))
        clean = clean * (1.0 - brain) + real_t1 * scale * brain
    draws.update(motion_input=kind, motion_contrast=contrast, motion_gamma=float(rng.uniform(0.75, 1.35)),
                 motion_bias=float(rng.uniform(0.0, 0.15)), motion_noise=float(rng.uniform(0.0, 0.03)),
                 motion_texture=float(rng.uniform(*MOTION_TEXTURE)),
                 motion_texture_sigma_voxels=float(rng.uniform(*MOTION_TEXTURE_SIGMA_VOXELS)),
                 motion_sheets=float(rng.uniform(*MOTION_SHEETS)),
                 motion_sheets_scale_voxels=float(rng.uniform(*MOTION_SHEETS_SCALE_VOXELS)),
                 motion_sheets_width_voxels=float(rng.uniform(*MOTION_SHEETS_WIDTH_VOXELS)))
    clean = clean * simulate.tissue_texture(clean.shape, rng, draws["motion_texture"],
                                            draws["motion_texture_sigma_voxels"])
    clean = clean * simulate.sheet_texture(clean.shape, rng, draws["motion_sheets"],
                                           draws["motion_sheets_scale_voxels"], draws["motion_sheets_width_voxels"])
    clean = simulate.gamma(np.clip(clean, 0.0, None), draws["motion_gamma"]) * keep
    clean = clean * simulate.bias_field(clean.shape, rng, draws["motion_bias"])
    clean, resolution = scan_resolution(clean, rng)
    factor = ACQUISITION_FACTOR if resolution and rng.random() < ACQUIRED_COARSE else 1
    acquired = block_mean(clean, factor) if factor > 1 else clean
    if rng.random() < MOTION_STILL:
        moved, motion = acquired, {"motion": "none"}
    else:
        moved, motion = move_head(acquired, rng, float(factor))
    if factor > 1:  # a scan acquired (and moved) on a coarser grid, seen on the 1 mm grid as the engine resamples it
        clean, moved = (upsampled(volume, factor, clean.shape) for volume in (acquired, moved))
        motion["acquisition_mm"] = float(factor)
    sigma = draws["motion_noise"] * float(np.percentile(clean, 99.5))
    volumes["t1_motion"] = simulate.rician_noise(moved, sigma, rng)
    volumes["t1_motion_target"] = simulate.rician_noise(clean, sigma, rng)  # its own draw (see the docstring)
    return volumes, {**draws, **resolution, **motion}


def scan_resolution(image: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """`image` (Z, Y, X) as a scan of coarser resolution would show it (50 %): a Gaussian of 1-2.5 mm FWHM in every
    direction, and for half of those thick slices of 2-6 mm along a random axis; else as it is."""
    if rng.random() >= 0.5:
        return image, {}
    widths = [float(rng.uniform(1.0, 2.5))] * 3
    draws: Dict[str, Any] = {"resolution_fwhm_mm": widths[0]}
    if rng.random() < 0.5:
        axis = int(rng.integers(0, 3))
        widths[axis] = float(rng.uniform(2.0, 6.0))
        draws.update(resolution_thick_axis=axis, resolution_thick_fwhm_mm=widths[axis])
    return simulate.blur_resolution(image, widths), draws


def upsampled(volume: np.ndarray, factor: int, shape: Tuple[int, ...]) -> np.ndarray:
    """(Z, Y, X) on a grid `factor` times coarser -> `shape` (the block_mean input's): linear interpolation onto the
    fine grid, the edges block_mean cut repeated from their neighbours."""
    fine = ndimage.zoom(volume, factor, order=1, grid_mode=True, mode="nearest").astype(np.float32)
    return np.pad(fine, [(0, full - size) for full, size in zip(shape, fine.shape)], mode="edge")


def block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """(Z, Y, X) -> (Z // f, Y // f, X // f): the mean of every f³ block (the edges that do not fill one are cut)."""
    z, y, x = (size // factor for size in volume.shape)
    blocks = volume[:z * factor, :y * factor, :x * factor].reshape(z, factor, y, factor, x, factor)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float32)


def pet_volumes(deformed: np.ndarray, rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The PET pairs (PET_VOLUMES) of one deformed subject's (6, Z, Y, X) 1 mm tissues, on the PET_FACTOR grid."""
    coarse = np.stack([block_mean(channel, PET_FACTOR) for channel in deformed])
    spacing = (float(PET_FACTOR),) * 3
    uptake, fwhm = simulate.random_pet_uptake(rng, **PET_EXTRACEREBRAL), float(rng.uniform(*PET_FWHM_MM))
    activity = simulate.pet_uptake(coarse, uptake, fwhm, spacing)
    draws: Dict[str, Any] = {"pet_uptake": uptake, "pet_fwhm_mm": fwhm, "pet_extra_blur_voxels":
                             float(rng.uniform(0.0, 1.5)), "pet_in_counts": float(rng.uniform(100.0, 1000.0)),
                             "pet_full_counts": float(rng.uniform(300.0, 1000.0)),
                             "pet_low_fraction": float(rng.uniform(0.04, 0.2)),
                             "pet_scatter": float(rng.uniform(*PET_SCATTER)),
                             "pet_randoms": float(rng.uniform(*PET_RANDOMS))}
    activity = simulate.pet_background(activity, spacing, draws["pet_scatter"], draws["pet_randoms"])
    blurred = simulate.blur_resolution(activity, (draws["pet_extra_blur_voxels"],) * 3)
    ct, hu = ct_hu(coarse, rng)
    full = simulate.poisson_counts(activity, draws["pet_full_counts"], rng)
    return ({"pet_in": simulate.poisson_counts(blurred, draws["pet_in_counts"], rng), "ct_pet": ct,
             "pet_full": full, "pet_low": simulate.poisson_thinning(full, draws["pet_low_fraction"], rng)},
            {**draws, "ct_pet_hu": hu})


def deformed_head(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """A random deformation's sampling coordinates and the head's (6, Z, Y, X) tissue maps deformed by it (the
    first draws of a subject's stream), renormalised to sum to 1."""
    _, tissues, brain, _ = load_anatomy()
    coordinates = random_deformation(brain.shape, rng)
    deformed = np.stack([deform(channel, coordinates, fill=1.0 if index == AIR else 0.0)
                         for index, channel in enumerate(tissues)])
    deformed /= np.maximum(deformed.sum(axis=0, keepdims=True), 1e-6)
    return coordinates, deformed


def second_stream(seed: int, coordinates: np.ndarray, deformed: np.ndarray
                  ) -> Tuple[np.ndarray, Dict[str, float], Dict[str, np.ndarray], Dict[str, Any]]:
    """The draws of a subject's second random stream (so the first stream's volumes stay as they were before these
    existed): its CT in HU and CT draws, then its whole-head volumes (HEAD_VOLUMES) and their draws."""
    _, _, brain, real_t1 = load_anatomy()
    extra = np.random.default_rng([seed, 1])
    ct, hu = ct_hu(deformed, extra)
    fov = field_of_view(brain.shape, extra)[0]
    head, head_draws = head_volumes(deformed, np.clip(deform(brain, coordinates), 0.0, 1.0),
                                    deform(real_t1, coordinates), fov, extra)
    return ct, hu, head, head_draws


def first_stream(seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """A subject's first random stream: its T1 input and MR targets (TARGETS) as (Z, Y, X) float32, their draws,
    its deformation's coordinates, its deformed tissue maps (C, Z, Y, X) and what of the head is kept (Z, Y, X)."""
    _, _, brain, real_t1 = load_anatomy()
    rng = np.random.default_rng(seed)
    coordinates, deformed = deformed_head(rng)
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
        sequence = simulate.SEQUENCES[target.upper()]
        volumes[target] = simulate.mr_spin_echo(deformed, simulate.nominal_mr(), *sequence) * keep
    draws = {"input": kind, "skull_stripped": stripped, "contrast": contrast, "corruption": corruption, **cut}
    return volumes, draws, coordinates, deformed, keep


def make_subject(name: str, seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, Any]]:
    """One subject's volumes as (Z, Y, X) float32: BRAIN_VOLUMES and HEAD_VOLUMES on the 2009a grid, PET_VOLUMES
    on the PET_FACTOR grid; and its draws."""
    volumes, first_draws, coordinates, deformed, keep = first_stream(seed)
    ct, hu, head, head_draws = second_stream(seed, coordinates, deformed)
    volumes["ct"] = np.where(keep > 0.5, ct, -1000.0).astype(np.float32)
    volumes.update(head)
    pet, pet_draws = pet_volumes(deformed, np.random.default_rng([seed, 2]))
    draws = {"name": name, "seed": seed, **first_draws, "ct_hu": hu, "head": head_draws, "pet": pet_draws}
    return volumes, pet, draws


def head_box(volume: np.ndarray, margin: int = 4) -> Tuple[slice, ...]:
    """The bounding box of the voxels above 1 % of the volume's maximum, grown by `margin`."""
    nonzero = np.argwhere(volume > 0.01 * volume.max())
    low = np.maximum(nonzero.min(axis=0) - margin, 0)
    high = np.minimum(nonzero.max(axis=0) + margin + 1, volume.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def write_cropped(path: Path, array: np.ndarray, box: Tuple[slice, ...], factor: int) -> None:
    """`array[box]` as a volume on the 2009a grid coarsened `factor` times (its voxel i the mean of 1 mm voxels
    factor*i .. factor*i + factor - 1)."""
    grid = load_anatomy()[0]
    image = sitk.GetImageFromArray(np.ascontiguousarray(array[box], dtype=np.float32))
    image.SetSpacing([spacing * factor for spacing in grid.GetSpacing()])
    image.SetDirection(grid.GetDirection())
    first = [factor * b.start + (factor - 1) / 2.0 for b in reversed(box)]  # (x, y, z) in 1 mm voxels
    image.SetOrigin(grid.TransformContinuousIndexToPhysicalPoint(first))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(image, path)


def write_subject(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    volumes, pet, draws = make_subject(name, seed)
    box = head_box(volumes["t2"] + volumes["t1"])
    for key in BRAIN_VOLUMES:
        write_cropped(out / split / key / f"{name}.nii.gz", volumes[key], box, 1)
    write_head(out, split, name, volumes)
    write_pet(out, split, name, pet)
    return {"split": split, **draws}


def write_head(out: Path, split: str, name: str, head: Dict[str, np.ndarray]) -> None:
    """HEAD_VOLUMES cropped to the box of the noise-free whole-head T1 (`t1_target`; the motion pair carries noise)."""
    box = head_box(head["t1_target"])
    for key in HEAD_VOLUMES:
        write_cropped(out / split / key / f"{name}.nii.gz", head[key], box, 1)


def write_pet(out: Path, split: str, name: str, pet: Dict[str, np.ndarray]) -> None:
    pet_box = head_box(pet["ct_pet"] + 1000.0)
    for key, array in pet.items():
        write_cropped(out / split / key / f"{name}.nii.gz", array, pet_box, PET_FACTOR)


def redo_pet(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    """The PET volumes of a prepared subject drawn again from its seed (the same deformation); their draws."""
    _, deformed = deformed_head(np.random.default_rng(seed))
    pet, draws = pet_volumes(deformed, np.random.default_rng([seed, 2]))
    write_pet(out, split, name, pet)
    return draws


def redo_targets(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    """The MR targets (TARGETS) of a prepared subject rendered again from its seed (the same deformation, field of
    view and crop), e.g. after a change of simulate.SEQUENCES; its first stream's draws."""
    volumes, draws, _, _, _ = first_stream(seed)
    box = head_box(volumes["t2"] + volumes["t1"])
    for key in TARGETS:
        write_cropped(out / split / key / f"{name}.nii.gz", volumes[key], box, 1)
    return draws


def write_head_subject(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    """Only the whole-head volumes (HEAD_VOLUMES) of a new subject, from its seed (--only-head); its plan entry."""
    return {"split": split, "name": name, "seed": seed, "head": redo_head(out, split, name, seed)}


def draws_recorded(entry: Dict[str, Any], draws: Dict[str, Any]) -> bool:
    """Whether `draws` are what the subject's dataset.json `entry` records (compared as JSON: tuples are lists)."""
    return all(entry.get(name) == value for name, value in json.loads(json.dumps(draws)).items())


def redo_head(out: Path, split: str, name: str, seed: int) -> Dict[str, Any]:
    """The whole-head volumes of a prepared subject drawn again from its seed (the same deformation); their draws."""
    coordinates, deformed = deformed_head(np.random.default_rng(seed))
    _, _, head, draws = second_stream(seed, coordinates, deformed)
    write_head(out, split, name, head)
    return draws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--subjects", type=int, default=24, help="training subjects")
    parser.add_argument("--test", type=int, default=6, help="held-out test subjects")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redo-pet", action="store_true", help="draw the kept subjects' PET volumes again")
    parser.add_argument("--redo-head", action="store_true",
                        help="draw the kept subjects' whole-head volumes (CT -> T1, motion) again")
    parser.add_argument("--redo-targets", action="store_true",
                        help="render the kept subjects' MR targets (T2, PD) again")
    parser.add_argument("--only-head", action="store_true",
                        help="prepare only the whole-head volumes (CT -> T1, motion) of new subjects")
    parser.add_argument("--save-anatomy", type=Path, default=None, metavar="FILE",
                        help="write the templates' anatomy to FILE in about 10 MB (8 bits) and stop")
    parser.add_argument("--anatomy", type=Path, default=None, metavar="FILE",
                        help="build the subjects from --save-anatomy's FILE instead of the templates")
    args = parser.parse_args()
    if args.save_anatomy:
        save_anatomy(args.save_anatomy)
        print(f"anatomy saved to {args.save_anatomy} ({args.save_anatomy.stat().st_size / 2**20:.1f} MiB)")
        return 0
    if args.anatomy:  # the worker processes inherit it
        os.environ[ANATOMY_VARIABLE] = str(args.anatomy.resolve())
    jobs = [("train", f"subj{i:03d}", i) for i in range(args.subjects)]
    jobs += [("test", f"test{i:03d}", TEST_SEED_OFFSET + i) for i in range(args.test)]
    listed = args.out / "dataset.json"
    needed = HEAD_VOLUMES if args.only_head else BRAIN_VOLUMES + HEAD_VOLUMES + PET_VOLUMES
    done = {entry["name"]: entry for entry in
            (json.loads(listed.read_text(encoding="utf-8"))["plan"] if listed.is_file() else [])
            if all((args.out / entry["split"] / key / f"{entry['name']}.nii.gz").is_file() for key in needed)}
    todo = [job for job in jobs if job[1] not in done]
    start = time.time()
    make = write_head_subject if args.only_head else write_subject
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        made = {entry["name"]: entry for entry in pool.map(make, [args.out] * len(todo), *zip(*todo))} \
            if todo else {}
        kept = [(entry["split"], entry["name"], entry["seed"]) for entry in done.values()]
        for key, redo in (("pet", redo_pet), ("head", redo_head), ("targets", redo_targets)):
            if getattr(args, f"redo_{key}") and kept:
                for entry, draws in zip(done.values(), pool.map(redo, [args.out] * len(kept), *zip(*kept))):
                    if key != "targets":
                        entry[key] = draws
                    elif not draws_recorded(entry, draws):
                        raise SystemExit(f"{entry['name']}: its seed no longer draws what dataset.json records")
    plan = [done.get(name) or made[name] for _, name, _ in jobs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset.json").write_text(json.dumps({"subjects": args.subjects, "test": args.test, "plan": plan},
                                                      indent=1) + "\n", encoding="utf-8")
    print(f"{len(todo)} new of {len(plan)} subjects in {args.out}, in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
