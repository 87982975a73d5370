"""Native-resolution simulation: the sharp 1 mm head (MNI 2009a brain in SPM's TPM head), 3D deformations, and
the training subjects of Training/data/prepare_native_data.py built from them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedTranslateLib.simulate import TISSUES
from MedTranslateLib.simulate.deform import deform, random_deformation

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def anatomy():
    from prepare_native_data import load_anatomy

    return load_anatomy()


SUBJECT_SEED = 1


@pytest.fixture(scope="module")
def subject():
    """make_subject's (volumes, pet, draws) of one probe subject, drawn once for the tests below."""
    from prepare_native_data import make_subject

    return make_subject("probe", seed=SUBJECT_SEED)


def test_head_tissues_are_probabilities_with_the_brain_from_2009a(anatomy):
    grid, tissues, brain, real_t1 = anatomy
    assert tissues.shape == (6,) + brain.shape and grid.GetSpacing() == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(tissues.sum(axis=0), 1.0, atol=1e-4)
    names = {name: tissues[i] for i, name in enumerate(TISSUES)}
    inside, outside = brain > 0.5, brain < 0.5
    assert names["gm"][outside].max() == 0 and names["wm"][outside].max() == 0
    assert names["bone"][inside].max() == 0 and names["air"][inside].max() == 0
    # the 2009a maps at full resolution: WM where the real T1 is bright, GM where it is intermediate
    assert real_t1[names["wm"] > 0.9].mean() > real_t1[names["gm"] > 0.9].mean() > real_t1[names["csf"] > 0.9].mean()
    for tissue in ("gm", "wm", "csf", "bone", "soft"):  # every tissue present, the head's tissues in the head
        assert (names[tissue] > 0.9).sum() > 10_000, tissue
    edge = np.abs(np.diff(names["bone"], axis=0)).max()
    assert edge > 0.5  # tempered TPM: the skull has edges, not 1.5 mm ramps


def test_random_deformation_is_identity_without_parameters_and_smooth_otherwise():
    rng = np.random.default_rng(0)
    shape = (48, 56, 52)
    identity = random_deformation(shape, rng, rotation_deg=0.0, scale=0.0, shear=0.0, shift_voxels=0.0,
                                  elastic_voxels=0.0)
    np.testing.assert_allclose(identity, np.indices(shape), atol=1e-4)
    volume = np.random.default_rng(1).random(shape).astype(np.float32)
    np.testing.assert_allclose(deform(volume, identity), volume, atol=1e-5)
    head = (189, 233, 197)  # the 1 mm grid the subjects are drawn on
    warped = random_deformation(head, rng)[:, 60:130]  # (3, 70, 233, 197): a slab, to keep the test light
    jacobian = np.stack([np.stack(np.gradient(component), axis=0) for component in warped])  # (3, 3, Z, Y, X)
    determinant = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    assert determinant.min() > 0.2  # smooth: no folding anywhere
    assert np.abs(warped - np.indices(head)[:, 60:130]).max() > 3.0  # yet a real change of shape and pose


