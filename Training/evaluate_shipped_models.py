"""Held-out evaluation of the shipped models against baselines; metrics into the cards; PNG grids; table.

For every package in Training/shipped_models.SHIPPED, every held-out test case of its data (the 2 mm set,
Training/data/shipped/test/: the axial slab z = 38..52 of every subject, and Colin27 for motion correction; or
the 1 mm set, Training/data/native/test/: whole heads of subjects drawn with seeds never trained on) is
translated through the public API (`translate_image`, CPU, fp16 weights as shipped) and compared inside the
reference's head mask (Otsu) with:

- identity: the input itself, linearly mapped so its 0.5/99.5 percentiles meet the reference's;
- histogram matching: the input mapped through the reference's own histogram (skimage), an oracle global
  intensity mapping;
- for T1 -> T2/PD models, also the T1's intensities inverted inside the head and a classical k-means render
  (Training/evaluate_real_scans.py).

Every model with a real-scan check is also run on real scans of other subjects (REAL_SCAN_CHECKS): T1 -> T2/PD
tissue order and stripes (evaluate_real_scans.py), synthetic-CT HU (real_scans_synthetic_ct.py), CT -> T1 contrast
on a real head CT (real_scans_ct_to_t1.py), motion correction of real scans moved in k-space against the clean
scan (real_scans_motion.py). The results go into their cards, and a failed check becomes a card warning.

Units: HU for CT targets; otherwise each image scaled by its own 0.5/99.5 percentiles to 0/1 (MR and PET
have no absolute units here). A model ships only when its mean MAE, PSNR and SSIM beat every baseline, and it
beats every baseline of its real-scan check (real_scan_baseline_losses: a real reference's or the moved real
scans' baselines); otherwise its package is removed. Results:
Training/results/shipped/metrics.json, one PNG grid per model (input / output / reference), the table in
Training/README.md, and the `metrics` of every card.

    .venv/bin/python Training/evaluate_shipped_models.py [ID ...]     # every model, or only these
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw
from skimage.exposure import match_histograms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
sys.path.insert(0, str(REPO / "Training" / "data"))
from prepare_shipped_data import MOTION, MOTION_CONTRAST, SLAB  # noqa: E402
from shipped_models import CONFIGS, DATA, MODELS, NATIVE_DATA, RESULTS, SHIPPED, ShippedModel  # noqa: E402
import evaluate_real_scans  # noqa: E402
import real_scans_ct_to_t1  # noqa: E402
import real_scans_motion  # noqa: E402
import real_scans_pet_to_ct  # noqa: E402
import real_scans_synthetic_ct  # noqa: E402
from evaluate_real_scans import baselines as mr_baselines, contrast_pair, ORACLES  # noqa: E402

from MedTranslateLib.card import ModelCard  # noqa: E402
from MedTranslateLib.metrics import compare, head_mask  # noqa: E402
from MedTranslateLib.package import CARD_FILE, load_package  # noqa: E402
from MedTranslateLib.simulate import SEQUENCES  # noqa: E402
from MedTranslateLib.training.publish import publishable_training  # noqa: E402
from MedTranslateLib.translate import translate_image  # noqa: E402
from MedTranslateLib.volume import read_volume  # noqa: E402

README = REPO / "Training" / "README.md"
TABLE_START, TABLE_END = "<!-- shipped-models:start -->", "<!-- shipped-models:end -->"
METRICS = ("mae", "psnr", "ssim")
GROUPS = {"avg152": "real templates, unwarped (real input)", "realtest": "real templates, warped, randomised input",
          "simtest": "TPM simulation, random tissue properties", "colin27": "Colin27, a real single subject",
          "test": "1 mm subjects: MNI 2009a brain in the TPM head, deformed, randomised input"}
CT_DISPLAY = (-200.0, 1600.0)


def group_of(case: str) -> str:
    return next(key for key in GROUPS if case.startswith(key))


def test_cases(model: ShippedModel) -> List[Tuple[str, Path, Path]]:
    """(case name, input path, reference path) for every held-out pair of the model."""
    cases = []
    for folder in (model.data / "test",) + model.extra_tests:
        for source in sorted((folder / model.source).glob("*.nii.gz")):
            target = folder / model.target / source.name
            if target.is_file():
                cases.append((source.name[: -len(".nii.gz")], source, target))
    if not cases:
        raise SystemExit(f"{model.id}: no test data under {model.data}; run Training/build_shipped_models.py prepare")
    return cases


def _percentiles(values: np.ndarray) -> Tuple[float, float]:
    low, high = np.percentile(values, (0.5, 99.5))
    return float(low), float(max(high, low + 1e-6))


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = _percentiles(values)
    return (values - low) / (high - low)


REAL_SCAN_CHECKS = {
    "mr contrast": (evaluate_real_scans, "reference-free, in CSF/GM/WM masks from a k-means of a bias-corrected "
                    "T1, 15 mm inside its head and in the top 60 % of its height (where grey and white matter are "
                    "not separable: CSF against the brain): the output's tissue order as the target's literature "
                    "signals rank, sharpness and stripes (through-plane consistency) against the input, grid texture "
                    "(2-voxel period); on "
                    "SPM's avg152 (ICBM152 averages of real T1, T2 and PD scans on one grid) also SSIM, PSNR and "
                    "MAE against the real target contrast; Training/evaluate_real_scans.py"),
    "synthetic ct": (real_scans_synthetic_ct, "reference-free HU: median in the input's GM/WM masks 10-70 HU, air "
                     "outside the head below -700 HU, the skull's 95th percentile above 400 HU where the input "
                     "has one; Training/real_scans_synthetic_ct.py"),
    "ct to t1": (real_scans_ct_to_t1, "reference-free, on a real head CT: WM > GM > CSF and bone darker than GM in "
                 "masks from the CT; stripes and grid texture (2-voxel period) reported; "
                 "Training/real_scans_ct_to_t1.py"),
    "pet to ct": (real_scans_pet_to_ct, "on SPM's average of real PET scans: the output's attenuation at 511 keV "
                  "against SPM's average transmission image (Pearson r, smoothed to 8 mm), beside the PET itself "
                  "and contour attenuation correction; brain, air and skull HU; grid texture (2-voxel period) in HU "
                  "reported; Training/real_scans_pet_to_ct.py"),
    "motion": (real_scans_motion, "real scans moved in k-space (one motion history for all axial slices), scored "
               "against the clean scan: SSIM, PSNR, MAE; Training/real_scans_motion.py"),
}


def real_scan_kind(card: ModelCard) -> Optional[str]:
    """The key of REAL_SCAN_CHECKS that applies to the model, or None."""
    if card.task == "motion-correction":
        return "motion"
    if contrast_pair(card):
        return "mr contrast"
    if (card.source_modality, card.target_modality) == ("MR-T1", "CT"):
        return "synthetic ct"
    if (card.source_modality, card.target_modality) == ("CT", "MR-T1"):
        return "ct to t1"
    if (card.source_modality, card.target_modality) == ("PET", "CT"):
        return "pet to ct"
    return None


def comparable(source: np.ndarray, prediction: np.ndarray, reference: np.ndarray,
               ct_target: bool, contrast: Optional[Tuple[str, str]] = None) -> Dict[str, np.ndarray]:
    """Reference, model output and the baselines, as (Z, Y, X) float64 in the units metrics use: identity and
    histogram matching always; for an MR contrast model (`contrast`: source and target weightings) also the
    input's inversion, and from a T1 its k-means render."""
    if ct_target:
        (s_low, s_high), (r_low, r_high) = _percentiles(source), _percentiles(reference)
        identity = (source - s_low) / (s_high - s_low) * (r_high - r_low) + r_low
        return {"reference": reference, "model": prediction, "identity": identity,
                "histogram_matching": match_histograms(source, reference)}
    reference_unit = _unit(reference)
    images = {"reference": reference_unit, "model": _unit(prediction), "identity": _unit(source),
              "histogram_matching": match_histograms(_unit(source), reference_unit)}
    if contrast:
        extra = mr_baselines(source, head_mask(source), contrast[1], contrast[0])
        images.update({name: _unit(image) for name, image in extra.items() if name != "identity"})
    return images


