"""How a T1 -> CT model does on real T1 scans of subjects it never saw (no CT of them exists): HU checks.

The real T1 scans are those of Training/evaluate_real_scans.py (Colin27 with and without skull, pyradiomics'
brain1/brain2, avg152T1). In masks derived from the input T1 (its head outline and the k-means CSF/GM/WM masks
15 mm inside it, evaluate_real_scans.tissue_masks):
- `brain_hu`: the output's median HU in the GM and WM masks, expected in BRAIN_HU (brain tissue on CT);
- `air_hu`: the median HU outside the head outline grown by 5 mm, expected below AIR_HU;
- `bone_hu`: the 95th percentile of HU in the shell between the head outline and the brain 15 mm deep, expected
  above BONE_HU where the input has a skull (a skull-stripped input has none: not checked there);
- `grid_hu`: the amplitude of a 2-voxel periodic texture in the GM and WM masks (evaluate_real_scans.grid_texture),
  reported, not checked: the linear map of the input shows the input's own.
Baselines on the same scans: the input's intensities mapped linearly onto -1000..100 HU (identity) and a k-means
render (the T1's four classes in the head given the literature HU of CSF, GM, WM and scalp; air outside).

    .venv/bin/python Training/real_scans_synthetic_ct.py --model ID_OR_PATH [--out Training/results/real]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from evaluate_real_scans import (checks_main, RENDER_TISSUES, grid, grid_texture, kmeans_1d,  # noqa: E402
                                 real_scans, superior_axis, tissue_masks)

from MedTranslateLib import translate_image  # noqa: E402
from MedTranslateLib.simulate import nominal_ct_hu  # noqa: E402

BRAIN_HU = (10.0, 70.0)
AIR_HU = -700.0
BONE_HU = 400.0
AIR_MARGIN_MM = 5.0
SKULL_FREE = ("colin27_stripped",)  # real scans without skull: no bone expected


def baselines(t1: np.ndarray, head: np.ndarray) -> Dict[str, np.ndarray]:
    """(Z, Y, X) HU: the T1 mapped linearly onto -1000..100 HU (its 0.5/99.5 percentiles in the head), and the
    k-means render with literature HU."""
    low, high = np.percentile(t1[head], (0.5, 99.5))
    identity = -1000.0 + np.clip((t1 - low) / max(high - low, 1e-6), 0.0, 1.0) * 1100.0
    centres = kmeans_1d(t1[head], len(RENDER_TISSUES))
    labels = np.abs(t1[..., None] - centres).argmin(axis=-1)
    hu = nominal_ct_hu()
    render = np.full(t1.shape, hu["air"], np.float64)
    for index, name in enumerate(RENDER_TISSUES):
        render[(labels == index) & head] = hu[name]
    return {"identity": identity, "kmeans_render": ndimage.gaussian_filter(render, 0.5)}


def hu_checks(ct: np.ndarray, head: np.ndarray, masks: Dict[str, np.ndarray], spacing_zyx: tuple,
              skull: bool) -> Dict[str, Any]:
    """The module docstring's checks of one (Z, Y, X) HU volume."""
    brain_voxels = masks["gm"] | masks["wm"]
    brain_hu = float(np.median(ct[brain_voxels]))
    outside = ndimage.distance_transform_edt(~head, sampling=spacing_zyx) > AIR_MARGIN_MM
    air_hu = float(np.median(ct[outside])) if outside.any() else float("nan")
    inner = ndimage.distance_transform_edt(head, sampling=spacing_zyx) > 15.0
    shell = head & ~inner
    bone_hu = float(np.percentile(ct[shell], 95)) if skull else None
    passed = {"brain": BRAIN_HU[0] <= brain_hu <= BRAIN_HU[1], "air": bool(air_hu < AIR_HU) if outside.any() else None,
              "bone": bool(bone_hu > BONE_HU) if skull else None}
    return {"brain_hu": brain_hu, "air_hu": air_hu, "bone_hu": bone_hu,
            "grid_hu": grid_texture(ct, brain_voxels), "passed": passed,
            "all_passed": all(v for v in passed.values() if v is not None)}


def real_scan_checks(model: Any, picture: Path) -> Dict[str, Dict[str, Any]]:
    """{scan: {model or baseline: HU checks}} over every real T1 scan; the grid picture to `picture`."""
    card = model.card
    if card.source_modality != "MR-T1" or card.target_modality != "CT":
        raise SystemExit(f"{card.id}: this script checks MR-T1 -> CT models, not "
                         f"{card.source_modality} -> {card.target_modality}")
    results, pictures = {}, []
    for name, image in real_scans().items():
        t1 = sitk.GetArrayFromImage(image).astype(np.float64)
        output = sitk.GetArrayFromImage(translate_image(image, model, device="cpu")).astype(np.float64)
        spacing_zyx = tuple(image.GetSpacing())[::-1]
        head, masks = tissue_masks(t1, spacing_zyx, superior_axis(image))
        candidates = {"model": output, **baselines(t1, head)}
        skull = name not in SKULL_FREE
        results[name] = {"scan": {"spacing_mm": [round(float(v), 3) for v in image.GetSpacing()], "skull": skull},
                         **{key: hu_checks(volume, head, masks, spacing_zyx, skull)
                            for key, volume in candidates.items()}}
        pictures.append((name, image.GetSpacing(), {"input": t1, **{k: np.clip(v, -200.0, 1600.0)
                                                                    for k, v in candidates.items()}}))
        model_checks = results[name]["model"]
        bone = "—" if model_checks["bone_hu"] is None else f"{model_checks['bone_hu']:.0f}"
        print(f"{card.id} {name}: brain {model_checks['brain_hu']:.0f} HU, air {model_checks['air_hu']:.0f}, "
              f"bone p95 {bone}, grid {model_checks['grid_hu']:.1f} HU (input mapped linearly "
              f"{results[name]['identity']['grid_hu']:.1f}): {'pass' if model_checks['all_passed'] else 'FAIL'}",
              flush=True)
    grid(pictures, f"{card.id} {card.version}", picture)
    return results


def real_scan_failures(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The HU checks the model fails, by scan."""
    return [f"{check} HU on {scan}" for scan, checks in results.items()
            for check, passed in checks["model"]["passed"].items() if passed is False]


def real_scan_baseline_losses(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """None: these HU checks compare the output with fixed expectations, not with a baseline."""
    return []


def main() -> int:
    return checks_main(__doc__.splitlines()[0], real_scan_checks, real_scan_failures)


if __name__ == "__main__":
    sys.exit(main())