def test_a_training_subject_pairs_a_randomised_t1_with_a_sharp_t2(anatomy, subject, seed=SUBJECT_SEED):
    from prepare_native_data import BRAIN_VOLUMES, HEAD_VOLUMES, PET_FACTOR, PET_VOLUMES

    volumes, pet, draws = subject
    _, tissues, brain, _ = anatomy
    assert set(volumes) == set(BRAIN_VOLUMES + HEAD_VOLUMES) and all(v.shape == brain.shape for v in volumes.values())
    assert set(pet) == set(PET_VOLUMES)
    assert all(v.shape == tuple(n // PET_FACTOR for n in brain.shape) for v in pet.values())
    assert all(np.isfinite(v).all() for v in list(volumes.values()) + list(pet.values()))
    assert volumes["ct"].min() >= -1000 and volumes["ct"].max() > 400 and pet["pet_low"].min() >= 0
    coordinates = random_deformation(brain.shape, np.random.default_rng(seed))  # the subject's first draw
    where = {name: deform(tissues[i], coordinates) > 0.9 for i, name in enumerate(TISSUES[:3])}
    t1, t2 = volumes["t1"], volumes["t2"]
    kept = t2 > 0  # outside a cut field of view or a stripped skull both are empty
    mean = {(key, name): float(v[mask & kept].mean()) for key, v in (("t1", t1), ("t2", t2))
            for name, mask in where.items()}
    assert mean["t2", "csf"] > mean["t2", "gm"] > mean["t2", "wm"]  # literature T2 contrast, sharp target
    assert mean["t1", "wm"] > mean["t1", "gm"] > mean["t1", "csf"]  # a T1-weighted input, whatever its draw
    assert draws["input"] in ("spin-echo", "random", "real") and draws["seed"] == seed


def test_pet_volumes_drawn_again_from_the_seed_are_the_subjects(subject, seed=SUBJECT_SEED):
    """--redo-pet rebuilds a prepared subject's PET from its seed alone: the deformation is the stream's first
    draw and the PET has a stream of its own."""
    from prepare_native_data import PET_FWHM_MM, deformed_head, pet_volumes

    _, pet, draws = subject
    again, again_draws = pet_volumes(deformed_head(np.random.default_rng(seed))[1], np.random.default_rng([seed, 2]))
    assert all(np.array_equal(again[key], pet[key]) for key in pet) and again_draws == draws["pet"]
    assert PET_FWHM_MM[0] <= draws["pet"]["pet_fwhm_mm"] <= PET_FWHM_MM[1]


def test_whole_head_volumes_drawn_again_from_the_seed_are_the_subjects(subject, seed=SUBJECT_SEED):
    """--redo-head rebuilds a prepared subject's whole-head volumes from its seed alone (the second stream)."""
    from prepare_native_data import HEAD_VOLUMES, deformed_head, second_stream

    volumes, _, draws = subject
    _, _, again, again_draws = second_stream(seed, *deformed_head(np.random.default_rng(seed)))
    assert all(np.array_equal(again[key], volumes[key]) for key in HEAD_VOLUMES) and again_draws == draws["head"]


def test_mr_targets_rendered_again_from_the_seed_are_the_subjects(subject, tmp_path, seed=SUBJECT_SEED):
    """--redo-targets writes a prepared subject's T2 and PD again from its seed alone, on the crop of its input."""
    from prepare_native_data import TARGETS, head_box, redo_targets

    volumes, _, draws = subject
    again_draws = redo_targets(tmp_path, "train", "probe", seed)
    assert all(draws[name] == value for name, value in again_draws.items())
    box = head_box(volumes["t2"] + volumes["t1"])
    for key in TARGETS:
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "train" / key / "probe.nii.gz")))
        assert np.array_equal(written, volumes[key][box])


def test_a_motion_pair_has_noise_of_its_own_on_input_and_target(subject):
    """A moved scan's noise is its own acquisition's: input and target each have Rician noise of the drawn level
    (the target's air far from the head: a Rician floor of median 1.18 sigma), drawn independently (uncorrelated)."""
    from scipy import ndimage

    volumes, _, draws = subject
    target, source = volumes["t1_motion_target"], volumes["t1_motion"]
    sigma = draws["head"]["motion_noise"] * float(np.percentile(target, 99.5))
    assert sigma > 0
    far = ndimage.distance_transform_edt(ndimage.gaussian_filter(target, 2.0) < 3 * sigma) > 20
    assert far.sum() > 10_000
    floor = sigma * np.sqrt(2.0 * np.log(2.0))
    assert np.median(target[far]) == pytest.approx(floor, rel=0.1)
    assert np.median(source[far]) >= 0.9 * floor  # and the ghosts of the motion, which reach into the air
    assert abs(np.corrcoef(source[far], target[far])[0, 1]) < 0.05