def evaluate_case(model: Any, source_path: Path, target_path: Path) -> Tuple[Dict[str, Dict[str, float]],
                                                                             Dict[str, np.ndarray]]:
    source_image = read_volume(source_path)
    prediction = sitk.GetArrayFromImage(translate_image(source_image, model, device="cpu")).astype(np.float64)
    source = sitk.GetArrayFromImage(source_image).astype(np.float64)
    reference = sitk.GetArrayFromImage(read_volume(target_path)).astype(np.float64)
    images = comparable(source, prediction, reference, model.card.target_modality == "CT", contrast_pair(model.card))
    mask = head_mask(images["reference"])
    scores = {name: compare(image, images["reference"], mask) for name, image in images.items() if name != "reference"}
    return scores, {"input": source, "output": prediction, "reference": reference}


def mean_scores(per_case: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    names = [name for name in per_case[0] if isinstance(per_case[0][name], dict)]
    return {name: {m: float(np.mean([case[name][m] for case in per_case])) for m in METRICS} for name in names}


def beats_baselines(mean: Dict[str, Dict[str, float]]) -> List[str]:
    """The metrics on which the model fails to beat a baseline (empty: it ships)."""
    failures = []
    for baseline in (name for name in mean if name != "model"):
        if mean["model"]["mae"] >= mean[baseline]["mae"]:
            failures.append(f"MAE vs {baseline}")
        for metric in ("psnr", "ssim"):
            if mean["model"][metric] <= mean[baseline][metric]:
                failures.append(f"{metric.upper()} vs {baseline}")
    return failures


def _display(values: np.ndarray, modality: str) -> np.ndarray:
    if modality == "CT":
        low, high = CT_DISPLAY
    else:
        low, high = _percentiles(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def grid_png(rows: List[Tuple[str, Dict[str, Optional[np.ndarray]]]], card: ModelCard, path: Path) -> None:
    """One row per case: the middle axial slice of input / output / reference, shown superior-up."""
    tiles, scale = [], 2
    for label, volumes in rows:
        middle = volumes["input"].shape[0] // 2
        cells = []
        for role, modality in (("input", card.source_modality), ("output", card.target_modality),
                               ("reference", card.target_modality)):
            volume = volumes.get(role)
            cell = (np.zeros(volumes["input"].shape[1:]) if volume is None
                    else _display(volume, modality)[middle])
            cells.append(np.flipud(cell))  # rows run posterior->anterior in the array; show anterior up
        tiles.append((label, np.concatenate(cells, axis=1)))
    width = max(t.shape[1] for _, t in tiles) * scale
    height = sum(t.shape[0] * scale + 14 for _, t in tiles) + 16
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), f"{card.id}: input ({card.source_modality}) | output | reference ({card.target_modality})",
              fill=255)
    top = 16
    for label, tile in tiles:
        draw.text((4, top), label, fill=200)
        image = Image.fromarray((tile * 255).astype(np.uint8)).resize((tile.shape[1] * scale, tile.shape[0] * scale))
        canvas.paste(image, (0, top + 14))
        top += tile.shape[0] * scale + 14
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def update_card(package: Path, metrics: Dict[str, Any], training: Dict[str, Any], caveat: str = "") -> None:
    """Rewrite model.json with the held-out metrics and the catalogue's caveat (the weights and their hashes
    are unchanged). The caveat is kept in `training.caveat` too, so that a later evaluation replaces it even
    after its text has changed. The training entry is cleaned of the building machine's paths (publish.py)."""
    data = json.loads((package / CARD_FILE).read_text(encoding="utf-8"))
    previous = data["training"].pop("caveat", None)
    data["metrics"] = metrics
    data["training"] = publishable_training({**data["training"], **training, **({"caveat": caveat} if caveat else {})},
                                            str(CONFIGS))
    data["warnings"] = [w for w in data.get("warnings", []) if "no metrics" not in w
                        and "held-out validation of the inverse" not in w and w not in (caveat, previous)]
    if caveat:
        data["warnings"].append(caveat)
    if not data["warnings"]:
        del data["warnings"]
    text = ModelCard.from_dict(data).to_json()
    temporary = package / (CARD_FILE + ".partial")
    temporary.write_text(text + "\n", encoding="utf-8")
    temporary.replace(package / CARD_FILE)


