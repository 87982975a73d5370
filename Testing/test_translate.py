"""translate_image / translate_file: exact grids, orientation independence, resampling, units, cancel."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk

from MedTranslateLib import TranslationCancelled, load_model, translate_file, translate_image
from geometry_fixtures import anisotropic_volume, flipped_volume, head_phantom, oblique_volume
from tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def tiny_to_ct(tmp_path_factory):
    return load_model(build_tiny_model(tmp_path_factory.mktemp("models") / "to-ct", target_modality="CT",
                                       intensity={"source": {"kind": "percentile"},
                                                  "target": {"kind": "ct", "window": [-1024, 3071]}}))


def assert_exact_grid(result: sitk.Image, image: sitk.Image) -> None:
    assert result.GetSize() == image.GetSize()
    assert result.GetSpacing() == image.GetSpacing()
    assert result.GetOrigin() == image.GetOrigin()
    assert result.GetDirection() == image.GetDirection()


@pytest.mark.parametrize("make", [oblique_volume, flipped_volume, anisotropic_volume])
def test_output_lies_exactly_on_the_input_grid_and_input_is_untouched(make, tiny):
    image = make()
    before = sitk.GetArrayFromImage(image).copy()
    result = translate_image(image, tiny, device="cpu")
    assert_exact_grid(result, image)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), before)
    assert result.GetPixelID() == sitk.sitkFloat32


@pytest.mark.parametrize("flips", [(True, False, False), (False, True, True)])
def test_voxel_order_does_not_change_the_result(flips, tiny):
    """The same anatomy stored in another voxel order gives the same translation (slices found from cosines)."""
    image = oblique_volume()
    reordered = sitk.Flip(image, flips)
    permuted = sitk.PermuteAxes(reordered, [1, 0, 2])
    expected = sitk.GetArrayFromImage(translate_image(image, tiny, device="cpu"))
    back = sitk.PermuteAxes(translate_image(permuted, tiny, device="cpu"), [1, 0, 2])
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.Flip(back, flips)), expected, atol=1e-4)


def test_in_plane_resampling_to_training_spacing_and_back(tmp_path):
    model = load_model(build_tiny_model(tmp_path / "two-mm", spacing_mm=[2.0, 2.0]))
    image = anisotropic_volume()
    stages = []
    result = translate_image(image, model, device="cpu", progress=lambda p: stages.append(p.stage))
    assert_exact_grid(result, image)
    assert "resampling" in stages
    close = sitk.Image(image)
    close.SetSpacing((2.01, 1.99, image.GetSpacing()[2]))  # within 2%: used as is
    stages.clear()
    translate_image(close, model, device="cpu", progress=lambda p: stages.append(p.stage))
    assert "resampling" not in stages


def test_ct_target_comes_back_as_integer_hu_on_the_grid(tiny_to_ct):
    image = flipped_volume()
    result = translate_image(image, tiny_to_ct, device="cpu")
    assert result.GetPixelID() == sitk.sitkInt16
    values = sitk.GetArrayViewFromImage(result)
    assert values.min() >= -1024 and values.max() <= 3071
    assert_exact_grid(result, image)


def test_source_target_returns_in_the_input_units(tmp_path, tiny):
    """A same-modality card (`target.kind = "source"`) maps the output back with the input's fitted range."""
    same = load_model(build_tiny_model(tmp_path / "same", target_modality="MR-T1",
                                       intensity={"source": {"kind": "percentile"}, "target": {"kind": "source"}}))
    image = flipped_volume()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(translate_image(image, same, device="cpu")),
                                  sitk.GetArrayFromImage(translate_image(image, tiny, device="cpu")))


def test_slices_are_padded_as_the_card_says(tmp_path, tiny):
    """A card whose network trained on background-padded crops (`pad`) is run on background-padded slices."""
    assert tiny.card.pad == "reflect"  # a card without the key keeps the mirrored borders
    background = load_model(build_tiny_model(tmp_path / "background", pad="background"))  # the same weights
    assert background.card.pad == "background"
    # slices of 26 x 21 (padded to the network's multiple 4) cut from inside the head: anatomy on every border
    image = sitk.GetImageFromArray(np.ascontiguousarray(head_phantom((41, 52, 5))[:, 13:39, 10:31]))
    reflected = sitk.GetArrayFromImage(translate_image(image, tiny, device="cpu"))
    padded = sitk.GetArrayFromImage(translate_image(image, background, device="cpu"))
    assert np.abs(reflected.astype(float) - padded).max() > 0


def test_cancel_raises_and_writes_nothing(tmp_path, tiny):
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(oblique_volume(), str(source))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TranslationCancelled):
        translate_file(source, tmp_path / "out.nii.gz", tiny, device="cpu", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_translate_file_reports_every_stage(tmp_path, tiny):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(anisotropic_volume(), str(source))
    stages = []
    translate_file(source, tmp_path / "out.mha", tiny, device="cpu", batch_size=2,
                   progress=lambda p: stages.append(p.stage))
    assert stages[0] == "reading" and stages[-1] == "writing" and "translating" in stages
    assert (tmp_path / "out.mha").is_file()


def test_a_card_that_says_fp32_runs_in_float32_whatever_is_asked(tmp_path):
    image = oblique_volume()
    plain = load_model(build_tiny_model(tmp_path / "plain"))
    strict = load_model(build_tiny_model(tmp_path / "strict", precision="fp32"))
    as_fp32 = sitk.GetArrayFromImage(translate_image(image, plain, device="cpu", precision="fp32"))
    as_bf16 = sitk.GetArrayFromImage(translate_image(image, plain, device="cpu", precision="bf16"))
    obeyed = sitk.GetArrayFromImage(translate_image(image, strict, device="cpu", precision="bf16"))
    assert not np.array_equal(as_fp32, as_bf16)  # bf16 changes this network's output ...
    np.testing.assert_array_equal(obeyed, as_fp32)  # ... but not when its card says fp32


def test_resampling_back_slab_by_slab_equals_one_resampling():
    """The pass's output goes back onto the input grid 16 k-slices at a time (no second full-size image)."""
    from MedTranslateLib.resample import resample_onto_array

    reference = oblique_volume()
    coarse = sitk.Resample(reference, [24, 20, 12], sitk.Transform(), sitk.sitkLinear, reference.GetOrigin(),
                           [s * 2 for s in reference.GetSpacing()], reference.GetDirection(), 0.0, sitk.sitkFloat32)
    whole = sitk.GetArrayFromImage(sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkLinear, -5.0,
                                                 sitk.sitkFloat32))
    for slab in (1, 5, 16, 100):
        out = np.empty_like(whole)
        resample_onto_array(coarse, reference, -5.0, out, slab=slab)
        np.testing.assert_allclose(out, whole, atol=1e-4)