def test_half_the_motion_pairs_keep_their_resolution():
    from prepare_native_data import scan_resolution

    still = np.zeros((8, 64, 64), np.float32)
    still[:, 16:48, 16:48] = 1.0
    blurred = [scan_resolution(still, np.random.default_rng(s)) for s in range(12)]
    assert any(d == {} and np.array_equal(b, still) for b, d in blurred)  # half the scans keep their resolution
    coarse = [(b, d) for b, d in blurred if d]
    assert coarse and all(1.0 <= d["resolution_fwhm_mm"] <= 2.5 and np.abs(np.diff(b, axis=2)).max() < 0.9
                          for b, d in coarse)  # softer edges


def test_a_scan_acquired_on_a_coarser_grid_comes_back_on_the_fine_grid():
    """upsampled(block_mean(v, 2)) keeps v's shape and its 2 mm block means; constants and ramps come back."""
    from prepare_native_data import block_mean, upsampled

    ramp = np.broadcast_to(np.arange(21, dtype=np.float32), (9, 14, 21)).copy()
    coarse = block_mean(ramp, 2)
    assert coarse.shape == (4, 7, 10)
    fine = upsampled(coarse, 2, ramp.shape)
    assert fine.shape == ramp.shape and fine.dtype == np.float32
    np.testing.assert_allclose(fine[:, :, 1:19], ramp[:, :, 1:19], atol=1e-4)  # linear: a ramp is kept inside
    np.testing.assert_allclose(block_mean(fine, 2), coarse, atol=0.3)
    np.testing.assert_array_equal(upsampled(np.full((3, 4, 5), 7.0, np.float32), 2, (7, 9, 11)), 7.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_motion_pairs_move_within_axial_slices_only(seed):
    """Each axial slice's ghosts come from that slice alone (the plane the motion model runs in), whether each
    slice has its own moves or all share one history."""
    from prepare_native_data import MOTION_SLICE_AXIS, move_head

    head = np.zeros((6, 48, 48), np.float32)
    head[3, 12:36, 12:36] = 1.0  # one bright axial slice in an empty volume
    moved, draws = move_head(head, np.random.default_rng(seed))
    assert MOTION_SLICE_AXIS == 0 and draws["slice_axis"] == 0 and draws["motion"] in ("each slice", "one history")
    assert np.abs(np.delete(moved, 3, axis=0)).max() < 1e-5  # nothing leaks into the other slices
    assert np.abs(moved[3] - head[3]).max() > 0.05  # and the slice itself moved


def test_saved_anatomy_is_the_templates_in_8_bits_and_replaces_them(anatomy, tmp_path):
    """--save-anatomy's file (what a lent GPU machine receives beside SimpleITK's 53 MB wheel, within 64 MiB)
    reads back as the templates' anatomy to within its 8-bit steps, and MEDTRANSLATE_ANATOMY makes
    load_anatomy read it."""
    from prepare_native_data import ANATOMY_VARIABLE, read_saved_anatomy, save_anatomy

    path = tmp_path / "anatomy"
    save_anatomy(path)
    assert path.stat().st_size < 11 * 2**20
    grid, tissues, brain, real_t1 = anatomy
    saved_grid, saved_tissues, saved_brain, saved_t1 = read_saved_anatomy(path)
    for name in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(saved_grid, name)() == getattr(grid, name)()
    assert saved_tissues.dtype == np.float32 and saved_tissues.shape == tissues.shape
    np.testing.assert_allclose(saved_tissues.sum(axis=0), 1.0, atol=1e-5)
    assert np.abs(saved_tissues - tissues).max() < 3.0 / 255.0  # a 1/510 rounding, then renormalised
    assert np.abs(saved_brain - brain).max() <= 0.5 / 255.0 + 1e-6
    np.testing.assert_allclose(saved_t1, real_t1, rtol=1e-3, atol=1e-3)  # float16
    probe = ("from prepare_native_data import load_anatomy; g, t, b, r = load_anatomy(); "
             "print(t.dtype, round(float(abs(t.sum(axis=0) - 1).max()), 4), r.dtype)")
    env = dict(os.environ, **{ANATOMY_VARIABLE: str(path)})
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO / "Training" / "data", env=env,
                         capture_output=True, encoding="utf-8", timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["float32", "0.0", "float32"], out.stderr