def _hardware_note(hardware: str) -> str:
    """What differed between the project's GPU runs (data prepared on the lent machine) and its CPU runs."""
    if hardware.startswith("CPU"):
        return ("Trained on the 2-core CPU of the development machine: compact network, 128 px crops at 2 mm; "
                "TPM read at full precision.")
    return "The GPU run read TPM resampled to 2 mm and stored as 8-bit probabilities."


def validation_volumes(training: Dict[str, Any]) -> List[str]:
    """The run's validation volumes: from the exported card's `data`, or, once an evaluation has replaced that
    with prose, from the `validation_volumes` it kept."""
    data = training.get("data")
    return list(data.get("validation", [])) if isinstance(data, dict) else list(training.get("validation_volumes", []))


def selection_note(training: Dict[str, Any]) -> str:
    """How the exported checkpoint was chosen, for a run that kept its best validated step; else ''."""
    selected = training.get("selected")
    if not selected:
        return ""
    held = ", ".join(validation_volumes(training))
    return (f"; checkpoint: step {selected['step']} of {training.get('planned_steps')}, chosen by "
            f"{selected['rule']} on validation volumes never trained on and not among the test cases"
            + (f" ({held})" if held else ""))


def native_simulation(model: ShippedModel, dataset: Dict[str, Any]) -> str:
    """What the model's pairs in the 1 mm set are (Training/data/prepare_native_data.py), with their counts."""
    train = [s for s in dataset["plan"] if s["split"] == "train"]
    anatomy = (f"{dataset['subjects']} training subjects, each a random 3D deformation (rotations up to 12 deg, scale "
               "10 %, shear, smooth nonlinear displacement) of that sharp 1 mm head. ")
    if model.source == "ct_in":
        thick = sum(1 for s in train if "ct_thick_axis" in s.get("head", {}))
        return anatomy + ("CT inputs of the whole head (never skull-stripped; partial field of view 20 %): HU per "
                          "tissue with the subject's own draw (GM/WM/CSF +-3 HU, skull 900-1600 HU scaled by a smooth "
                          f"field of +-15 %, scalp -60..40 HU), thick slices in {thick} of them (1.5-5 mm along a "
                          "random axis), in-plane blur up to 0.8 mm, noise of 3-20 HU. Targets sharp and noise-free "
                          "from the same deformed maps: spin-echo T1 (TR 500 / TE 15 ms) with BrainWeb's tissue "
                          "values (TPM-based).")
    pet_grid = ("on a 2 mm grid (the 1 mm maps averaged over 2x2x2 blocks): FDG-like PET, uptake per tissue "
                "drawn per subject (the TPM-based scalp and bone from none to 0.3 and 0.2 of grey matter), a Gaussian "
                "point-spread function of 5-10 mm FWHM, a background of residual scatter (the activity under a "
                "40 mm blur, peak up to 8 % of grey matter) and randoms (up to 3 %)")
    if model.source == "pet_in":
        return anatomy + (f"PET inputs of the whole head {pet_grid}, extra blur up to 1.5 voxels, Poisson counts of "
                          "100-1000 at the 99th percentile. Targets noise-free CT in HU of the whole head from the "
                          "same deformed maps (HU per tissue with the subject's own draw, skull 900-1600 HU scaled "
                          "by a smooth field of +-15 %).")
    if model.source == "pet_low":
        return anatomy + (f"Full-count PET of the whole head {pet_grid}, Poisson counts of 300-1000 at the 99th "
                          "percentile; inputs the same scan thinned to 4-20 % of its counts (binomial thinning: "
                          "exactly the Poisson image of a shorter scan). The target is the full-count scan.")
    if model.source == "t1_motion":
        kinds = {kind: sum(1 for s in train if s.get("head", {}).get("motion_input") == kind)
                 for kind in ("spin-echo", "random", "real")}
        return anatomy + ("Clean T1 of the whole head with a random contrast per subject "
                          f"({kinds['spin-echo']} spin-echo with jittered relaxation times, {kinds['random']} random "
                          f"per-tissue intensities, {kinds['real']} the real 2009a brain in the simulated head), "
                          "gamma 0.75-1.35 and a bias field, shared by target and input; the input moved in k-space: "
                          "axial slices, 2-6 rigid moves of up to 6 deg and 6 mm, each slice its own "
                          "moves or one history for all, Rician noise up to 3 %. The target is the clean T1.")
    inputs = {kind: sum(1 for s in train if s["input"] == kind) for kind in ("spin-echo", "random", "real")}
    t1_inputs = (f"T1 inputs randomised: {inputs['spin-echo']} spin-echo T1 (BrainWeb relaxation times jittered 15 %, "
                 f"TR 350-800 / TE 8-25 ms), {inputs['random']} random T1-like intensities per tissue, "
                 f"{inputs['real']} the real 2009a T1 itself; skull-stripped (always for the real T1, else 30 %), "
                 "partial field of view (20 %), gamma, bias field, Rician noise up to 4 %, thick slices (50 %: "
                 "1.5-6 mm blur along a random axis). ")
    if model.target == "ct":
        return anatomy + t1_inputs + ("Targets noise-free CT in HU from the same deformed maps: HU per tissue with "
                                      "the subject's own draw (GM/WM/CSF +-3 HU, skull 900-1600 HU scaled by a "
                                      "smooth field of +-15 %, scalp -60..40 HU; TPM-based outside the brain); air "
                                      "where the input is skull-stripped or cut.")
    unpaired = ""
    if "cyclegan" in model.run:
        unpaired = ("Unpaired (CycleGAN): T1 and T2 slices drawn independently (other subject, plane and place)"
                    + ("; this package runs the inverse generator, T2 -> T1. " if model.reverse else ". "))
    rendered = (model.source if model.reverse else model.target).upper()  # the simulated, not the real, side
    tr, te = SEQUENCES[rendered]
    return anatomy + unpaired + t1_inputs + ("Targets sharp and noise-free from the same deformed maps: spin-echo "
                                             f"{rendered} (TR {tr:.0f} / TE {te:.0f} ms) with "
                                             "BrainWeb's tissue values (TPM-based).")


