"""How a motion-correction model does on real T1 scans of subjects it never saw, moved in k-space: the clean
scan is the reference.

The real scans are Colin27 (2 mm, whole head), Colin27 without skull, and pyradiomics' brain1/brain2 (0.78 mm
in-plane, 6.5 mm slices) of Training/evaluate_real_scans.py. Each is moved as an interleaved multi-slice scan
would be: one motion history hits the same phase-encoding lines of every axial slice
(MedTranslateLib.simulate.kspace_motion; MOVES moves of up to MAX_ROTATION_DEG and MAX_SHIFT_MM, drawn from a
fixed seed per scan), with Rician noise of 1 % of its 99.5th percentile. Scored against the clean scan:
SSIM, PSNR and MAE of evaluate_real_scans.reference_based (the clean scan's filled head mask, each image scaled by
its own 0.5/99.5 percentiles). Baselines: identity (the moved scan itself) and the moved scan smoothed by a
Gaussian of 0.5 voxels in-plane (what light denoising alone gives).
Reported beside them, not checked: each image's fine detail (`fine_detail`; the clean scan's under "scan") and
how its change from the moved scan follows the true correction (`correction_r`), the two measures that showed why
the motion models lost on real scans (Training/README.md); and under "scan", the scores of the moved scan's two
parts (`acquisitions`): the motion alone and the noise alone, which say how much of the damage is the motion.

    .venv/bin/python Training/real_scans_motion.py --model ID_OR_PATH [--out Training/results/real]
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from evaluate_real_scans import checks_main, grid, real_scans, reference_based, unit  # noqa: E402

from MedTranslateLib import translate_image  # noqa: E402
from MedTranslateLib.metrics import head_mask  # noqa: E402
from MedTranslateLib.simulate import MotionEvent, kspace_motion, random_motion, rician_noise  # noqa: E402

SCANS = ("colin27", "colin27_stripped", "brain1", "brain2")
MOVES = 4
MAX_ROTATION_DEG = 5.0
MAX_SHIFT_MM = 5.0
SEED = 2024
FINE_DETAIL_EROSION_VOXELS = 3  # fine detail is measured this far inside the head, away from its outline


def scan_motion(image: sitk.Image, rng: np.random.Generator) -> List[MotionEvent]:
    """The motion history of `image`: MOVES moves of up to MAX_ROTATION_DEG and MAX_SHIFT_MM (in its pixels), the
    first draws of the scan's generator `rng`."""
    return random_motion(rng, MOVES, MAX_ROTATION_DEG, MAX_SHIFT_MM / float(image.GetSpacing()[0]))


