"""The reference-free checks of Training/evaluate_real_scans.py, on a layered head phantom whose tissues are known:
tissue masks from a T1, the CSF > GM > WM order of a T2, sharpness and stripes, and the baselines."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Training"))
from evaluate_real_scans import (baselines, contrasts, real_scan_baseline_losses, real_scan_failures,
                                 reference_based,  # noqa: E402
                                 reference_free, tissue_masks)

from MedTranslateLib.simulate import SEQUENCES, nominal_mr  # noqa: E402

# tissue, its outer radius (mm), outside in; each rendered as spin-echo T1 and T2 with the literature values
LAYERS = (("soft", 41), ("bone", 37), ("csf", 33), ("gm", 30), ("wm", 22))


def signal(tissue: str, weighting: str) -> float:
    properties = nominal_mr()[tissue]
    tr, te = SEQUENCES[weighting]
    return properties.pd * (1.0 - np.exp(-tr / properties.t1_ms)) * np.exp(-te / properties.t2_ms)


@pytest.fixture(scope="module")
def phantom():
    """(T1, T2, tissue labels) of a 96³ 1 mm layered head with central CSF ventricles, a little noise."""
    grid = np.indices((96, 96, 96)).astype(np.float32) - 47.5
    radius = np.sqrt((grid ** 2).sum(axis=0))
    t1, t2 = np.zeros(radius.shape, np.float32), np.zeros(radius.shape, np.float32)
    labels = np.full(radius.shape, "air", dtype=object)
    for name, outer in LAYERS:
        inside = radius < outer
        t1[inside], t2[inside], labels[inside] = signal(name, "T1"), signal(name, "T2"), name
    ventricle = radius < 6
    t1[ventricle], t2[ventricle], labels[ventricle] = signal("csf", "T1"), signal("csf", "T2"), "csf"
    rng = np.random.default_rng(0)
    return (t1 + rng.normal(0, 0.01, t1.shape).astype(np.float32), t2, labels)


def test_tissue_masks_find_csf_gm_wm_deep_in_the_head(phantom):
    t1, _, labels = phantom
    head, masks = tissue_masks(t1, (1.0, 1.0, 1.0))
    assert head.sum() > 0.9 * (labels != "air").sum()
    for name, mask in masks.items():
        assert mask.sum() > 100 and (labels[mask] == name).mean() > 0.95, name
    assert not (masks["csf"] & (labels == "bone")).any()  # the skull is too shallow to be mistaken for CSF


def test_tissue_masks_leave_out_the_lower_head_and_a_bias_field(phantom):
    """Only the top BRAIN_TOP_SHARE of the head, along the patient's superior axis whichever way the array runs;
    a strong bias field does not move the classes (N4)."""
    import SimpleITK as sitk
    from evaluate_real_scans import BRAIN_TOP_SHARE, superior_axis

    t1, _, labels = phantom
    image = sitk.GetImageFromArray(t1)
    assert superior_axis(image) == (0, 1)
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # slices stored from the top down
    assert superior_axis(image) == (0, -1)
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # index x runs along y, y along z: superior is array axis 1
    assert superior_axis(image) == (1, 1)
    z = np.indices(t1.shape)[0]
    bottom, top = 47.5 - 41, 47.5 + 41
    for superior in ((0, 1), (0, -1)):
        _, masks = tissue_masks(t1, (1.0, 1.0, 1.0), superior)
        height = (z - bottom) / (top - bottom) if superior[1] > 0 else (top - z) / (top - bottom)
        for name, mask in masks.items():
            assert mask.sum() > 100 and height[mask].min() >= 1 - BRAIN_TOP_SHARE - 0.02, name
    biased = t1 * np.linspace(0.6, 1.4, t1.shape[2])[None, None, :].astype(np.float32)
    _, masks = tissue_masks(biased, (1.0, 1.0, 1.0))
    for name, mask in masks.items():
        assert mask.sum() > 100 and (labels[mask] == name).mean() > 0.9, name


def test_without_grey_white_contrast_only_csf_is_ranked(phantom):
    """A T1 whose grey and white matter are alike, with a few bright vessels (a post-contrast scan): the T2 and PD
    checks rank CSF against the brain, an order with CSF between GM and WM is not checked, and none fails."""
    from evaluate_real_scans import expected_order

    t1, t2, labels = phantom
    flat = t1.copy()
    flat[labels == "wm"] = flat[labels == "gm"].mean()
    vessels = np.zeros(t1.shape, bool)
    vessels[38:62:3, 32:66:2, 32:64] = True  # about 8 % of the deep voxels, as vessels and dura in brain1
    vessels &= labels == "wm"
    flat[vessels] = 1.5 * flat.max()
    head, masks = tissue_masks(flat, (1.0, 1.0, 1.0))
    t2_checks = reference_free(t2, flat, head, masks)
    assert not t2_checks["gm_wm_separable"] and t2_checks["order"] is True
    assert reference_free(flat, flat, head, masks)["order"] is False  # CSF darkest: wrong for a T2
    assert reference_free(t2, flat, head, masks, expected_order("PD"))["order"] is True
    csf_between = ("gm", "csf", "wm")
    assert reference_free(t2, flat, head, masks, csf_between)["order"] is None
    assert real_scan_failures({"a": {"scan": {"thick_slices": False},
                                     "model": reference_free(t2, flat, head, masks, csf_between)}}) == []
    _, separable = tissue_masks(t1, (1.0, 1.0, 1.0))
    assert reference_free(t2, t1, head, separable)["gm_wm_separable"]


def test_order_sharpness_and_stripes_tell_a_t2_from_its_failures(phantom):
    t1, t2, _ = phantom
    head, masks = tissue_masks(t1, (1.0, 1.0, 1.0))
    right = reference_free(t2, t1, head, masks)
    assert right["order"] and right["csf_minus_gm"] > 0.2 and right["gm_minus_wm"] > 0.05
    assert not reference_free(t1, t1, head, masks)["order"]  # the T1 itself has the reverse order
    assert reference_free(t1, t1, head, masks)["stripes"] == pytest.approx(1.0)
    blurred = reference_free(ndimage.gaussian_filter(t2, 2.0), t1, head, masks)
    assert blurred["sharpness"] < 0.8 * right["sharpness"]
    striped = t2 * (1.0 + 0.3 * (np.arange(96) % 2))[:, None, None]  # every other axial slice brighter
    assert reference_free(striped, t1, head, masks)["stripes"] > 1.5 * right["stripes"]
    striped_checks = reference_free(striped, t1, head, masks)
    thin, thick = {"thick_slices": False}, {"thick_slices": True}
    failures = real_scan_failures({"a": {"scan": thin, "model": right},
                                   "b": {"scan": thin, "model": reference_free(t1, t1, head, masks)},
                                   "c": {"scan": thin, "model": striped_checks},
                                   "d": {"scan": thick, "model": striped_checks}})
    assert failures == ["tissue order on b", "stripes on c"]


def test_grid_measures_a_two_voxel_texture_and_not_anatomy_or_noise(phantom):
    t1, t2, _ = phantom
    head, masks = tissue_masks(t1, (1.0, 1.0, 1.0))
    clean = reference_free(t2, t1, head, masks)["grid"]
    noisy = reference_free(t2 + np.random.default_rng(1).normal(0, 0.02, t2.shape), t1, head, masks)["grid"]
    assert clean < 0.005 and noisy < 0.005
    z, y, x = np.indices(t2.shape)
    span = np.percentile(t2[head], 99.5) - np.percentile(t2[head], 0.5)
    for pattern in ((-1.0) ** x, (-1.0) ** (y + x), (-1.0) ** z):  # a grid along one axis, a checkerboard
        textured = reference_free(t2 + 0.03 * span * pattern, t1, head, masks)["grid"]
        assert textured == pytest.approx(0.03, abs=0.006)


def test_the_expected_order_follows_the_target_sequence():
    from evaluate_real_scans import expected_order

    assert expected_order("T2") == ("csf", "gm", "wm")
    assert expected_order("PD") == ("csf", "gm", "wm")  # the early echo (TE 35 ms) of ICBM's dual-echo protocol
    assert expected_order("T1") == ("wm", "gm", "csf")


def test_baselines_and_reference_metrics(phantom):
    t1, t2, _ = phantom
    head, _ = tissue_masks(t1, (1.0, 1.0, 1.0))
    made = baselines(t1, head, "T2")
    assert set(made) == {"identity", "inversion", "kmeans_render", "kmeans_render_4"}
    np.testing.assert_array_equal(made["identity"], t1)
    assert (made["inversion"][~head] == 0).all()
    perfect, identity = reference_based(t2, t2), reference_based(t1, t2)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["mae"] == pytest.approx(0.0, abs=1e-9)
    assert reference_based(made["kmeans_render"], t2)["ssim"] > identity["ssim"]
    assert reference_based(made["kmeans_render_4"], t2)["ssim"] > identity["ssim"]


def test_the_kmeans_render_keeps_the_skull_dark_where_csf_is_bright(phantom):
    """Six classes, one per tissue: bone and sinus air, dark on a T1 as CSF is, are not rendered as CSF."""
    t1, _, labels = phantom
    t1, labels = t1.copy(), labels.copy()
    sinus = np.sqrt(((np.indices(t1.shape) - np.array([47.5, 47.5, 62.5])[:, None, None, None]) ** 2).sum(0)) < 5
    t1[sinus], labels[sinus] = 0.0, "air"
    head, _ = tissue_masks(t1, (1.0, 1.0, 1.0))
    made = baselines(t1, head, "T2")
    render, csf = made["kmeans_render"], labels == "csf"
    core = ndimage.binary_erosion(labels == "bone", iterations=1)  # away from the smoothed edges
    assert render[core].mean() < 0.2 * render[csf].mean()
    assert render[ndimage.binary_erosion(sinus, iterations=1)].mean() < 0.2 * render[csf].mean()
    assert made["kmeans_render_4"][core].mean() > 0.8 * made["kmeans_render_4"][csf].mean()  # four: bone as CSF


def test_a_real_reference_fails_a_model_no_better_than_a_baseline_but_an_oracle_is_only_reported(phantom):
    t1, t2, _ = phantom
    head, masks = tissue_masks(t1, (1.0, 1.0, 1.0))
    made = baselines(t2, head, "T1", source="T2")
    assert set(made) == {"identity", "inversion"}  # no k-means render of a T2 input
    right = {**reference_free(t1, t2, head, masks, ("wm", "gm", "csf")), "reference": reference_based(t1, t1)}
    assert right["order"]
    scan = {"thick_slices": False, "reference": True}
    inversion = {**reference_free(made["inversion"], t2, head, masks), "reference": reference_based(made["inversion"],
                                                                                                  t1)}
    oracle = {**right, "reference": {"ssim": 1.0, "psnr": 99.0, "mae": 0.0}}
    itself = reference_free(t1, t2, head, masks, ("wm", "gm", "csf"))  # the real reference's own checks
    assert real_scan_failures({"a": {"scan": scan, "model": right, "inversion": inversion,
                                     "histogram_matching": oracle, "reference": itself}}) == []
    worse = {**right, "reference": inversion["reference"]}
    assert real_scan_failures({"b": {"scan": scan, "model": worse, "inversion": inversion}}) == [
        "inversion against the real reference of b"]
    wrong_order = {**worse, "order": False}  # a reference-free failure is a warning; a lost baseline stops shipping
    assert real_scan_failures({"c": {"scan": scan, "model": wrong_order, "inversion": inversion}}) == [
        "tissue order on c", "inversion against the real reference of c"]
    assert real_scan_baseline_losses({"c": {"scan": scan, "model": wrong_order, "inversion": inversion}}) == [
        "inversion against the real reference of c"]


def test_the_checked_contrasts_are_mr_t1_to_t2_or_pd_and_t2_to_t1():
    from types import SimpleNamespace

    def card(source, target):
        return SimpleNamespace(id="m", source_modality=source, target_modality=target)

    assert contrasts(card("MR-T1", "MR-T2")) == ("T1", "T2")
    assert contrasts(card("MR-T2", "MR-T1")) == ("T2", "T1")
    with pytest.raises(SystemExit, match="MR-T1 -> CT"):
        contrasts(card("MR-T1", "CT"))


# --- T1 -> CT, CT -> T1 and motion checks (Training/real_scans_*.py) on the same phantom ---

HU = {"air": -1000.0, "soft": -20.0, "bone": 1200.0, "csf": 8.0, "gm": 40.0, "wm": 28.0}


def phantom_ct(labels: np.ndarray) -> np.ndarray:
    ct = np.vectorize(HU.get, otypes=[np.float32])(labels)
    return ct + np.random.default_rng(1).normal(0, 2, ct.shape).astype(np.float32)


def test_synthetic_ct_checks_pass_a_ct_and_name_what_a_wrong_one_gets_wrong(phantom):
    from real_scans_synthetic_ct import hu_checks, real_scan_failures as ct_failures

    t1, _, labels = phantom
    head, masks = tissue_masks(t1, (1.0, 1.0, 1.0))
    ct = phantom_ct(labels)
    right = hu_checks(ct, head, masks, (1.0, 1.0, 1.0), skull=True)
    assert right["all_passed"] and 20 < right["brain_hu"] < 45 and right["bone_hu"] > 1000
    no_skull = hu_checks(np.where(labels == "bone", 30.0, ct), head, masks, (1.0, 1.0, 1.0), skull=True)
    hot_brain = hu_checks(ct + 100.0 * np.isin(labels, ("gm", "wm")), head, masks, (1.0, 1.0, 1.0), skull=True)
    assert no_skull["passed"] == {"brain": True, "air": True, "bone": False}
    assert hot_brain["passed"] == {"brain": False, "air": True, "bone": True}
    stripped = hu_checks(np.where(labels == "bone", 30.0, ct), head, masks, (1.0, 1.0, 1.0), skull=False)
    assert stripped["all_passed"] and stripped["passed"]["bone"] is None  # no skull expected: not checked
    assert ct_failures({"a": {"model": right}, "b": {"model": no_skull}, "c": {"model": hot_brain}}) == [
        "bone HU on b", "brain HU on c"]
    z, y, x = np.indices(ct.shape)
    textured = hu_checks(ct + 6.0 * (-1.0) ** x, head, masks, (1.0, 1.0, 1.0), skull=True)
    assert right["grid_hu"] < 1.0 and textured["grid_hu"] == pytest.approx(6.0, abs=1.5)
    assert textured["passed"] == right["passed"]  # reported, not checked


def test_ct_to_t1_checks_find_the_tissues_of_a_ct_and_the_order_of_a_t1(phantom):
    from real_scans_ct_to_t1 import contrast_checks, ct_masks, render_baseline

    t1, _, labels = phantom
    ct = phantom_ct(labels)
    head, masks = ct_masks(ct, (2.0, 2.0, 2.0))  # a head of 82 mm radius: grey matter lies 10 mm off the bone
    for name in ("csf", "wm", "gm", "bone"):
        assert masks[name].sum() > 100 and (labels[masks[name]] == name).mean() > 0.9, name
    assert contrast_checks(t1, ct, head, masks)["order"] and contrast_checks(t1, ct, head, masks)["bone_dark"]
    assert not contrast_checks(ct, ct, head, masks)["order"]  # the CT itself: GM > WM > CSF
    render = contrast_checks(render_baseline(ct, head, masks), ct, head, masks)
    assert render["order"] and render["bone_dark"]


def test_motion_moves_a_scan_on_its_grid_in_two_parts_and_failures_name_the_baseline_beaten():
    import SimpleITK as sitk
    from real_scans_motion import (MAX_ROTATION_DEG, MAX_SHIFT_MM, MOVES, acquisitions, moved_scan,
                                   real_scan_baseline_losses as motion_losses, real_scan_failures as motion_failures)

    from MedTranslateLib.simulate import kspace_motion, random_motion

    rng = np.random.default_rng(0)
    clean = ndimage.gaussian_filter(rng.random((8, 64, 64)).astype(np.float32), 2) * 1000
    image = sitk.GetImageFromArray(clean)
    image.SetSpacing((0.8, 0.8, 5.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    moved = moved_scan(image, seed=3)
    assert moved.GetSize() == image.GetSize() and moved.GetSpacing() == image.GetSpacing()
    assert moved.GetOrigin() == image.GetOrigin()
    difference = np.abs(sitk.GetArrayFromImage(moved) - clean).mean()
    assert difference > 0.01 * clean.mean()  # ghosting and noise, not a copy
    np.testing.assert_array_equal(sitk.GetArrayFromImage(moved_scan(image, seed=3)), sitk.GetArrayFromImage(moved))
    # its two parts: the same motion without noise, and the still scan with the very same noise draw
    parts = acquisitions(image, seed=3)
    np.testing.assert_array_equal(parts["moved"], sitk.GetArrayFromImage(moved))
    rng = np.random.default_rng(3)
    events = random_motion(rng, MOVES, MAX_ROTATION_DEG, MAX_SHIFT_MM / 0.8)
    np.testing.assert_array_equal(parts["motion_only"], kspace_motion(clean, events, phase_axis=0))
    sigma = 0.01 * float(np.percentile(parts["motion_only"], 99.5))
    real, imaginary = rng.normal(0.0, sigma, clean.shape), rng.normal(0.0, sigma, clean.shape)
    np.testing.assert_allclose(parts["moved"], np.hypot(parts["motion_only"] + real, imaginary), rtol=1e-5)
    np.testing.assert_allclose(parts["noise_only"], np.hypot(clean + real, imaginary), rtol=1e-5)
    better, worse = {"ssim": 0.9, "mae": 0.01}, {"ssim": 0.8, "mae": 0.02}
    assert motion_failures({"a": {"scan": {}, "model": better, "identity": worse},
                            "b": {"scan": {}, "model": worse, "identity": better}}) == ["b against identity"]
    assert motion_losses({"b": {"scan": {}, "model": better, "identity": worse, "gaussian": better}}) == [
        "b against gaussian"]  # every failure of this check is a lost baseline: the model is not shipped


def test_motion_diagnostics_see_detail_removed_and_whether_a_change_follows_the_true_correction():
    from real_scans_motion import correction_r, detail_region, fine_detail

    rng = np.random.default_rng(0)
    z, y, x = np.indices((12, 48, 48))
    head = ((y - 24) ** 2 + (x - 24) ** 2 < 20 ** 2) & (z > 0) & (z < 11)
    clean = np.where(head, 100.0 + 20.0 * rng.standard_normal(head.shape), 0.0)  # fine structure in the head
    moved = clean + 10.0 * np.sin(x / 3.0) * head  # a smooth error: not fine detail
    smoothed = ndimage.gaussian_filter(moved, (0.0, 1.0, 1.0))
    region = detail_region(head)
    assert fine_detail(smoothed, head, region) < 0.5 * fine_detail(moved, head, region)
    assert fine_detail(moved, head, region) == pytest.approx(fine_detail(clean, head, region), rel=0.1)
    # scale-free
    assert fine_detail(3.0 * clean + 7.0, head, region) == pytest.approx(fine_detail(clean, head, region))
    assert correction_r(clean, moved, clean, head) == pytest.approx(1.0)
    assert correction_r(2.0 * moved - clean, moved, clean, head) == pytest.approx(-1.0)  # the error doubled
    assert correction_r(moved, moved, clean, head) == 0.0  # identity changes nothing
    assert abs(correction_r(smoothed, moved, clean, head)) < 0.9


def test_pet_to_ct_checks_score_a_ct_against_its_transmission_image_above_the_baselines(phantom):
    from real_scans_pet_to_ct import (attenuation, checks, contour_baseline, masks as pet_masks,
                                      real_scan_baseline_losses as pet_losses,
                                      real_scan_failures as pet_failures, smooth)

    _, _, labels = phantom
    ct = phantom_ct(labels).astype(np.float64)
    spacing = (1.0, 1.0, 1.0)
    transmission = smooth(attenuation(ct), spacing)
    transmission /= transmission.max()  # SPM's template is scaled 0..1 as well
    pet = smooth(np.isin(labels, ("gm", "wm")) * (1.0 + 2.0 * (labels == "gm")), spacing)
    found = pet_masks(pet, transmission, spacing)
    assert (labels[found["brain"]] != "air").all() and np.isin(labels[found["brain"]], ("gm", "wm")).mean() > 0.9
    right = checks(ct, transmission, found, spacing)
    assert right["correlation"] > 0.99 and right["all_passed"]
    contour = checks(contour_baseline(pet, spacing), transmission, found, spacing)
    identity = checks(pet, transmission, found, spacing, hu=False)
    assert contour["correlation"] < right["correlation"] and identity["correlation"] < right["correlation"]
    assert not contour["passed"]["bone"]  # water everywhere: no skull
    no_skull = checks(np.where(labels == "bone", 30.0, ct), transmission, found, spacing)
    scan = {"identity": identity, "contour": contour}
    assert pet_failures({"a": {**scan, "model": right}}) == []
    assert pet_failures({"b": {**scan, "model": no_skull}})[0] == "bone HU on b"
    assert not [loss for loss in pet_losses({"b": {**scan, "model": no_skull}}) if "HU" in loss]  # HU: warnings
    assert pet_losses({"a": {**scan, "model": right}}) == []
    assert pet_losses({"c": {**scan, "model": identity}}) == ["attenuation correlation on c"]


def test_known_motion_operator_matches_the_simulation_and_its_inversion_undoes_most_of_the_motion():
    """Training/tools/motion_known_inversion.py: its torch A is kspace_motion (rows), and fitting |A x| to the moved
    image from the true motion brings x much closer to the still image than the moved image is."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Training" / "tools"))
    from motion_known_inversion import invert, operator

    from MedTranslateLib.simulate import MotionEvent, kspace_motion

    z, y, x = np.indices((4, 48, 40))
    still = (((y - 24) / 18.0) ** 2 + ((x - 20) / 15.0) ** 2 < 1.0) * (1.0 + 0.5 * np.sin(y / 2.0 + z)) * 100.0
    still = ndimage.gaussian_filter(still, (0, 1, 1)).astype(np.float32)
    events = [MotionEvent(0.45, 5.0, (2.0, -1.5)), MotionEvent(0.6, -3.0, (-2.5, 2.0))]  # centre lines 22-28 still
    moved = kspace_motion(still, events, phase_axis=0)
    applied = operator(events, still.shape[1:])(torch.from_numpy(still)[:, None])[:, 0].numpy()
    assert np.abs(applied - moved).mean() < 2e-3 * moved.mean()
    assert np.abs(moved - still).mean() > 0.05 * still.mean()  # the motion is there to undo
    estimate = invert(moved, events, steps=10)
    assert estimate.shape == still.shape and estimate.min() >= 0.0
    assert np.abs(estimate - still).mean() < 0.5 * np.abs(moved - still).mean()