def native_training_notes(model: ShippedModel, training: Dict[str, Any]) -> Dict[str, Any]:
    """The card's data provenance, simulation and split of a model trained on the 1 mm set."""
    dataset = json.loads((NATIVE_DATA / "dataset.json").read_text(encoding="utf-8"))
    real = {"t1": "No real T2, PD or CT of any subject was used.", "t2": "No real T2 of any subject was used.",
            "ct_in": "No real CT or MR pair was used.",
            "t1_motion": "No real motion-corrupted scan was used.",
            "pet_in": "No real PET or CT was used.", "pet_low": "No real PET was used."}[model.source]
    return {
        "data": ("MNI ICBM152 2009a T1 and its GM/WM probability maps (1 mm; PyPI nilearn==0.14.1, BSD-3, template "
                 "under MNI's permissive notice) for the brain; SPM's TPM tissue maps (PyPI "
                 "spm-runtime-R2025b==25.1.2.post4, GPL-2) for CSF outside the brain, bone, scalp and air; "
                 f"prepared by Training/data/prepare_native_data.py. {real}"),
        "simulation": native_simulation(model, dataset),
        "split": (f"training: {dataset['subjects']} subjects (the last two by name validate and choose the "
                  f"checkpoint); held out: {dataset['test']} subjects drawn with seeds never trained on"
                  + selection_note(training)),
        "rebuild": "Training/build_shipped_models.py all",
    }


