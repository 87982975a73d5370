"""How a CT -> T1 model does on a real head CT of a subject it never saw (no MR of it exists): contrast checks.

The scan: `head_ct`, a real clinical head CT (Debian invesalius-examples, GPL-2; Training/data/fetch_real_scans.py).
Masks come from the CT itself: the head (above -500 HU, holes filled slice by slice, largest component); bone
(above 600 HU); inside the brain, deeper than 15 mm in the head, farther than BONE_MARGIN_MM from bone and
between 0 and 80 HU, a k-means of the CT smoothed over 1 mm into CSF, WM and GM (CSF < WM < GM in HU; each
class's half nearest its centre). Without the bone margin the brightest class was mostly the skull base (beam
hardening and partial volume with bone: 83 % of it in the lowest third of the scan, 44 HU on average), not
cortex; with it the classes average 8 / 22 / 31 HU, the GM class spread through the brain (33 % in that third).
- `order`: the output's mean WM > GM > CSF, as on a T1 (margins in units of the output's 0.5-99.5 percentile
  range in the head);
- `bone_dark`: the output's mean in bone below its mean in GM (cortical bone has no T1 signal);
- `stripes`: as in Training/evaluate_real_scans.py (through-plane against in-plane gradient, over the input's);
- `grid`: the amplitude of a 2-voxel periodic texture in the output, in those units (as there).
Baselines on the same scan: identity (the CT) and a k-means render (the CT's classes given the literature
spin-echo T1 signal of each tissue: evaluate_real_scans' render with the classes taken from the CT).

    .venv/bin/python Training/real_scans_ct_to_t1.py --model ID_OR_PATH [--out Training/results/real]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
sys.path.insert(0, str(REPO / "Training" / "data"))
from evaluate_real_scans import (checks_main, BRAIN_DEPTH_MM, gradients, grid, grid_texture,  # noqa: E402
                                 kmeans_1d, stripes_index, unit)
from fetch_real_scans import fetch as fetch_real  # noqa: E402

from MedTranslateLib import translate_image  # noqa: E402
from MedTranslateLib.metrics import largest_component  # noqa: E402
from MedTranslateLib.simulate import SEQUENCES, mr_spin_echo, nominal_mr  # noqa: E402
from MedTranslateLib.simulate.tissues import TISSUES  # noqa: E402
from MedTranslateLib.volume import read_volume  # noqa: E402

BONE_HU = 600.0
BONE_MARGIN_MM = 10.0  # brain voxels this close to bone are left out of the CSF / WM / GM classes
BRAIN_RANGE_HU = (0.0, 80.0)
CLASSES = ("csf", "wm", "gm")  # dark to bright on CT


def ct_masks(ct: np.ndarray, spacing_zyx: Tuple[float, ...]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The head and the bone, CSF, WM and GM masks of a (Z, Y, X) CT in HU (module docstring)."""
    head = ct > -500.0
    for index in range(head.shape[0]):
        head[index] = ndimage.binary_fill_holes(head[index])
    head = largest_component(head)
    bone = head & (ct > BONE_HU)
    deep = ndimage.distance_transform_edt(head, sampling=spacing_zyx) > BRAIN_DEPTH_MM
    off_bone = ndimage.distance_transform_edt(~bone, sampling=spacing_zyx) > BONE_MARGIN_MM
    smooth = ndimage.gaussian_filter(ct, [1.0 / s for s in spacing_zyx])
    brain = deep & off_bone & (smooth > BRAIN_RANGE_HU[0]) & (smooth < BRAIN_RANGE_HU[1])
    centres = kmeans_1d(smooth[brain], len(CLASSES))
    distance = np.abs(smooth[..., None] - centres)
    label = distance.argmin(axis=-1)
    masks = {"bone": bone}
    for index, name in enumerate(CLASSES):
        member = brain & (label == index)
        masks[name] = member & (distance[..., index] <= np.median(distance[..., index][member]))
    return head, masks