def test_known_motion_with_errors_moves_each_change_of_pose_once_and_undoes_less():
    """Training/tools/motion_known_inversion.py: `with_errors` moves every line where the pose changes by the
    boundary error (both segments it divides alike, the scan's first and last lines held), drops segments that
    close up, and draws pose errors of the given size; the inversion given a motion 2 degrees and pixels off
    undoes far less than the true motion."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Training" / "tools"))
    from motion_known_inversion import invert_segments, moved_segments, with_errors

    from MedTranslateLib.simulate import MotionEvent, kspace_motion

    segments, poses = [(0, 20), (20, 45), (60, 100)], torch.ones(3, 3)
    rng = np.random.default_rng(3)
    same_segments, same_poses = with_errors(segments, poses, 100, rng)
    assert same_segments == segments and torch.equal(same_poses, poses)
    moved_to, _ = with_errors(segments, poses, 100, rng, boundary_error=4)
    assert moved_to[0][0] == 0 and moved_to[2][1] == 100 and moved_to[0][1] == moved_to[1][0]  # moved once
    edges = ((moved_to[0][1], 20), (moved_to[1][1], 45), (moved_to[2][0], 60))
    assert [abs(new - old) for new, old in edges] == [4, 4, 4]
    short = [with_errors([(10, 12), (12, 50)], torch.ones(2, 3), 100, rng, boundary_error=4)[0] for _ in range(20)]
    assert all(first < last for kept in short for first, last in kept) and min(map(len, short)) == 1
    draws = torch.cat([with_errors(segments, poses, 100, rng, pose_error=0.5)[1] for _ in range(50)])
    assert abs(float((draws - 1.0).std()) - 0.5) < 0.05
    z, y, x = np.indices((2, 48, 40))
    still = (((y - 24) / 18.0) ** 2 + ((x - 20) / 15.0) ** 2 < 1.0) * (1.0 + 0.5 * np.sin(y / 2.0 + z)) * 100.0
    still = ndimage.gaussian_filter(still, (0, 1, 1)).astype(np.float32)
    events = [MotionEvent(0.45, 5.0, (2.0, -1.5)), MotionEvent(0.6, -3.0, (-2.5, 2.0))]
    moved = kspace_motion(still, events, phase_axis=0)
    segments, poses = moved_segments(events, 48)
    assert segments == [(0, 22), (29, 48)]
    error = {key: np.abs(invert_segments(moved, *motion, 10) - still).mean() for key, motion in
             (("truth", (segments, poses)), ("off", (segments, poses + torch.tensor([2.0, 2.0, -2.0]))))}
    assert error["truth"] < 0.5 * error["off"], error


def moved_phantom(events=None):
    """(still, noise-free moved, moved with Rician noise of 1) (2, 64, 64) float32 head phantoms, and the motion
    `events` (default: lines 19-28 moved by 3 degrees and (3, -1.5) pixels, the rest still)."""
    from MedTranslateLib.simulate import MotionEvent, kspace_motion, rician_noise

    z, y, x = np.indices((2, 64, 64))
    still = (((y - 32) / 20.0) ** 2 + ((x - 32) / 16.0) ** 2 < 1.0) * (1.0 + 0.5 * np.sin(y / 2.0 + z)
                                                                        * np.cos(x / 3.0)) * 100.0
    still = ndimage.gaussian_filter(still, (0, 1, 1)).astype(np.float32)
    if events is None:
        events = [MotionEvent(0.3, 3.0, (3.0, -1.5)), MotionEvent(0.45, 0.0, (0.0, 0.0))]  # lines 0-18 still too
    motion_only = kspace_motion(still, events, phase_axis=0)
    return still, motion_only, rician_noise(motion_only, 1.0, np.random.default_rng(0)), events


def test_motion_autofocus_finds_a_moved_segment_from_the_moved_scan_alone(monkeypatch):
    """Training/tools/motion_autofocus.py: its support covers the head, its A is kspace_motion, the criterion ranks the
    true pose far below none, and the search (a smaller grid here) finds the moved segment's pose from the moved
    scan alone, given the segment's lines."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Training" / "tools"))
    import motion_autofocus as autofocus
    from motion_known_inversion import invert_segments

    from MedTranslateLib.simulate import motion_segments

    torch.set_num_threads(1)
    still, motion_only, moved, events = moved_phantom()
    segments = [(s.first, s.last) for s in motion_segments(events, 64) if s.rotation_deg != 0.0]
    assert segments == [(19, 29)]
    assert autofocus.support_mask(moved)[still > 1.0].all()
    monkeypatch.setattr(autofocus, "GRID_EXTENT", 4.5)  # degrees, and pixels: no pixel size given
    criterion = autofocus.problem(moved, [0, 1])
    masks = criterion.row_masks(segments)
    truth = torch.tensor([[3.0, 3.0, -1.5]])
    scale = float(np.percentile(moved, 99.5))
    applied = criterion.forward(torch.from_numpy(still)[:, None] / scale, truth, masks)[:, 0].numpy()
    assert np.abs(applied - motion_only / scale).mean() < 1e-3 * (motion_only / scale).mean()
    low = autofocus.half_resolution(criterion)
    assert low.observed.shape[2:] == (32, 32) and low.line_offset == 16 and low.shift_scale == 0.5
    assert criterion.score(truth, masks, 60) < 0.5 * criterion.score(torch.zeros_like(truth), masks, 60)
    low_masks = low.row_masks(segments)
    assert low.score(truth, low_masks, 60) < 0.7 * low.score(torch.zeros_like(truth), low_masks, 60)
    assert autofocus.mirror_groups([(0, 23), (23, 34), (74, 87), (87, 109)], 109) == [[0, 1, 2, 3]]
    assert autofocus.mirror_groups([(0, 46), (46, 95), (95, 120), (164, 256)], 256) == [[0, 1, 3], [2]]
    log = []
    found = autofocus.search(criterion, segments, True, log)
    assert len(log) == 2 and np.abs(found[0].numpy() - truth[0].numpy()).max() < 1.0, log
    corrected = invert_segments(moved, segments, found, autofocus.INVERSION_STEPS)
    assert np.abs(corrected - still).mean() < 0.5 * np.abs(moved - still).mean()


