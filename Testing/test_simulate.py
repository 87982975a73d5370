"""Physics of the training-data simulation (MedTranslateLib.simulate) on SPM's real tissue maps."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedTranslateLib import simulate


@pytest.fixture(scope="module")
def tissues(spm_templates):
    """TPM's six tissue maps, (6, Z, Y, X), cropped around the centre of the head for speed."""
    image = sitk.ReadImage(str(spm_templates["tpm"]), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)  # (6, Z, Y, X)
    return np.ascontiguousarray(array[:, 55:65])


def _class_means(image: np.ndarray, tissues: np.ndarray) -> dict:
    """Mean signal where a tissue's probability is above 0.8."""
    return {name: float(image[tissues[i] > 0.8].mean()) for i, name in enumerate(simulate.TISSUES)
            if (tissues[i] > 0.8).any()}


def test_spin_echo_weightings_order_tissues_as_in_real_scans(tissues):
    properties = simulate.nominal_mr()
    t1 = _class_means(simulate.mr_spin_echo(tissues, properties, *simulate.SEQUENCES["T1"]), tissues)
    t2 = _class_means(simulate.mr_spin_echo(tissues, properties, *simulate.SEQUENCES["T2"]), tissues)
    pd = _class_means(simulate.mr_spin_echo(tissues, properties, *simulate.SEQUENCES["PD"]), tissues)
    assert t1["wm"] > t1["gm"] > t1["csf"]          # T1-weighted: white matter brightest, CSF dark
    assert t2["csf"] > t2["gm"] > t2["wm"]          # T2-weighted: CSF brightest
    assert pd["gm"] > pd["wm"] and pd["csf"] > pd["wm"]  # PD-weighted: follows proton density
    assert t1["air"] < 0.02 * t1["wm"]  # air gives no signal (TPM air is >= 80 % air)


def test_pseudo_ct_gives_literature_hu_in_pure_tissue(tissues):
    hu = simulate.nominal_ct_hu()
    ct = _class_means(simulate.pseudo_ct(tissues, hu), tissues)
    assert ct["air"] == pytest.approx(-1000.0, abs=30.0)
    assert ct["wm"] == pytest.approx(hu["wm"], abs=15.0)
    assert ct["gm"] == pytest.approx(hu["gm"], abs=25.0)


def test_pet_uptake_orders_tissues_and_its_blur_conserves_activity(tissues):
    uptake = simulate.nominal_pet_uptake()
    means = _class_means(simulate.pet_uptake(tissues, uptake, fwhm_mm=0.01, spacing_zyx=(1.5, 1.5, 1.5)), tissues)
    assert means["gm"] > means["wm"] > means["csf"]
    phantom = np.zeros((6, 40, 40, 40), dtype=np.float32)  # a grey-matter cube in air, far from the borders
    phantom[5] = 1.0
    phantom[0, 15:25, 15:25, 15:25], phantom[5, 15:25, 15:25, 15:25] = 1.0, 0.0
    sharp = simulate.pet_uptake(phantom, uptake, fwhm_mm=0.01, spacing_zyx=(2.0, 2.0, 2.0))
    blurred = simulate.pet_uptake(phantom, uptake, fwhm_mm=8.0, spacing_zyx=(2.0, 2.0, 2.0))
    assert np.abs(np.diff(blurred, axis=2)).max() < 0.5 * np.abs(np.diff(sharp, axis=2)).max()
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=1e-3)


def test_poisson_thinning_keeps_the_mean_and_raises_the_variance():
    rng = np.random.default_rng(0)
    activity = np.full((4, 64, 64), 2.0, dtype=np.float32)
    full = simulate.poisson_counts(activity, 400.0, rng)
    low = simulate.poisson_thinning(full, 0.1, rng)
    assert full.mean() == pytest.approx(400.0, rel=0.01)
    assert low.mean() == pytest.approx(full.mean(), rel=0.02)
    # thinning to 10 % of the counts: variance of the rescaled image ~ mean / 0.1
    assert low.var() == pytest.approx(400.0 / 0.1, rel=0.1)
    with pytest.raises(ValueError):
        simulate.poisson_thinning(full, 0.0, rng)