def training_notes(model: ShippedModel, training: Dict[str, Any]) -> Dict[str, Any]:
    if model.data == NATIVE_DATA:
        return native_training_notes(model, training)
    dataset = json.loads((DATA / "dataset.json").read_text(encoding="utf-8"))
    hardware = training.get("hardware", "")
    kinds = {"real": 0, "sim": 0, "sharp": 0}
    for subject in dataset["plan"]:
        if subject["split"] == "train":
            kinds[subject["kind"]] += 1
    motion = model.source == "t1_motion"
    sharp = motion and kinds["sharp"]
    return {
        "data": ("SPM templates from PyPI spm-runtime-R2025b==25.1.2.post4 (GPL-2): avg152T1/T2/PD (ICBM152 "
                 "averages of real scans), OldNorm PET (average real PET), TPM tissue probability maps; "
                 + ("MNI ICBM152 2009a T1 (1 mm, skull-stripped; from PyPI nilearn==0.14.1, BSD-3, template "
                    "under MNI's permissive notice); " if sharp else "")
                 + "prepared by Training/data/prepare_shipped_data.py"),
        "simulation": ("each training subject is a random in-plane affine + elastic warp of the 2 mm MNI anatomy; "
                       f"{kinds['real']} subjects use the real templates (pseudo-CT from TPM with random HU per "
                       "tissue), "
                       + (f"{kinds['sharp']} use the sharp MNI 2009a brain set in avg152T1's head, " if sharp else "")
                       + f"{kinds['sim']} are simulated from TPM (spin-echo MR with BrainWeb relaxation "
                       "times jittered 10 %, FDG-like PET with random uptake and 5-8 mm PSF). Inputs randomised: "
                       "random spin-echo TR/TE for simulated T1, gamma, bias field, Rician noise, thick-slice "
                       "blur; CT noise/blur; PET count noise; rigid motion in k-space (2-6 moves, up to "
                       f"{MOTION['max_rotation_deg']:.0f} deg and {2 * MOTION['max_shift_voxels']:.0f} mm; "
                       "each training slice its own moves, each test volume one history for all slices"
                       + ("; each training pair's clean T1, target and input alike, with a random contrast: gamma "
                          "{0[0]}-{0[1]}, scalp brightened by 1 + {1} u^2 (u uniform 0-1), bias field"
                          .format(MOTION_CONTRAST["gamma"], MOTION_CONTRAST["scalp_gain"]) if motion else "")
                       + "); "
                       "low-count PET "
                       "by Poisson thinning to 4-20 % of 300-1000 counts. " + _hardware_note(hardware)),
        "split": (f"training: {dataset['subjects']} warped subjects with the axial slab z = 35..55 removed; held "
                  f"out: that slab (z = {dataset['held_out_slab_z'][0]}..{dataset['held_out_slab_z'][1] - 1}) of "
                  "the unwarped templates and of fresh warped/simulated subjects"
                  + (f", and {model.extra_tests_note} (never used in training)" if model.extra_tests else "")
                  + selection_note(training)),
        "rebuild": "Training/build_shipped_models.py all",
        **({"validation_volumes": validation_volumes(training)} if training.get("selected") else {}),
    }


