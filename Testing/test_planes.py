"""Models trained on several slicing planes: card and config keys, sampling from every plane, fused inference,
and the checkerboard-free U-Net upsampling they use."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MedTranslateLib import load_model, translate_image
from MedTranslateLib.card import CardError, ModelCard
from MedTranslateLib.networks import build_network, fold_batch_norms
from MedTranslateLib.training.config import ConfigError, DataSection
from MedTranslateLib.training.data import SliceSampler, Volume, in_planes, slice_weights
from MedTranslateLib.translate import passes_for
from geometry_fixtures import head_phantom, oblique_volume
from tiny_model import build_tiny_model, card_fields

PLANES = ["axial", "coronal", "sagittal"]


def isotropic_head(spacing: float = 1.0, slice_mm: float = 1.0) -> sitk.Image:
    image = sitk.GetImageFromArray(head_phantom((24, 24, 24)))
    image.SetSpacing((spacing, spacing, slice_mm))
    image.SetOrigin((3.0, -2.0, 5.0))
    return image


@pytest.fixture(scope="module")
def three_plane_model(tmp_path_factory):
    return load_model(build_tiny_model(tmp_path_factory.mktemp("models") / "planes", planes=PLANES,
                                       spacing_mm=[1.0, 1.0]))


def test_card_planes_and_fusion_are_validated_and_one_plane_cards_read_as_before():
    card = ModelCard.from_dict(dict(card_fields(planes=PLANES, fusion="median"), weights_sha256="0" * 64))
    assert card.inference_planes == PLANES and card.to_dict()["fusion"] == "median"
    plain = ModelCard.from_dict(dict(card_fields(), weights_sha256="0" * 64))
    assert plain.inference_planes == ["axial"] and "planes" not in plain.to_dict()
    for bad in ({"planes": ["axial", "axial"]}, {"planes": ["oblique"]}, {"planes": ["coronal"]},
                {"fusion": "max"}):
        with pytest.raises(CardError):
            ModelCard.from_dict(dict(card_fields(**bad), weights_sha256="0" * 64))


def test_config_planes_need_the_slice_axis_and_isotropic_slices_and_may_have_context():
    from test_training import CONFIGS, CONFIG_FILES
    from MedTranslateLib.training import load_config

    base = CONFIGS / CONFIG_FILES["pix2pix"]
    sets = ["data.source=/a", "data.target=/b"]
    assert load_config(base, sets + ['data.planes=["axial", "sagittal"]']).data.planes == ["axial", "sagittal"]
    for bad in ('data.planes=["coronal"]', 'data.planes=["axial", "axial"]', 'data.fusion="max"'):
        with pytest.raises(ConfigError):
            load_config(base, sets + [bad])
    context = load_config(base, sets + ['data.planes=["axial", "coronal"]', "data.context_slices=1"]).data
    assert context.planes == ["axial", "coronal"] and context.context_slices == 1  # neighbours along each plane
    with pytest.raises(ConfigError, match="spacing_mm"):
        load_config(base, sets + ['data.planes=["axial", "coronal"]', "data.spacing_mm=[1.0, 1.0]"])


def _volume(array: np.ndarray, image: sitk.Image, name: str) -> Volume:
    data = DataSection()
    return Volume(name, name, array, slice_weights(array, data.foreground_floor), None, (1.0, 1.0), "axial",
                  tuple(image.GetDirection()), tuple(image.GetSpacing()))


def test_sampler_draws_paired_slices_from_every_plane_without_copies():
    image = isotropic_head()
    voxels = sitk.GetArrayFromImage(image) / 500.0 - 1.0  # [k, j, i] is the axial view of this identity grid
    data = DataSection(planes=PLANES, crop_size=16, flip=False)
    sources, targets = (in_planes([_volume(voxels * f, image, "s")], data) for f in (1.0, -1.0))
    assert [v.plane for v in sources] == PLANES
    assert all(np.shares_memory(v.array, sources[0].array) for v in sources)
    sampler = SliceSampler(sources, targets, data, paired=True)
    generator = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        sample = sampler.draw(generator)
        np.testing.assert_allclose(sample["target"], -sample["source"])  # paired crops stay in step
        seen.add(sampler.source_table.draw(generator)[0])
    assert seen == {0, 1, 2}


def test_sampler_stacks_context_slices_along_each_plane():
    """With context, a sample's channels are the neighbours along its own plane's normal, in the order that
    plane's view has them, and the target stays the middle slice."""
    image = isotropic_head()
    voxels = sitk.GetArrayFromImage(image) / 500.0 - 1.0
    data = DataSection(planes=PLANES, crop_size=24, flip=False, context_slices=1)
    sources, targets = (in_planes([_volume(voxels * f, image, "s")], data) for f in (1.0, -1.0))
    sampler = SliceSampler(sources, targets, data, paired=True)
    generator = np.random.default_rng(1)
    for _ in range(30):
        plane_state = generator.bit_generator.state
        volume, index = sampler.source_table.draw(generator)
        generator.bit_generator.state = plane_state
        sample = sampler.draw(generator)
        view = sources[volume].array
        assert sample["source"].shape == (3, 24, 24) and sample["target"].shape == (1, 24, 24)
        np.testing.assert_allclose(sample["target"][0], -sample["source"][1])
        neighbours = view[[max(index - 1, 0), index, min(index + 1, len(view) - 1)]]
        np.testing.assert_allclose(sample["source"], neighbours)