def test_motion_without_moves_changes_nothing(tissues):
    t1 = simulate.mr_spin_echo(tissues, simulate.nominal_mr(), *simulate.SEQUENCES["T1"])
    unmoved = [simulate.MotionEvent(0.3, 0.0, (0.0, 0.0)), simulate.MotionEvent(0.8, 0.0, (0.0, 0.0))]
    np.testing.assert_allclose(simulate.kspace_motion(t1, unmoved), np.abs(t1), atol=1e-5 * t1.max())


def test_motion_corrupts_outer_kspace_and_keeps_the_reference_pose(tissues):
    t1 = simulate.mr_spin_echo(tissues, simulate.nominal_mr(), *simulate.SEQUENCES["T1"])
    events = [simulate.MotionEvent(0.55, 8.0, (4.0, -3.0))]  # the last 45 % of the lines moved
    moved = simulate.kspace_motion(t1, events, phase_axis=0)
    error = np.abs(moved - t1).mean() / t1.mean()
    assert 0.005 < error < 0.5
    # the k-space centre keeps the reference pose: the image is not shifted (centre of mass unchanged)
    rows = np.arange(t1.shape[1])[None, :, None]
    assert (moved * rows).sum() / moved.sum() == pytest.approx((t1 * rows).sum() / t1.sum(), abs=0.3)
    # ghosting runs along the phase-encoding axis: more energy change there than along the readout
    spectrum_change = np.abs(np.fft.fft2(moved) - np.fft.fft2(t1)).mean(axis=0)
    assert spectrum_change.sum() > 0


def test_random_motion_draws_sorted_events():
    events = simulate.random_motion(np.random.default_rng(1), 4)
    assert len(events) == 4
    assert [e.start_fraction for e in events] == sorted(e.start_fraction for e in events)
    assert all(abs(e.rotation_deg) <= 4.0 and max(map(abs, e.shift_voxels)) <= 2.0 for e in events)


def test_slicewise_motion_moves_each_slice_its_own_way(tissues):
    t1 = simulate.mr_spin_echo(tissues, simulate.nominal_mr(), *simulate.SEQUENCES["T1"])[:6]
    moved = simulate.slicewise_motion(t1, np.random.default_rng(3), moves=(2, 4), max_rotation_deg=8.0,
                                      max_shift_voxels=4.0)
    assert moved.shape == t1.shape and moved.dtype == np.float32
    # slice by slice: the same as kspace_motion with that slice's own draws, taken in order from the generator
    rng = np.random.default_rng(3)
    for index, plane in enumerate(t1):
        events = simulate.random_motion(rng, int(rng.integers(2, 5)), 8.0, 4.0)
        expected = simulate.kspace_motion(plane[None], events, phase_axis=int(rng.integers(0, 2)))[0]
        np.testing.assert_array_equal(moved[index], expected)
    errors = [np.abs(m - c).mean() / c.mean() for m, c in zip(moved, t1)]
    assert min(errors) > 1e-3 and len({round(e, 6) for e in errors}) == len(errors)


def test_warp_without_deformation_is_the_identity():
    rng = np.random.default_rng(0)
    volume = rng.random((3, 20, 24)).astype(np.float32)
    warp = simulate.random_warp((20, 24), rng, rotation_deg=0, scale=0, shear=0, shift_voxels=0, elastic_voxels=0)
    np.testing.assert_allclose(warp.apply(volume), volume, atol=1e-6)


def test_warp_keeps_each_slice_in_its_plane():
    rng = np.random.default_rng(2)
    volume = np.zeros((5, 40, 40), dtype=np.float32)
    volume[2, 15:25, 15:25] = 1.0
    warped = simulate.random_warp((40, 40), rng).apply(volume)
    assert warped[[0, 1, 3, 4]].max() == 0.0 and warped[2].sum() > 50


def test_bias_field_is_smooth_positive_and_centred_on_one():
    field = simulate.bias_field((20, 30, 30), np.random.default_rng(0), strength=0.2)
    assert field.shape == (20, 30, 30) and field.min() > 0
    assert np.abs(np.log(field)).mean() < 0.4
    assert np.abs(np.diff(field, axis=2)).max() < 0.2