def evaluate_model(model: ShippedModel) -> Dict[str, Any]:
    package = MODELS / model.id
    loaded = load_package(package)
    per_case, rows = [], []
    for case, source, target in test_cases(model):
        scores, volumes = evaluate_case(loaded, source, target)
        per_case.append({"case": case, "group": GROUPS[group_of(case)], **scores})
        rows.append((f"{case}: {GROUPS[group_of(case)]}", volumes))
    unseen = DATA / "test_colin27" / "t1" / "colin27.nii.gz"
    if model.source in ("t1", "t1_in") and unseen.is_file():  # a real single subject, no reference
        image = read_volume(unseen)
        output = sitk.GetArrayFromImage(translate_image(image, loaded, device="cpu")).astype(np.float64)
        rows.append(("colin27 (real single subject, no reference)",
                     {"input": sitk.GetArrayFromImage(image).astype(np.float64)[SLAB[0]:SLAB[1]],
                      "output": output[SLAB[0]:SLAB[1]],
                      "reference": None}))
    mean = mean_scores(per_case)
    by_group = {GROUPS[g]: mean_scores([c for c in per_case if group_of(c["case"]) == g])
                for g in GROUPS if any(group_of(c["case"]) == g for c in per_case)}
    failures = beats_baselines(mean)
    units = "HU" if loaded.card.target_modality == "CT" else "each image scaled by its own 0.5/99.5 percentiles to 0/1"
    native = model.data == NATIVE_DATA
    metrics = {
        "held_out": ("whole heads of held-out 1 mm subjects (seeds never trained on), head mask of the reference"
                     if native else
                     "axial slab z = 38..52 of held-out subjects (never in training), head mask of the reference")
                    + (f"; plus {model.extra_tests_note}" if model.extra_tests else ""),
        "units": units,
        "cases": len(per_case),
        "model": mean["model"],
        **{f"baseline_{name}": scores for name, scores in mean.items() if name != "model"},
        "by_group": by_group,
        "beats_baselines": not failures,  # on the held-out cases; the real scans' baselines are added below
    }
    kind = real_scan_kind(loaded.card)
    if kind:
        checker, description = REAL_SCAN_CHECKS[kind]
        real = checker.real_scan_checks(loaded, RESULTS / f"{model.id}-real-scans.png")
        metrics["real_scans"] = {"kind": kind, "checks": description,
                                 "scans": {scan: {"scan": checks["scan"], "model": checks["model"],
                                                  **{k if k == "reference" else f"baseline_{k}": v
                                                     for k, v in checks.items() if k not in ("scan", "model")}}
                                           for scan, checks in real.items()},
                                 "failures": checker.real_scan_failures(real)}
        failures += [f"{loss} (real scan)" for loss in checker.real_scan_baseline_losses(real)]
    caveat = " ".join(filter(None, [model.caveat, real_scan_caveat(metrics)]))
    grid_png(rows, loaded.card, RESULTS / f"{model.id}.png")
    result = {"id": model.id, "card": loaded.card.to_dict(), "metrics": metrics, "per_case": per_case,
              "failures": failures}
    if failures:
        shutil.rmtree(package)
        print(f"NOT SHIPPED {model.id}: does not beat {', '.join(failures)}")
    else:
        update_card(package, metrics, training_notes(model, loaded.card.training), caveat)
        print(f"shipped {model.id}: SSIM {mean['model']['ssim']:.3f} (identity {mean['identity']['ssim']:.3f}, "
              f"histogram matching {mean['histogram_matching']['ssim']:.3f})")
    return result