def test_three_plane_context_model_fuses_its_planes_each_with_its_neighbours(tmp_path):
    image = isotropic_head()
    fused = load_model(build_tiny_model(tmp_path / "fused", planes=PLANES, context_slices=1))
    result = sitk.GetArrayFromImage(translate_image(image, fused, device="cpu"))
    singles = [sitk.GetArrayFromImage(translate_image(image, load_model(build_tiny_model(
        tmp_path / plane, slice_axis=plane, context_slices=1)), device="cpu")) for plane in PLANES]
    np.testing.assert_allclose(result, np.mean(singles, axis=0), atol=1e-4)
    assert result.shape == sitk.GetArrayFromImage(image).shape


def test_context_neighbours_lie_one_model_pixel_apart_for_models_trained_on_several_planes():
    from MedTranslateLib.translate import context_step

    fused = ModelCard.from_dict(dict(card_fields(planes=PLANES, context_slices=1, spacing_mm=[1.0, 1.0]),
                                     weights_sha256="0" * 64))
    assert context_step(fused, 1.0) == 1.0 and context_step(fused, 1.01) == 1.0  # within the spacing tolerance
    assert context_step(fused, 6.5) == pytest.approx(1 / 6.5) and context_step(fused, 0.5) == 2.0
    for other in (dict(context_slices=0), dict(planes=[]), dict(spacing_mm=None)):  # no context, one plane (its
        card = ModelCard.from_dict(dict(card_fields(**{**dict(planes=PLANES, context_slices=1,  # own spacing),
                                                          spacing_mm=[1.0, 1.0]), **other}),  # or no spacing
                                        weights_sha256="0" * 64))
        assert context_step(card, 6.5) == 1.0