def test_tissue_texture_is_fine_structure_of_the_drawn_amplitude_centred_on_one():
    """Unlike noise, the texture is correlated over about its sigma (neighbours alike), and unlike a bias field
    it varies from voxel to voxel; its spread is the drawn amplitude and it never turns a signal negative."""
    field = simulate.tissue_texture((24, 64, 64), np.random.default_rng(0), 0.1, 1.0)
    assert field.shape == (24, 64, 64) and field.dtype == np.float32 and field.min() >= 0.0
    assert field.mean() == pytest.approx(1.0, abs=0.01) and field.std() == pytest.approx(0.1, rel=0.02)
    centred = field - field.mean()
    neighbours = np.corrcoef(centred[:, :, 1:].ravel(), centred[:, :, :-1].ravel())[0, 1]
    far = np.corrcoef(centred[:, :, 6:].ravel(), centred[:, :, :-6].ravel())[0, 1]
    assert neighbours > 0.6 and abs(far) < 0.05
    assert np.array_equal(simulate.tissue_texture((4, 8, 8), np.random.default_rng(1), 0.0, 1.0), np.ones((4, 8, 8)))


def test_sheet_texture_draws_thin_lines_of_the_drawn_amplitude_and_sign():
    """Most voxels stay untouched; the lines reach 1 + amplitude and are thin: two voxels away across them (in
    one of the four in-plane directions) the field is back near 1. A negative amplitude draws the same lines dark."""
    bright = simulate.sheet_texture((24, 64, 64), np.random.default_rng(0), 0.3, 3.0, 0.6)
    assert bright.shape == (24, 64, 64) and bright.dtype == np.float32
    assert np.median(bright) == pytest.approx(1.0, abs=0.01) and bright.max() == pytest.approx(1.3, abs=1e-4)
    assert 0.05 < (bright > 1.15).mean() < 0.3
    z, y, x = np.nonzero(bright[:, 2:-2, 2:-2] > 1.27)
    y, x = y + 2, x + 2
    across = np.min([bright[z, y + 2, x], bright[z, y - 2, x], bright[z, y, x + 2], bright[z, y, x - 2]], axis=0)
    assert len(z) > 1000 and across.mean() < 1.05
    dark = simulate.sheet_texture((24, 64, 64), np.random.default_rng(0), -0.3, 3.0, 0.6)
    assert np.allclose(dark - 1.0, -(bright - 1.0), atol=1e-6) and dark.min() >= 0.0
    assert np.array_equal(simulate.sheet_texture((4, 8, 8), np.random.default_rng(1), 0.0, 2.0, 0.5),
                          np.ones((4, 8, 8)))


def test_rician_noise_floor_and_gamma():
    rng = np.random.default_rng(0)
    noisy = simulate.rician_noise(np.zeros((2, 64, 64), np.float32), 1.0, rng)
    assert noisy.mean() == pytest.approx(np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh mean on background
    ramp = np.linspace(0, 4, 100, dtype=np.float32)[None, None]
    bent = simulate.gamma(ramp, 2.0)
    assert bent.max() == pytest.approx(4.0) and bent[0, 0, 50] < ramp[0, 0, 50]


def test_random_tissue_properties_stay_physical():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mr, hu, uptake = simulate.random_mr(rng), simulate.random_ct_hu(rng), simulate.random_pet_uptake(rng)
        assert all(t.t1_ms > 0 and t.t2_ms > 0 and t.pd >= 0 for t in mr.values())
        assert 900 <= hu["bone"] <= 1600 and hu["air"] == -1000
        assert 0.25 <= uptake["wm"] <= 0.5 and uptake["gm"] == 1.0


def test_pet_background_adds_broad_scatter_and_flat_randoms_outside_the_tracer():
    activity = np.zeros((40, 40, 40), np.float32)
    activity[15:25, 15:25, 15:25] = 1.0  # tracer in a cube, air around it
    assert np.array_equal(simulate.pet_background(activity, (2.0, 2.0, 2.0), 0.0, 0.0), activity)
    observed = simulate.pet_background(activity, (2.0, 2.0, 2.0), scatter=0.08, randoms=0.02)
    added = observed - activity
    assert abs(float(added.max()) - 0.10) < 1e-6  # the scatter's peak plus the randoms
    assert added[20, 20, 5] > added[20, 20, 1] > 0.02 - 1e-6  # falls off away from the tracer, never below randoms
    assert observed.dtype == np.float32