def real_scan_caveat(metrics: Dict[str, Any]) -> str:
    """The card's warning for the real-scan checks a model failed ('' when none): the reference-free checks (tissue
    order, stripes, HU). A loss to a baseline on a real scan removes the package instead (evaluate_model)."""
    failures = metrics.get("real_scans", {}).get("failures")
    if not failures:
        return ""
    return (f"On real scans of other subjects some checks fail ({'; '.join(failures)}): see "
            "metrics.real_scans and Training/results/shipped/<id>-real-scans.png.")


def real_scan_summary(metrics: Dict[str, Any]) -> str:
    """One table cell: what the real-scan checks (REAL_SCAN_CHECKS) found."""
    real = metrics.get("real_scans", {})
    scans = real.get("scans")
    if not scans:
        return "—"
    kind = real.get("kind", "mr contrast")
    if kind == "mr contrast":
        orders = [checks["model"]["order"] for checks in scans.values()]
        checked = [order for order in orders if order is not None]
        worst = max(checks["model"]["stripes"] for checks in scans.values() if not checks["scan"]["thick_slices"])
        summary = f"tissue order {sum(checked)}/{len(checked)}"
        if len(checked) < len(orders):
            summary += f" ({len(orders) - len(checked)} scans without separable GM and WM: not checkable)"
        summary += f", stripes ≤ {worst:.2f} (thin-slice scans)"
        for scan, checks in scans.items():
            if "reference" in checks["model"]:
                best = max((v["reference"]["ssim"], k[len("baseline_"):]) for k, v in checks.items()
                           if k.startswith("baseline_") and k[len("baseline_"):] not in ORACLES)
                summary += (f"; real {scan} reference SSIM {checks['model']['reference']['ssim']:.3f} "
                            f"(best baseline {best[1]} {best[0]:.3f})")
        return summary
    if kind == "synthetic ct":
        passed = sum(checks["model"]["all_passed"] for checks in scans.values())
        return f"HU checks {passed}/{len(scans)} scans"
    if kind == "ct to t1":
        checks = scans["head_ct"]["model"]
        return f"real head CT: WM > GM > CSF {'yes' if checks['order'] else 'no'}, bone dark " \
               f"{'yes' if checks['bone_dark'] else 'no'}"
    if kind == "pet to ct":
        checks = scans["spm_average_pet"]
        return (f"SPM's average PET: attenuation r {checks['model']['correlation']:.2f} (PET "
                f"{checks['baseline_identity']['correlation']:.2f}, contour "
                f"{checks['baseline_contour']['correlation']:.2f}), HU checks "
                f"{'pass' if checks['model']['all_passed'] else 'fail'}"
                + ("; trained on warps of this PET" if checks["scan"].get("seen_in_training") else ""))
    beaten = sum(not any(f.startswith(f"{scan} ") for f in real["failures"]) for scan in scans)
    gains = ", ".join(f"{checks['baseline_identity']['ssim']:.2f} → {checks['model']['ssim']:.2f}"
                      for checks in scans.values())
    return f"beats every baseline on {beaten}/{len(scans)} moved real scans (SSIM input → model: {gains})"


