"""How the MR contrast models do on real scans of subjects they never saw, and on held-out simulated subjects.

Real scans (no real multi-contrast single-subject MR can be installed here):
- `colin27`: SPM's single-subject T1 (Colin27, 2 mm, whole head; PyPI spm-runtime-R2025b, GPL-2);
- `colin27_stripped`: the same without skull and scalp (SPM's intracranial mask, tpm/mask_ICV.nii: Colin27 lies
  in MNI space);
- `brain1`, `brain2`: real post-contrast T1-weighted brain MR with a tumour, 0.78 x 0.78 x 6.5 mm (PyPI
  pyradiomics 3.0.1 source distribution, BSD-3; Training/data/fetch_real_scans.py);
- `avg152`: SPM's avg152T1, the ICBM152 average of real scans (2 mm). Its avg152T2 and avg152PD lie on the same
  grid: the one real reference of a T2 or PD there is (population averages, not single subjects);
- `avg152_t2`: avg152T2, the input of a T2 -> T1 model (the CycleGAN's inverse), with avg152T1 as its reference.
Reference-free checks on each, in tissue masks derived from a T1 (the input, or avg152T1 for avg152T2: k-means
of the T1, bias-corrected by N4, into CSF, GM and WM, inside the head mask eroded by 15 mm, so scalp and skull
stay out, and in the top 60 % of the head's height: below lie the skull base, sinuses and face, whose bone, air
and muscle the k-means took for CSF and grey matter; the half of each class nearest its centre):
- `order`: the output's mean CSF, GM and WM rank as the target contrast's literature signals do (T2: CSF > GM >
  WM; PD at TR 3300 / TE 35 ms: CSF > GM > WM; T1: WM > GM > CSF), and the margins CSF - GM and GM - WM, in units
  of the output's 0.5-99.5 percentile range inside the head. Where the T1 does not separate grey from white
  matter (`gm_wm_separable`: in the post-contrast brain1 and brain2 the brightest class is enhancing vessels and
  dura), CSF against grey and white matter together; where CSF lies between them, not checked (None);
- `sharpness`: the output's mean in-plane gradient magnitude over the input's (both in those units);
- `stripes`: slice-to-slice consistency in the orthogonal views: (through-plane / in-plane gradient) of the
  output over the same ratio of the input; 1 is as consistent as the input, above 1 means stripes;
- `grid`: the amplitude of a 2-voxel periodic texture (checkerboard, grid) in the output, in those units
  (`grid_texture`).
Where a real reference exists (avg152), also `reference`: SSIM, PSNR and MAE against it (as below); and there the
order the real reference itself shows in those masks replaces the literature order (in the blurred average the
deep "CSF" class is mostly partial volume: the real avg152T2 and avg152PD both rank GM > WM > CSF there).
The reference's own reference-free checks are reported beside the model's.
Held-out simulated subjects (Training/data/native/test, seeds never trained on) have references: SSIM, PSNR
and MAE in the reference's filled head mask, each image scaled by its own 0.5/99.5 percentiles, as the
project's real-scan measurements were made.
Baselines on the same cases: identity (the input), inversion of the input inside the head, for a T1 input a
classical k-means render in two forms (`kmeans_render`: 6 intensity classes of the T1 in the head, dark to bright
given the literature spin-echo signal of air, bone, CSF, GM, WM and scalp; `kmeans_render_4`: 4 classes, CSF, GM,
WM and scalp, which renders bone and sinus air as CSF but keeps real CSF bright where the six classes take it for
bone), and, where a reference exists, histogram matching to it (an oracle: reported, not a bar to clear).

    .venv/bin/python Training/evaluate_real_scans.py [--model ID_OR_PATH ...] [--out Training/results/real]

Writes OUT/<model>-<version>.json and OUT/<model>-<version>.png (every real scan at full resolution, axial /
coronal / sagittal through the middle, input | model | baselines | reference). Training/evaluate_shipped_models.py
puts these checks into the cards; a failed one becomes a warning on the card (a wrong order, stripes, or a model
below a baseline against a real reference).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.exposure import match_histograms
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training" / "data"))
from fetch_real_scans import fetch as fetch_real  # noqa: E402
from fetch_spm_templates import fetch as fetch_spm  # noqa: E402

from MedTranslateLib import list_models, load_model, translate_image  # noqa: E402
from MedTranslateLib.metrics import head_mask, largest_component  # noqa: E402
from MedTranslateLib.simulate import SEQUENCES, mr_spin_echo, nominal_mr  # noqa: E402
from MedTranslateLib.simulate.tissues import TISSUES  # noqa: E402
from MedTranslateLib.volume import read_volume  # noqa: E402

OUT = REPO / "Training" / "results" / "real"
NATIVE_TEST = REPO / "Training" / "data" / "native" / "test"
BRAIN_DEPTH_MM = 15.0
# the k-means classes of a T1 inside its head, dark to bright: one per tissue of the simulation, so that sinus air
# and bone, dark on a T1 as CSF is, get classes of their own and the skull is not rendered as CSF
RENDER_TISSUES = ("air", "bone", "csf", "gm", "wm", "soft")
# the brain's classes and the scalp only (the render before the six): real CSF stays bright, the skull turns bright
RENDER_TISSUES_4 = ("csf", "gm", "wm", "soft")
BRAIN_TOP_SHARE = 0.6  # tissue classes are taken in this top share of the head's height
BRIGHT_PERCENTILE = 98.0  # k-means centres are fitted below this percentile of the deep voxels
SEPARABLE_SHARE = 0.15  # a WM class smaller than this share of the classified voxels: GM and WM not separable
STRIPES_LIMIT = 1.3  # an output more than this much stripier than its input fails the check
GRID_WINDOW = 8  # voxels over which grid_texture averages a fixed-phase 2-voxel pattern
CONTRASTS = (("T1", "T2"), ("T1", "PD"), ("T2", "T1"))  # (source, target) weightings this script checks
ORACLES = ("histogram_matching", "reference")  # entries that see the reference: reported, not a bar to clear


class RealScan(NamedTuple):
    """A real scan: the image, the T1 its tissue masks come from, and real references by weighting."""

    image: sitk.Image
    t1: sitk.Image
    references: Dict[str, sitk.Image]


def avg152() -> Dict[str, sitk.Image]:
    """SPM's avg152T1, avg152T2 and avg152PD by weighting: real population averages on one 2 mm grid."""
    paths = fetch_spm(volumes=["canonical/avg152T1.nii", "canonical/avg152T2.nii", "canonical/avg152PD.nii"])
    return {weighting: read_volume(path) for weighting, path in zip(("T1", "T2", "PD"), paths)}