def on_grid(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    """(Z, Y, X) `array` as an image on `image`'s grid."""
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def acquisitions(image: sitk.Image, seed: int) -> Dict[str, np.ndarray]:
    """(Z, Y, X) float32 arrays of `image` acquired with rigid motion in k-space and noise (module docstring):
    "moved" (both, what a model gets), and its two parts: "motion_only" (the same motion, no noise) and
    "noise_only" (the still scan with the very same noise draw: what a perfect motion correction that keeps the
    noise would give)."""
    clean = sitk.GetArrayFromImage(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    motion_only = kspace_motion(clean, scan_motion(image, rng), phase_axis=0)
    sigma = 0.01 * float(np.percentile(motion_only, 99.5))
    noise_rng = copy.deepcopy(rng)
    return {"moved": rician_noise(motion_only, sigma, rng), "motion_only": motion_only,
            "noise_only": rician_noise(clean, sigma, noise_rng)}


def moved_scan(image: sitk.Image, seed: int) -> sitk.Image:
    """`image` with rigid motion in k-space and noise (acquisitions' "moved"), on its own grid."""
    return on_grid(acquisitions(image, seed)["moved"], image)


def detail_region(head: np.ndarray) -> np.ndarray:
    """(Z, Y, X) `head` eroded by FINE_DETAIL_EROSION_VOXELS: where fine_detail measures, once per scan."""
    return ndimage.binary_erosion(head, iterations=FINE_DETAIL_EROSION_VOXELS)


def fine_detail(volume: np.ndarray, head: np.ndarray, region: np.ndarray) -> float:
    """Standard deviation of (Z, Y, X) `volume`, scaled by its 0.5/99.5 percentiles in `head`, minus its 1-voxel
    in-plane Gaussian smoothing, inside `region` (detail_region of `head`): the fine structure (and noise) that a
    correction keeps or removes."""
    scaled = unit(volume.astype(np.float64), head)
    return float((scaled - ndimage.gaussian_filter(scaled, (0.0, 1.0, 1.0)))[region].std())


def correction_r(candidate: np.ndarray, moved: np.ndarray, clean: np.ndarray, head: np.ndarray) -> float:
    """Pearson r, inside `head`, of the candidate's change to the moved scan with the true correction
    (clean - moved); 0 for a candidate that changes nothing."""
    change, truth = (candidate - moved)[head], (clean - moved)[head]
    if change.std() == 0.0 or truth.std() == 0.0:
        return 0.0
    return float(np.corrcoef(change, truth)[0, 1])


def real_scan_checks(model: Any, picture: Path) -> Dict[str, Dict[str, Any]]:
    """{scan: {"scan": its spacing and the clean scan's fine detail; model or baseline: SSIM, PSNR, MAE against the
    clean scan, fine detail, correction r}}; the grid picture to `picture`."""
    card = model.card
    if card.task != "motion-correction":
        raise SystemExit(f"{card.id}: this script checks motion-correction models, not {card.task}")
    results, pictures = {}, []
    scans = real_scans()
    for offset, name in enumerate(SCANS):
        image = scans[name]
        parts = acquisitions(image, SEED + offset)
        moved = on_grid(parts["moved"], image)
        clean = sitk.GetArrayFromImage(image).astype(np.float64)
        source = parts["moved"].astype(np.float64)
        output = sitk.GetArrayFromImage(translate_image(moved, model, device="cpu")).astype(np.float64)
        candidates = {"model": output, "identity": source,
                      "gaussian": ndimage.gaussian_filter(source, (0.0, 0.5, 0.5))}
        head = head_mask(clean)
        region = detail_region(head)
        results[name] = {"scan": {"spacing_mm": [round(float(v), 3) for v in image.GetSpacing()],
                                  "fine_detail": fine_detail(clean, head, region),
                                  **{part: reference_based(parts[part].astype(np.float64), clean)
                                     for part in ("motion_only", "noise_only")}},
                         **{key: {**reference_based(volume, clean), "fine_detail": fine_detail(volume, head, region),
                                  "correction_r": correction_r(volume, source, clean, head)}
                            for key, volume in candidates.items()}}
        pictures.append((name, image.GetSpacing(), {"input": source, **candidates, "reference": clean}))
        scores = ", ".join(f"{k} SSIM {v['ssim']:.3f} MAE {v['mae']:.4f} detail {v['fine_detail']:.3f} "
                           f"r {v['correction_r']:.2f}" for k, v in results[name].items() if k != "scan")
        scan = results[name]["scan"]
        print(f"{card.id} {name}: {scores}, clean detail {scan['fine_detail']:.3f}; the motion alone SSIM "
              f"{scan['motion_only']['ssim']:.3f}, the noise alone {scan['noise_only']['ssim']:.3f}", flush=True)
    grid([(n, s, {k: v for k, v in volumes.items() if k != "identity"}) for n, s, volumes in pictures],
         f"{card.id} {card.version}", picture)
    return results


def real_scan_failures(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The scans on which the model does not beat every baseline's SSIM and MAE."""
    return real_scan_baseline_losses(results)


def real_scan_baseline_losses(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """Each scan and baseline whose SSIM or MAE the model does not beat."""
    failures = []
    for scan, checks in results.items():
        for baseline in (key for key in checks if key not in ("scan", "model")):
            if checks["model"]["ssim"] <= checks[baseline]["ssim"] or checks["model"]["mae"] >= checks[baseline]["mae"]:
                failures.append(f"{scan} against {baseline}")
    return failures


def main() -> int:
    return checks_main(__doc__.splitlines()[0], real_scan_checks, real_scan_failures)


if __name__ == "__main__":
    sys.exit(main())