def test_motion_autofocus_takes_back_the_noise_a_motion_fits_and_finds_when_the_head_moved(monkeypatch):
    """Training/tools/motion_autofocus.py: a shift of the outermost lines lowers the plain criterion by fitting the
    noise in the air; the noise twin's penalty takes most of that back. Timing's change points give the segments,
    and the change search (small grids here) finds a move that lasts to the first line, from the moved scan alone
    with its timing unknown."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Training" / "tools"))
    import motion_autofocus as autofocus
    from motion_known_inversion import invert_segments

    from MedTranslateLib.simulate import MotionEvent

    torch.set_num_threads(1)
    timing = autofocus.Timing(64).with_change("both", 4, [(1, 0, 0), (2, 0, 0)]).with_change("below", 14, [(0, 0, 0)])
    segments, poses = timing.segments()
    assert segments == [(19, 29), (0, 19), (36, 64)] and poses.tolist() == [[1, 0, 0], [0, 0, 0], [2, 0, 0]]
    assert timing.index("both", 4) == [0, 2] and timing.taken("both") == {4, 14}
    still, _, moved, _ = moved_phantom([MotionEvent(0.0, 1.5, (1.5, -1.5)), MotionEvent(0.45, 0.0, (0.0, 0.0))])
    smaller = {"GRID_EXTENT": 1.5, "CHANGE_STEP": 1.5, "RANK_KEEP": 8, "RANK_STEPS": 30, "MAX_CHANGES": 1,
               "JOINT_STEPS": 5}
    for name, value in smaller.items():
        monkeypatch.setattr(autofocus, name, value)
    plain = autofocus.problem(moved, [0, 1])
    criterion = autofocus.noise_twin(plain, 0)
    outermost, shifted = plain.row_masks([(0, 4)]), torch.tensor([[0.0, 3.0, 0.0]])
    none = plain.score(torch.zeros(0, 3), plain.row_masks([]), 60)
    assert criterion.score(torch.zeros(0, 3), plain.row_masks([]), 60) == pytest.approx(none)
    assert plain.score(shifted, outermost, 60) < 0.6 * none  # 4 lines of 64 and no motion there
    assert criterion.score(shifted, outermost, 60) > plain.score(shifted, outermost, 60) + 0.2 * none
    log = []
    segments, poses = autofocus.search_changes(criterion, True, log).segments()
    assert segments == [(0, 29)] and np.abs(poses[0].numpy() - [1.5, 1.5, -1.5]).max() < 0.5, log
    corrected = invert_segments(moved, segments, poses, autofocus.INVERSION_STEPS)
    assert np.abs(corrected - still).mean() < 0.6 * np.abs(moved - still).mean()