def real_scans() -> Dict[str, sitk.Image]:
    """The real T1 scans by name, read (see the module docstring)."""
    colin, icv = fetch_spm(volumes=["canonical/single_subj_T1.nii", "tpm/mask_ICV.nii"])
    colin27 = read_volume(colin)
    inside = sitk.Resample(sitk.ReadImage(str(icv), sitk.sitkFloat32), colin27, sitk.Transform(), sitk.sitkLinear,
                           0.0, sitk.sitkFloat32) > 0.5
    stripped = sitk.Cast(colin27, sitk.sitkFloat32) * sitk.Cast(inside, sitk.sitkFloat32)
    return {"colin27": colin27, "colin27_stripped": stripped, "brain1": read_volume(fetch_real("brain1")),
            "brain2": read_volume(fetch_real("brain2")), "avg152": avg152()["T1"]}


def contrast_scans(source: str) -> Dict[str, RealScan]:
    """The real scans of the `source` weighting ("T1" or "T2"), each with its mask T1 and real references."""
    averages = avg152()
    if source == "T2":
        return {"avg152_t2": RealScan(averages["T2"], averages["T1"], {"T1": averages["T1"]})}
    scans = {name: RealScan(image, image, {}) for name, image in real_scans().items()}
    scans["avg152"] = RealScan(averages["T1"], averages["T1"], {"T2": averages["T2"], "PD": averages["PD"]})
    return scans


# ------------------------------------------------------------------------------------------------ masks

