"""How a PET -> CT model does on real PET data: SPM's average PET against SPM's real transmission image.

No single-subject PET can be installed here (../shared/DATA.md). SPM's OldNorm templates hold an average of real
PET scans (`PET.nii`) and, on the same 2 mm grid, an average 511 keV transmission image (`Transm.nii`: the
attenuation PET needs, which a pseudo-CT is made for). Both are smoothed averages (about 8 mm), scaled 0..1.
The 1.0 PET models trained on warps of this PET template (`seen_in_training`: read from the card's data).
- `correlation`: the output's HU mapped to 511 keV attenuation (bilinear: water-air below 0 HU, water-bone above),
  smoothed like the template (8 mm FWHM), against the transmission image: Pearson r inside the head grown by
  4 mm (the head: the transmission image above HEAD_LEVEL, holes filled);
- HU checks as for synthetic CT (real_scans_synthetic_ct.py): the median HU of the brain (the head 15 mm deep
  where the PET is above half its head maximum) in BRAIN_HU, air outside the head grown by 5 mm below AIR_HU,
  the 95th percentile of the 15 mm shell under the head's surface above BONE_HU;
- `grid_hu`: the amplitude of a 2-voxel periodic texture in the output (evaluate_real_scans.grid_texture) where
  the correlation is taken, in HU; reported.
Baselines on the same data: the PET itself (identity; its correlation only) and contour attenuation correction,
the standard without a CT: water inside the PET's outline (above 10 % of its maximum, smoothed) grown by 8 mm
for skull and scalp, air outside.

    .venv/bin/python Training/real_scans_pet_to_ct.py --model ID_OR_PATH [--out Training/results/real]
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
from evaluate_real_scans import checks_main, grid, grid_texture  # noqa: E402
from fetch_spm_templates import fetch as fetch_spm  # noqa: E402

from MedTranslateLib import translate_image  # noqa: E402
from MedTranslateLib.metrics import largest_component  # noqa: E402
from MedTranslateLib.simulate import blur_resolution  # noqa: E402

PET, TRANSMISSION = "toolbox/OldNorm/PET.nii", "toolbox/OldNorm/Transm.nii"
TEMPLATE_FWHM_MM = 8.0
HEAD_LEVEL = 0.3          # of the transmission image's 0..1 range: air is 0, the head 0.6-0.9
BRAIN_DEPTH_MM, BRAIN_UPTAKE = 15.0, 0.5
BRAIN_HU, AIR_HU, BONE_HU = (10.0, 70.0), -700.0, 400.0
AIR_MARGIN_MM, EDGE_MM, CONTOUR_MM = 5.0, 4.0, 8.0
MU_WATER, MU_BONE_1000 = 0.096, 0.172  # cm^-1 at 511 keV: water, and bone at 1000 HU (bilinear scaling)


def attenuation(hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation at 511 keV (cm^-1), bilinear: air to water below 0 HU, water to bone above."""
    soft = MU_WATER * (1.0 + np.clip(hu, -1000.0, 0.0) / 1000.0)
    return soft + (MU_BONE_1000 - MU_WATER) * np.clip(hu, 0.0, None) / 1000.0


def smooth(volume: np.ndarray, spacing_zyx: Tuple[float, ...]) -> np.ndarray:
    """Gaussian smoothing to the templates' TEMPLATE_FWHM_MM."""
    return blur_resolution(volume, [TEMPLATE_FWHM_MM / s for s in spacing_zyx])


def masks(pet: np.ndarray, transmission: np.ndarray, spacing_zyx: Tuple[float, ...]) -> Dict[str, np.ndarray]:
    """The head (from the transmission image), its grown edge, the air around it, the bone shell and the brain."""
    head = transmission > HEAD_LEVEL
    for index in range(head.shape[0]):
        head[index] = ndimage.binary_fill_holes(head[index])
    head = largest_component(head)
    inside = ndimage.distance_transform_edt(head, sampling=spacing_zyx)
    outside = ndimage.distance_transform_edt(~head, sampling=spacing_zyx)
    deep = inside > BRAIN_DEPTH_MM
    brain = deep & (pet > BRAIN_UPTAKE * pet[head].max())
    return {"head": head, "compared": outside <= EDGE_MM, "air": outside > AIR_MARGIN_MM, "shell": head & ~deep,
            "brain": brain}


def contour_baseline(pet: np.ndarray, spacing_zyx: Tuple[float, ...]) -> np.ndarray:
    """Contour attenuation correction as HU: water (0 HU) inside the PET's outline grown by CONTOUR_MM, air
    (-1000 HU) outside."""
    outline = pet > 0.1 * pet.max()
    for index in range(outline.shape[0]):
        outline[index] = ndimage.binary_fill_holes(outline[index])
    outline = largest_component(outline)
    grown = ndimage.distance_transform_edt(~outline, sampling=spacing_zyx) <= CONTOUR_MM
    return np.where(grown, 0.0, -1000.0)


def correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.corrcoef(a[where], b[where])[0, 1])


def checks(candidate: np.ndarray, transmission: np.ndarray, found: Dict[str, np.ndarray],
           spacing_zyx: Tuple[float, ...], hu: bool = True) -> Dict[str, Any]:
    """The module docstring's checks of one (Z, Y, X) volume: HU (`hu`) or the PET itself (correlation only)."""
    mapped = attenuation(candidate) if hu else candidate
    result: Dict[str, Any] = {"correlation": correlation(smooth(mapped, spacing_zyx), transmission,
                                                         found["compared"])}
    if hu:
        result.update({"brain_hu": float(np.median(candidate[found["brain"]])),
                       "air_hu": float(np.median(candidate[found["air"]])),
                       "bone_hu": float(np.percentile(candidate[found["shell"]], 95)),
                       "grid_hu": grid_texture(candidate, found["compared"])})
        result["passed"] = {"brain": BRAIN_HU[0] <= result["brain_hu"] <= BRAIN_HU[1],
                            "air": result["air_hu"] < AIR_HU, "bone": result["bone_hu"] > BONE_HU}
        result["all_passed"] = all(result["passed"].values())
    return result


def real_scan_checks(model: Any, picture: Path) -> Dict[str, Dict[str, Any]]:
    """{scan: {model or baseline: checks}} on SPM's average PET; the picture to `picture`."""
    card = model.card
    if card.source_modality != "PET" or card.target_modality != "CT":
        raise SystemExit(f"{card.id}: this script checks PET -> CT models, not "
                         f"{card.source_modality} -> {card.target_modality}")
    pet_path, transmission_path = fetch_spm(volumes=[PET, TRANSMISSION])
    image = sitk.ReadImage(str(pet_path), sitk.sitkFloat32)
    pet = sitk.GetArrayFromImage(image).astype(np.float64)
    transmission = sitk.GetArrayFromImage(sitk.ReadImage(str(transmission_path))).astype(np.float64)
    spacing_zyx = tuple(image.GetSpacing())[::-1]
    found = masks(pet, transmission, spacing_zyx)
    output = sitk.GetArrayFromImage(translate_image(image, model, device="cpu")).astype(np.float64)
    contour = contour_baseline(pet, spacing_zyx)
    results = {"spm_average_pet": {
        "scan": {"spacing_mm": [round(float(v), 3) for v in image.GetSpacing()],
                 "reference": "SPM OldNorm Transm.nii (average 511 keV transmission, smoothed, scaled 0..1)",
                 "seen_in_training": "OldNorm PET" in str(card.training.get("data", ""))},
        "model": checks(output, transmission, found, spacing_zyx),
        "identity": checks(pet, transmission, found, spacing_zyx, hu=False),
        "contour": checks(contour, transmission, found, spacing_zyx)}}
    found_here = results["spm_average_pet"]
    checked = found_here["model"]
    print(f"{card.id} spm_average_pet: r {checked['correlation']:.3f} (PET "
          f"{found_here['identity']['correlation']:.3f}, contour "
          f"{found_here['contour']['correlation']:.3f}); brain {checked['brain_hu']:.0f} HU, "
          f"air {checked['air_hu']:.0f}, bone p95 {checked['bone_hu']:.0f}, grid {checked['grid_hu']:.1f} HU",
          flush=True)

    def window(hu: np.ndarray) -> np.ndarray:  # -1000..1000 HU as 0..1: air black, water grey, bone white
        return (hu + 1000.0) / 2000.0

    grid([("spm_average_pet", image.GetSpacing(),
           {"input": pet / pet.max(), "model": window(output), "contour": window(contour),
            "transmission": transmission})], f"{card.id} {card.version}", picture,
         caption="on SPM's average of real PET scans, against its average transmission image", scaled=True)
    return results


def real_scan_failures(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The checks the model fails: an HU check, or a correlation with the transmission image not above both
    baselines'."""
    failed = []
    for scan, found in results.items():
        failed += [f"{check} HU on {scan}" for check, passed in found["model"]["passed"].items() if not passed]
    return failed + real_scan_baseline_losses(results)


def real_scan_baseline_losses(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The scans where the output's attenuation correlates with the transmission image no better than a
    baseline's (the PET itself, the contour correction)."""
    return [f"attenuation correlation on {scan}" for scan, found in results.items()
            if not found["model"]["correlation"] > max(found["identity"]["correlation"],
                                                       found["contour"]["correlation"])]


def main() -> int:
    return checks_main(__doc__.splitlines()[0], real_scan_checks, real_scan_failures)


if __name__ == "__main__":
    sys.exit(main())