def readme_table(results: List[Dict[str, Any]]) -> str:
    lines = ["| model | task | method | held-out cases | units | MAE model / identity / hist. | "
             "PSNR dB model / identity / hist. | SSIM model / identity / hist. | SSIM other baselines | "
             "real scans | shipped |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        card, m = result["card"], result["metrics"]
        cells = []
        for metric, digits in (("mae", 3 if m["units"] != "HU" else 1), ("psnr", 1), ("ssim", 3)):
            values = [m[k][metric] for k in ("model", "baseline_identity", "baseline_histogram_matching")]
            cells.append(" / ".join(f"{v:.{digits}f}" for v in values))
        units = "HU" if m["units"] == "HU" else "0-1"
        others = ", ".join(f"{key[len('baseline_'):].replace('_', ' ')} {m[key]['ssim']:.3f}" for key in m
                           if key.startswith("baseline_") and key not in ("baseline_identity",
                                                                          "baseline_histogram_matching")) or "—"
        lines.append(f"| `{card['id']}` | {card['source_modality']} → {card['target_modality']} ({card['task']}) | "
                     f"{card['training']['method']} | {m['cases']} | {units} | {' | '.join(cells)} | {others} | "
                     f"{real_scan_summary(m)} | "
                     f"{'yes' if not result['failures'] else 'no: ' + ', '.join(result['failures'])} |")
    lines.append("")
    for result in results:
        lines.append(f"![{result['id']}](results/shipped/{result['id']}.png)")
        if result["metrics"].get("real_scans"):
            lines.append(f"![{result['id']} on real scans](results/shipped/{result['id']}-real-scans.png)")
    return "\n".join(lines)


def write_readme_table(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    README.write_text(text[:start] + "\n" + table + "\n" + text[end:], encoding="utf-8")


def evaluate_all(only: Optional[List[str]] = None) -> int:
    """Evaluate every bundled catalogue model, or those in `only` (the others keep their recorded results)."""
    recorded = {}
    if only and (RESULTS / "metrics.json").is_file():
        recorded = {r["id"]: r for r in json.loads((RESULTS / "metrics.json").read_text(encoding="utf-8"))}
    results = [evaluate_model(model) if (not only or model.id in only) and (MODELS / model.id).is_dir()
               else recorded[model.id]
               for model in SHIPPED if (MODELS / model.id).is_dir() or model.id in recorded]  # a removed
    # package keeps its recorded result, so the table still says why it does not ship
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_readme_table(readme_table(results))
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(evaluate_all(sys.argv[1:]))