def unit(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scaled by the 0.5/99.5 percentiles inside `mask` to about 0..1."""
    low, high = np.percentile(values[mask], (0.5, 99.5))
    return (values - low) / max(high - low, 1e-6)


def kmeans_1d(values: np.ndarray, classes: int, iterations: int = 30) -> np.ndarray:
    """Sorted class centres of a 1D k-means, initialised evenly between the 1st and 99th percentiles (so a small
    class, such as the CSF of a brain's depths, keeps its own centre)."""
    low, high = np.percentile(values, (1, 99))
    centres = np.linspace(low, high, classes)
    for _ in range(iterations):
        labels = np.abs(values[:, None] - centres[None, :]).argmin(axis=1)
        centres = np.array([values[labels == k].mean() if (labels == k).any() else centres[k]
                            for k in range(classes)])
    return np.sort(centres)


def head_outline(volume: np.ndarray) -> np.ndarray:
    """The whole head of a (Z, Y, X) MR volume: above 10 % of its 99th percentile (scalp included, unlike an
    Otsu mask of a T1, which may keep only the brain), holes filled slice by slice, the largest component."""
    mask = volume > 0.1 * np.percentile(volume, 99)
    for index in range(mask.shape[0]):
        mask[index] = ndimage.binary_fill_holes(mask[index])
    return largest_component(mask)


def superior_axis(image: sitk.Image) -> Tuple[int, int]:
    """(axis of the image's (Z, Y, X) array closest to the patient's superior direction, +1 if the index grows
    towards superior else -1); LPS: superior is +z."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(direction[2])))
    return 2 - axis_xyz, int(np.sign(direction[2, axis_xyz]))


def upper_part(head: np.ndarray, superior: Tuple[int, int], share: float) -> np.ndarray:
    """Boolean mask of the top `share` of the head's extent along `superior` ((axis, sign) of superior_axis)."""
    axis, sign = superior
    occupied = np.nonzero(head.any(axis=tuple(a for a in range(head.ndim) if a != axis)))[0]
    low, high = occupied.min(), occupied.max()
    height = (np.arange(head.shape[axis]) - low) / max(high - low, 1)  # 0 at the lowest index, 1 at the highest
    height = height if sign > 0 else 1.0 - height
    shape = [1] * head.ndim
    shape[axis] = -1
    return np.broadcast_to((height >= 1.0 - share).reshape(shape), head.shape)


def bias_corrected(volume: np.ndarray, mask: np.ndarray, spacing_zyx: Tuple[float, ...]) -> np.ndarray:
    """`volume` (Z, Y, X) divided by the smooth bias field N4 (SimpleITK) fits inside `mask`, on a grid of
    about 2 mm."""
    image = sitk.GetImageFromArray(np.maximum(volume, 0.0).astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    where = sitk.GetImageFromArray(mask.astype(np.uint8))
    where.CopyInformation(image)
    shrink = [max(1, int(round(2.0 / s))) for s in image.GetSpacing()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([30, 30, 30])
    corrector.Execute(sitk.Shrink(image, shrink), sitk.Shrink(where, shrink))
    return volume / np.exp(sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image)).astype(np.float64))


def tissue_masks(t1: np.ndarray, spacing_zyx: Tuple[float, ...],
                 superior: Tuple[int, int] = (0, 1)) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The head outline and CSF / GM / WM masks of a T1 (Z, Y, X): k-means of its bias-corrected voxels deeper
    than BRAIN_DEPTH_MM inside the head and in the top BRAIN_TOP_SHARE of the head along `superior` (below lie
    the skull base, sinuses and face, whose bone, air and muscle a k-means takes for CSF and grey matter), centres
    fitted below the BRIGHT_PERCENTILE (enhancing vessels); each class's half nearest its centre."""
    head = head_outline(t1)
    depth = ndimage.distance_transform_edt(head, sampling=spacing_zyx)
    inner = (depth > BRAIN_DEPTH_MM) & upper_part(head, superior, BRAIN_TOP_SHARE)
    t1 = bias_corrected(t1, head, spacing_zyx)
    values = t1[inner]
    centres = kmeans_1d(values[values <= np.percentile(values, BRIGHT_PERCENTILE)], 3)
    distance = np.abs(t1[..., None] - centres)
    label = distance.argmin(axis=-1)
    masks = {}
    for index, name in enumerate(("csf", "gm", "wm")):
        member = inner & (label == index)
        if member.sum() < 50:
            masks[name] = member
            continue
        near = distance[..., index] <= np.median(distance[..., index][member])
        masks[name] = member & near
    return head, masks


# ------------------------------------------------------------------------------------------------ baselines

def baselines(t1: np.ndarray, head: np.ndarray, target: str, source: str = "T1") -> Dict[str, np.ndarray]:
    """Identity and inversion inside the head of the input `t1` (Z, Y, X), of weighting `source`; for a T1 also
    the two k-means renders of the `target` contrast (T2 or PD)."""
    scaled = unit(t1, head)
    inverted = np.where(head, 1.0 - np.clip(scaled, 0.0, 1.0), 0.0)
    if source != "T1":
        return {"identity": t1, "inversion": inverted}
    return {"identity": t1, "inversion": inverted, "kmeans_render": kmeans_render(t1, head, target, RENDER_TISSUES),
            "kmeans_render_4": kmeans_render(t1, head, target, RENDER_TISSUES_4)}


def kmeans_render(t1: np.ndarray, head: np.ndarray, target: str, classes: Tuple[str, ...]) -> np.ndarray:
    """(Z, Y, X) spin-echo `target` signal of `t1`'s k-means classes in `head`, named dark to bright by
    `classes` (tissues of the simulation), air outside the head; smoothed by 0.5 voxel."""
    centres = kmeans_1d(t1[head], len(classes))
    labels = np.abs(t1[..., None] - centres).argmin(axis=-1)
    tissues = np.zeros((len(TISSUES),) + t1.shape, np.float32)
    tissues[TISSUES.index("air")] = ~head
    for index, name in enumerate(classes):
        tissues[TISSUES.index(name)] += (labels == index) & head
    return ndimage.gaussian_filter(mr_spin_echo(tissues, nominal_mr(), *SEQUENCES[target]), 0.5)


# ------------------------------------------------------------------------------------------------ checks

def gradients(volume: np.ndarray, mask: np.ndarray) -> Tuple[float, float]:
    """Mean |through-plane| and mean in-plane gradient magnitude inside `mask` (voxel units)."""
    dz = np.abs(np.diff(volume, axis=0))[mask[1:] & mask[:-1]].mean() if volume.shape[0] > 1 else 0.0
    gy, gx = np.gradient(volume, axis=(1, 2))
    return float(dz), float(np.hypot(gy, gx)[mask].mean())


def grid_texture(volume: np.ndarray, mask: np.ndarray) -> float:
    """How strong a 2-voxel periodic texture is (the grid that stride-2 transposed convolutions leave), in units
    of `volume`: along one axis, or two at once (a checkerboard), a 9-tap filter of alternating sign with
    half-weight ends (it passes the 2-voxel period with gain 1 and removes constants and linear ramps), then a
    GRID_WINDOW box average over the other axes, where a grid keeps its phase and anatomy and noise do not; the
    largest of these components' mean magnitude inside `mask`."""
    taps = np.ones(9)
    taps[[0, -1]] = 0.5
    kernel = taps * (-1.0) ** np.arange(9) / taps.sum()
    axes = [axis for axis in range(volume.ndim) if volume.shape[axis] >= 2 * len(kernel)]
    components = [(a,) for a in axes] + [(a, b) for a in axes for b in axes if a < b]
    strengths = []
    for filtered_axes in components:
        response = volume.astype(np.float64)
        for axis in filtered_axes:
            response = ndimage.convolve1d(response, kernel, axis=axis, mode="nearest")
        for axis in range(volume.ndim):
            if axis not in filtered_axes:
                response = ndimage.uniform_filter1d(response, GRID_WINDOW, axis=axis, mode="nearest")
        strengths.append(float(np.abs(response)[mask].mean()))
    return max(strengths, default=0.0)


def expected_order(target: str) -> Tuple[str, ...]:
    """CSF, GM and WM from brightest to darkest in the spin-echo `target` ("T2", "PD") with literature values."""
    properties = nominal_mr()
    tr, te = SEQUENCES[target]
    signal = {name: properties[name].pd * (1.0 - np.exp(-tr / properties[name].t1_ms))
              * np.exp(-te / properties[name].t2_ms) for name in ("csf", "gm", "wm")}
    return tuple(sorted(signal, key=signal.get, reverse=True))


def tissue_means(volume: np.ndarray, masks: Dict[str, np.ndarray]) -> Dict[str, float]:
    """The mean of `volume` in each tissue mask (NaN for an empty one)."""
    return {name: float(volume[mask].mean()) if mask.any() else float("nan") for name, mask in masks.items()}


def gm_wm_separable(masks: Dict[str, np.ndarray]) -> bool:
    """Whether the k-means found grey and white matter: its brightest class holds at least SEPARABLE_SHARE of the
    classified voxels. In the post-contrast T1s brain1 and brain2 it holds 7 %: enhancing vessels and dura, while
    grey and white matter share one class."""
    total = sum(int(mask.sum()) for mask in masks.values())
    return bool(masks["wm"].sum() >= SEPARABLE_SHARE * max(total, 1))


def tissue_order(means: Dict[str, float], expected: Tuple[str, ...], brain: Optional[float]) -> Optional[bool]:
    """Whether the tissue `means` rank as `expected` (brightest first). `brain`: the mean over GM and WM together
    where they are not separable (else None); then CSF is ranked against it, if CSF is brightest or darkest in
    `expected`, and otherwise the order is not checkable (None)."""
    if brain is None:
        return bool(all(means[a] > means[b] for a, b in zip(expected, expected[1:])))
    if expected[0] == "csf":
        return bool(means["csf"] > brain)
    if expected[-1] == "csf":
        return bool(means["csf"] < brain)
    return None


def stripes_index(output_gradients: Tuple[float, float], source_gradients: Tuple[float, float]) -> float:
    """(through-plane / in-plane gradient) of the output over the same ratio of the source, each a `gradients`
    pair: 1 is as consistent from slice to slice as the source, above 1 means stripes."""
    (out_z, out_xy), (in_z, in_xy) = output_gradients, source_gradients
    return (out_z / max(out_xy, 1e-9)) / max(in_z / max(in_xy, 1e-9), 1e-9)


def reference_free(output: np.ndarray, t1: np.ndarray, head: np.ndarray, masks: Dict[str, np.ndarray],
                   expected: Tuple[str, ...] = ("csf", "gm", "wm")) -> Dict[str, Any]:
    """The checks of the module docstring; `expected`: the tissues from brightest to darkest in the target."""
    out, inp = unit(output, head), unit(t1, head)
    means = tissue_means(out, masks)
    separable = gm_wm_separable(masks)
    brain = None if separable else float(out[masks["gm"] | masks["wm"]].mean())
    out_gradients, in_gradients = gradients(out, head), gradients(inp, head)
    return {
        "means": means,
        "csf_minus_gm": means["csf"] - means["gm"], "gm_minus_wm": means["gm"] - means["wm"],
        "expected_order": " > ".join(expected),
        "gm_wm_separable": separable,
        "order": tissue_order(means, expected, brain),
        "sharpness": out_gradients[1] / max(in_gradients[1], 1e-9),
        "stripes": stripes_index(out_gradients, in_gradients),
        "grid": grid_texture(out, head),
    }


def reference_based(prediction: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
    """SSIM averaged over axial slices, PSNR and MAE, inside the reference's filled head mask, each image
    scaled by its own 0.5/99.5 percentiles (inside that mask)."""
    mask = head_mask(reference)
    pred, ref = unit(prediction, mask), unit(reference, mask)
    ssims = []
    for index in range(ref.shape[0]):
        if mask[index].sum() < 100:
            continue
        _, ssim_map = structural_similarity(ref[index], pred[index], data_range=1.0, full=True)
        ssims.append(ssim_map[mask[index]].mean())
    return {"ssim": float(np.mean(ssims)), "psnr": float(peak_signal_noise_ratio(ref[mask], pred[mask],
                                                                                   data_range=1.0)),
            "mae": float(np.abs(pred[mask] - ref[mask]).mean())}


# ------------------------------------------------------------------------------------------------ runs

def contrast_pair(card: Any) -> Optional[Tuple[str, str]]:
    """(source, target) weightings ("T1", "T2") of an MR contrast model of CONTRASTS; None for any other model."""
    pair = (card.source_modality.split("-")[-1], card.target_modality.split("-")[-1])
    mr = card.source_modality.startswith("MR-") and card.target_modality.startswith("MR-")
    return pair if mr and pair in CONTRASTS else None


def contrasts(card: Any) -> Tuple[str, str]:
    """contrast_pair of a model this script checks; SystemExit for any other."""
    pair = contrast_pair(card)
    if pair is None:
        raise SystemExit(f"{card.id}: this script checks MR-T1 -> T2/PD and MR-T2 -> T1 models, not "
                         f"{card.source_modality} -> {card.target_modality}")
    return pair


def real_scan_checks(model: Any, picture: Path) -> Dict[str, Dict[str, Any]]:
    """{scan: {model or baseline: checks}} over every real scan of the model's source weighting: reference-free
    checks, and `reference` metrics where the scan has a real reference of the target; the grid to `picture`."""
    card = model.card
    source, target = contrasts(card)
    results, pictures = {}, []
    for name, scan in contrast_scans(source).items():
        volume = sitk.GetArrayFromImage(scan.image).astype(np.float64)
        t1 = sitk.GetArrayFromImage(scan.t1).astype(np.float64)
        output = sitk.GetArrayFromImage(translate_image(scan.image, model, device="cpu")).astype(np.float64)
        head, masks = tissue_masks(t1, tuple(scan.image.GetSpacing())[::-1], superior_axis(scan.t1))
        candidates = {"model": output, **baselines(volume, head, target, source)}
        reference = scan.references.get(target)
        spacing = [round(float(v), 3) for v in scan.image.GetSpacing()]
        results[name] = {"scan": {"spacing_mm": spacing, "thick_slices": max(spacing) > 2 * min(spacing),
                                  "reference": reference is not None}}
        expected = expected_order(target)
        if reference is not None:
            reference = sitk.GetArrayFromImage(reference).astype(np.float64)
            candidates["histogram_matching"] = match_histograms(volume, reference)
            measured = tissue_means(unit(reference, head), masks)
            expected = tuple(sorted(measured, key=measured.get, reverse=True))
            results[name]["reference"] = reference_free(reference, volume, head, masks, expected)
        for key, candidate in candidates.items():
            results[name][key] = reference_free(candidate, volume, head, masks, expected)
            if reference is not None:
                results[name][key]["reference"] = reference_based(candidate, reference)
        shown = {"input": volume, **candidates, **({"reference": reference} if reference is not None else {})}
        pictures.append((name, scan.image.GetSpacing(), shown))
        print(f"{card.id} {name}: " + ", ".join(
            f"{k} order {v['order']} ({v['csf_minus_gm']:+.2f}/{v['gm_minus_wm']:+.2f}) stripes {v['stripes']:.2f} "
            f"grid {v['grid']:.4f}"
            + (f" SSIM {v['reference']['ssim']:.3f}" if isinstance(v.get("reference"), dict) else "")
            for k, v in results[name].items() if k != "scan"), flush=True)
    grid(pictures, f"{card.id} {card.version}", picture)
    return results


def real_scan_failures(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The real-scan checks a model fails: a wrong tissue order on any scan; stripes (slice-to-slice
    inconsistency) above STRIPES_LIMIT on one whose slices are not thick (on a scan of 6.5 mm slices the index
    mostly measures in-plane smoothing: there it is only reported); and real_scan_baseline_losses."""
    failures = []
    for scan, checks in results.items():
        if checks["model"]["order"] is False:
            failures.append(f"tissue order on {scan}")
        if checks["model"]["stripes"] > STRIPES_LIMIT and not checks["scan"]["thick_slices"]:
            failures.append(f"stripes on {scan}")
    return failures + real_scan_baseline_losses(results)


def real_scan_baseline_losses(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The baselines the model does not beat against a real reference: an SSIM or MAE no better than theirs
    (oracles aside)."""
    losses = []
    for scan, checks in results.items():
        if "reference" not in checks["model"]:
            continue
        model = checks["model"]["reference"]
        for name, baseline in checks.items():
            if name in ("scan", "model") or name in ORACLES:
                continue
            if model["ssim"] <= baseline["reference"]["ssim"] or model["mae"] >= baseline["reference"]["mae"]:
                losses.append(f"{name} against the real reference of {scan}")
    return losses


def simulated_checks(model: Any) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{case: {model or baseline: SSIM, PSNR, MAE}} on the held-out simulated subjects (Training/data/native)."""
    source, target = contrasts(model.card)
    results = {}
    for path in sorted((NATIVE_TEST / source.lower()).glob("*.nii.gz")):
        image = read_volume(path)
        volume = sitk.GetArrayFromImage(image).astype(np.float64)
        reference = sitk.GetArrayFromImage(read_volume(NATIVE_TEST / target.lower() / path.name)).astype(np.float64)
        output = sitk.GetArrayFromImage(translate_image(image, model, device="cpu")).astype(np.float64)
        candidates = {"model": output, **baselines(volume, head_mask(volume), target, source),
                      "histogram_matching": match_histograms(volume, reference)}
        results[path.name[:-len(".nii.gz")]] = {key: reference_based(v, reference) for key, v in candidates.items()}
    return results


def mean_over_cases(cases: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    names = next(iter(cases.values()))
    return {key: {m: float(np.mean([case[key][m] for case in cases.values()])) for m in names[key]} for key in names}


def evaluate(model_ref: str, out: Path) -> Dict[str, Any]:
    model = load_model(model_ref)
    card = model.card
    result: Dict[str, Any] = {"id": card.id, "version": card.version, "planes": card.inference_planes,
                              "real": real_scan_checks(model, out / f"{card.id}-{card.version}.png")}
    result["real_failures"] = real_scan_failures(result["real"])
    result["simulated"] = simulated_checks(model)
    if result["simulated"]:
        result["simulated_mean"] = mean_over_cases(result["simulated"])
        print(f"{card.id} simulated held-out: " + ", ".join(f"{k} SSIM {v['ssim']:.3f}"
                                                             for k, v in result["simulated_mean"].items()))
    return result


def _views(volume: np.ndarray, spacing_xyz: Tuple[float, ...], head: Optional[np.ndarray]) -> List[np.ndarray]:
    """Axial, coronal and sagittal middle slices at 1 mm pixels, superior / anterior up, scaled 0..1 by the
    percentiles in `head` (None: `volume` is already 0..1)."""
    shown = np.clip(volume if head is None else unit(volume, head), 0.0, 1.0)
    sx, sy, sz = spacing_xyz
    z, y, x = (s // 2 for s in shown.shape)
    views = [(shown[z], (sy, sx)), (shown[:, y], (sz, sx)), (shown[:, :, x], (sz, sy))]
    out = []
    for plane, (rows_mm, cols_mm) in views:
        image = Image.fromarray((plane * 255).astype(np.uint8))
        size = (max(1, round(plane.shape[1] * cols_mm)), max(1, round(plane.shape[0] * rows_mm)))
        out.append(np.flipud(np.asarray(image.resize(size, Image.BILINEAR))))
    return out


def grid(pictures: List[Tuple[str, Tuple[float, ...], Dict[str, np.ndarray]]], model_id: str, path: Path,
         caption: str = "on real scans it never saw", scaled: bool = False) -> None:
    """One block per scan: a row per plane, a column per image (input, model, baselines), each scaled by its
    percentiles in the input's head, or shown as given (`scaled`: every volume already 0..1)."""
    blocks = []
    for name, spacing, volumes in pictures:
        head = None if scaled else head_mask(volumes["input"])
        columns = [_views(v, spacing, head) for v in volumes.values()]
        rows = []
        for plane in range(3):
            height = max(c[plane].shape[0] for c in columns)
            rows.append(np.concatenate([np.pad(c[plane], ((0, height - c[plane].shape[0]), (0, 2)))
                                        for c in columns], axis=1))
        width = max(r.shape[1] for r in rows)
        blocks.append((f"{name}: " + " | ".join(volumes), np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1])))
                                                                        for r in rows])))
    width = max(b.shape[1] for _, b in blocks)
    height = sum(b.shape[0] + 14 for _, b in blocks) + 16
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), f"{model_id} {caption} (full resolution, 1 mm pixels)", fill=255)
    top = 16
    for label, block in blocks:
        draw.text((4, top), label, fill=200)
        canvas.paste(Image.fromarray(block), (0, top + 14))
        top += block.shape[0] + 14
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def checks_main(description: str, checks: Callable[[Any, Path], Dict[str, Dict[str, Any]]],
                failures: Callable[[Dict[str, Dict[str, Any]]], List[str]]) -> int:
    """The command line of a real-scan checks script (`--model`, `--out`): runs `checks` on the model, writes
    OUT/<model>-<version>.json (with `failures`) beside the picture the checks draw."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="model id or package path")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    name = f"{model.card.id}-{model.card.version}"
    results = checks(model, args.out / f"{name}.png")
    report = {"id": model.card.id, "version": model.card.version, "real": results, "real_failures": failures(results)}
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model id or package path (default: the bundled "
                        "MR contrast models)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bundled = [card.id for card in list_models() if contrast_pair(card)]  # the bundled MR contrast models
    for model in args.model or bundled:
        result = evaluate(model, args.out)
        (args.out / f"{result['id']}-{result['version']}.json").write_text(json.dumps(result, indent=1) + "\n",
                                                                           encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