@pytest.mark.parametrize("spacing", [1.0, 0.8])  # 0.8 mm: every pass resampled to 1 mm and back, added in slabs
def test_three_plane_model_runs_each_plane_and_fuses_them(three_plane_model, tmp_path, spacing):
    image = isotropic_head(spacing, slice_mm=spacing)
    reports = []
    fused = sitk.GetArrayFromImage(translate_image(image, three_plane_model, device="cpu",
                                                   progress=lambda p: reports.append(p)))
    translating = [(p.done, p.total) for p in reports if p.stage == "translating"]
    assert translating[-1][0] == translating[-1][1] and all(b[0] >= a[0] for a, b in zip(translating, translating[1:]))
    singles = []
    for plane in PLANES:
        one = load_model(build_tiny_model(tmp_path / plane, slice_axis=plane, spacing_mm=[1.0, 1.0]))
        singles.append(sitk.GetArrayFromImage(translate_image(image, one, device="cpu")))
    np.testing.assert_allclose(fused, np.mean(singles, axis=0), atol=1e-4)
    assert max(np.abs(a - b).max() for a, b in zip(singles, singles[1:])) > 1e-3  # the planes differ
    median = load_model(build_tiny_model(tmp_path / "median", planes=PLANES, spacing_mm=[1.0, 1.0],
                                         fusion="median"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(translate_image(image, median, device="cpu")),
                               np.median(singles, axis=0), atol=1e-4)


def test_thick_slices_run_only_in_their_acquisition_plane(three_plane_model):
    assert passes_for(isotropic_head(), three_plane_model.card) == PLANES
    assert passes_for(isotropic_head(slice_mm=2.0), three_plane_model.card) == PLANES  # 2 mm: all three
    assert passes_for(isotropic_head(0.8, slice_mm=6.5), three_plane_model.card) == ["axial"]
    assert passes_for(isotropic_head(3.0, slice_mm=6.0), three_plane_model.card) == ["axial"]  # the finest
    result = translate_image(oblique_volume(), three_plane_model, device="cpu")  # 0.9 x 1.3 x 2.5 mm, oblique
    assert result.GetSize() == oblique_volume().GetSize()


def test_a_thin_slab_runs_only_in_the_plane_its_slices_fill(tmp_path):
    """Through-plane slices narrower than half the network's size multiple would be mostly padding: a slab runs
    in its own plane only, and a plane that is wide enough still runs."""
    architecture = {"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 4, "norm": "batch",
                    "dropout": 0.0}  # size multiple 16: slices at least 8 pixels across
    fused = load_model(build_tiny_model(tmp_path / "fused", planes=PLANES, spacing_mm=[1.0, 1.0],
                                        architecture=architecture))
    axial = load_model(build_tiny_model(tmp_path / "axial", spacing_mm=[1.0, 1.0], architecture=architecture))
    slab = isotropic_head()[:, :, 9:15]  # 6 axial slices of 1 mm
    assert passes_for(slab, fused.card, 16) == ["axial"] and passes_for(slab, fused.card) == PLANES
    assert passes_for(isotropic_head(), fused.card, 16) == PLANES  # 24 pixels across: every plane
    np.testing.assert_array_equal(sitk.GetArrayFromImage(translate_image(slab, fused, device="cpu")),
                                  sitk.GetArrayFromImage(translate_image(slab, axial, device="cpu")))


@pytest.mark.parametrize("upsample", ["transpose", "transpose-blur", "resize", "pixelshuffle"])
def test_unet_upsampling_modes_fold_and_keep_shapes(upsample):
    spec = {"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 4, "norm": "batch", "dropout": 0.0,
            "upsample": upsample}
    network = build_network(spec, in_channels=1).eval()
    batch = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        plain = network(batch)
        folded = fold_batch_norms(copy.deepcopy(network))(batch)
    assert plain.shape == batch.shape
    torch.testing.assert_close(plain, folded, atol=1e-5, rtol=1e-4)
    kinds = {type(m).__name__ for m in network.modules()}
    assert ("ConvTranspose2d" in kinds) == upsample.startswith("transpose")
    # every batch norm folds away, those after a blur or a pixel shuffle too
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batch_norms(network).modules())


def test_resize_upsampling_has_no_checkerboard_from_a_constant_input():
    """A transposed conv of stride 2 turns a constant feature map into a 2-periodic pattern; bilinear + conv
    does not (inside the borders), nor does an ICNR-initialised sub-pixel conv, nor a transposed conv followed by
    the binomial blur."""
    from MedTranslateLib.networks.unet import up_layers

    torch.manual_seed(0)
    for upsample, periodic in (("transpose", True), ("resize", False), ("pixelshuffle", False),
                               ("transpose-blur", False)):
        layers = torch.nn.Sequential(*up_layers(3, 1, upsample))
        with torch.no_grad():
            out = layers(torch.ones(1, 3, 8, 8))[0, 0, 2:-2, 2:-2]
        spread = float(out.max() - out.min())
        assert (spread > 1e-3) == periodic, (upsample, spread)