def render_baseline(ct: np.ndarray, head: np.ndarray, masks: Dict[str, np.ndarray]) -> np.ndarray:
    """The CT's classes rendered as a spin-echo T1 (nominal tissues): brain classes from the k-means, bone above
    BONE_HU, the rest of the head soft tissue, air outside."""
    tissues = np.zeros((len(TISSUES),) + ct.shape, np.float32)
    brain = np.zeros(ct.shape, bool)
    for name in CLASSES:
        tissues[TISSUES.index(name)] = masks[name]
        brain |= masks[name]
    tissues[TISSUES.index("bone")] = masks["bone"]
    tissues[TISSUES.index("soft")] = head & ~brain & ~masks["bone"]
    tissues[TISSUES.index("air")] = ~head
    return ndimage.gaussian_filter(mr_spin_echo(tissues, nominal_mr(), *SEQUENCES["T1"]), 0.5)


def contrast_checks(output: np.ndarray, ct: np.ndarray, head: np.ndarray,
                    masks: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """The module docstring's checks of one (Z, Y, X) output."""
    out = unit(output, head)
    means = {name: float(out[mask].mean()) if mask.any() else float("nan") for name, mask in masks.items()}
    return {"means": means, "wm_minus_gm": means["wm"] - means["gm"], "gm_minus_csf": means["gm"] - means["csf"],
            "order": bool(means["wm"] > means["gm"] > means["csf"]), "bone_dark": bool(means["bone"] < means["gm"]),
            "stripes": stripes_index(gradients(out, head), gradients(unit(ct, head), head)),
            "grid": grid_texture(out, head)}


def real_scan_checks(model: Any, picture: Path) -> Dict[str, Dict[str, Any]]:
    """{scan: {model or baseline: checks}} on the real head CT; the grid picture to `picture`."""
    card = model.card
    if card.source_modality != "CT" or card.target_modality != "MR-T1":
        raise SystemExit(f"{card.id}: this script checks CT -> MR-T1 models, not "
                         f"{card.source_modality} -> {card.target_modality}")
    image = read_volume(fetch_real("head_ct"))
    ct = sitk.GetArrayFromImage(image).astype(np.float64)
    output = sitk.GetArrayFromImage(translate_image(image, model, device="cpu")).astype(np.float64)
    head, masks = ct_masks(ct, tuple(image.GetSpacing())[::-1])
    candidates = {"model": output, "identity": ct, "kmeans_render": render_baseline(ct, head, masks)}
    checks = {key: contrast_checks(volume, ct, head, masks) for key, volume in candidates.items()}
    model_checks = checks["model"]
    print(f"{card.id} head_ct: order {model_checks['order']} (WM-GM {model_checks['wm_minus_gm']:+.2f}, GM-CSF "
          f"{model_checks['gm_minus_csf']:+.2f}), bone dark {model_checks['bone_dark']}, "
          f"stripes {model_checks['stripes']:.2f}, grid {model_checks['grid']:.4f}", flush=True)
    grid([("head_ct", image.GetSpacing(), {"input": np.clip(ct, -200.0, 1600.0), **candidates})],
         f"{card.id} {card.version}", picture)
    spacing = [round(float(v), 3) for v in image.GetSpacing()]
    return {"head_ct": {"scan": {"spacing_mm": spacing}, **checks}}


def real_scan_failures(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The checks the model fails, by scan."""
    failures = []
    for scan, checks in results.items():
        for check in ("order", "bone_dark"):
            if not checks["model"][check]:
                failures.append(f"{check.replace('_', ' ')} on {scan}")
    return failures


def real_scan_baseline_losses(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """None: these contrast checks compare the output with fixed expectations, not with a baseline."""
    return []


def main() -> int:
    return checks_main(__doc__.splitlines()[0], real_scan_checks, real_scan_failures)


if __name__ == "__main__":
    sys.exit(main())
