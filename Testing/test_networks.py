"""Tests for MedTranslateLib.networks: shapes, ranges, receptive fields, the factory, gradients."""
from __future__ import annotations

import copy
from typing import Tuple

import numpy as np
import pytest
import torch
from torch import nn

from MedTranslateLib.engine import EngineOptions, SliceEngine
from MedTranslateLib.networks import (
    ARCHITECTURES,
    CasNet,
    ClassicUNet,
    PatchDiscriminator,
    ResnetGenerator,
    UNetGenerator,
    build_network,
    fold_batch_norms,
    instance_norms_as_group_norms,
    make_norm,
    receptive_field,
    size_multiple,
)

torch.manual_seed(0)

# Small generators, each with the input sizes it must accept: (batch, H, W), multiples of its size_multiple.
GENERATORS = {
    "resnet": (lambda i, o: ResnetGenerator(i, o, width=8, n_blocks=2), [(1, 32, 32), (2, 64, 96), (1, 20, 36)]),
    "resnet-batch-dropout": (
        lambda i, o: ResnetGenerator(i, o, width=8, n_blocks=1, norm="batch", dropout=0.5),
        [(2, 32, 32)],
    ),
    "unet": (lambda i, o: UNetGenerator(i, o, width=8, num_downs=5), [(1, 32, 32), (2, 64, 96)]),
    "unet-instance": (lambda i, o: UNetGenerator(i, o, width=8, num_downs=4, norm="instance"), [(2, 32, 48)]),
    "unet-256": (lambda i, o: UNetGenerator(i, o, width=4, num_downs=8), [(1, 256, 256)]),
    "classic": (lambda i, o: ClassicUNet(i, o, width=8, depth=3), [(1, 16, 16), (2, 64, 96)]),
    "classic-9-stage": (lambda i, o: ClassicUNet(i, o, width=4), [(2, 32, 48)]),
    "classic-pixelshuffle": (lambda i, o: ClassicUNet(i, o, width=8, depth=3, upsample="pixelshuffle"),
                             [(1, 16, 16), (2, 64, 96)]),
    "casnet": (lambda i, o: CasNet(i, o, n_blocks=2, width=4, num_downs=4), [(1, 16, 16), (2, 64, 96)]),
}
CASES = [(name, shape) for name, (_, shapes) in GENERATORS.items() for shape in shapes]


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{b}x{h}x{w}" for n, (b, h, w) in CASES])
@pytest.mark.parametrize("in_channels", [1, 3, 5])
def test_generator_shape_and_range(name: str, shape: Tuple[int, int, int], in_channels: int) -> None:
    make, _ = GENERATORS[name]
    net = make(in_channels, 1)
    batch, height, width = shape
    assert height % size_multiple(net) == 0 and width % size_multiple(net) == 0
    with torch.no_grad():
        out = net(torch.randn(batch, in_channels, height, width))
    assert out.shape == (batch, 1, height, width)
    assert torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1  # all these end in Tanh


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generator_two_output_channels_in_eval_mode(name: str) -> None:
    make, shapes = GENERATORS[name]
    net = make(3, 2).eval()
    _, height, width = shapes[0]
    with torch.no_grad():
        out = net(torch.randn(1, 3, height, width))
    assert out.shape == (1, 2, height, width)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_gradient_reaches_first_layer(name: str) -> None:
    make, shapes = GENERATORS[name]
    net = make(3, 1)
    batch, height, width = shapes[-1]
    net(torch.randn(batch, 3, height, width)).square().mean().backward()
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 3
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_classic_unet_without_activation_is_unbounded() -> None:
    net = ClassicUNet(1, 1, width=4, depth=2, final_activation="none")
    with torch.no_grad():
        net.head.bias.fill_(5.0)
        out = net(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 1, 8, 8)
    assert out.max() > 1


def test_classic_unet_upsampling_choices() -> None:
    """"transpose" keeps the paper's bare 2x2 transposed convs (the weight names shipped packages hold);
    "pixelshuffle" has none and starts as nearest-neighbour upsampling: every 2x2 output block of an up stage
    is one value per channel, no 2-pixel grid."""
    transpose = ClassicUNet(1, 1, width=4, depth=3)
    assert {"ups.0.weight", "ups.1.bias"} <= set(transpose.state_dict())
    torch.manual_seed(0)
    shuffle = ClassicUNet(1, 1, width=4, depth=3, upsample="pixelshuffle")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in shuffle.modules())
    with torch.no_grad():
        up = shuffle.ups[0](torch.randn(1, 16, 6, 6))
    assert up.shape == (1, 8, 12, 12)
    torch.testing.assert_close(up, up[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_size_multiples() -> None:
    assert ResnetGenerator.size_multiple == 4
    assert size_multiple(ResnetGenerator(width=4, n_blocks=1)) == 4
    assert size_multiple(UNetGenerator(width=4, num_downs=8)) == 256
    assert size_multiple(UNetGenerator(width=4, num_downs=3)) == 8
    assert size_multiple(ClassicUNet(width=4)) == 16
    assert size_multiple(ClassicUNet(width=4, depth=3)) == 4
    assert size_multiple(CasNet(n_blocks=1, width=4, num_downs=6)) == 64
    assert size_multiple(PatchDiscriminator(width=4)) == 1
    assert size_multiple(nn.Conv2d(1, 1, 3)) == 1


def test_constructor_value_errors() -> None:
    with pytest.raises(ValueError, match="num_downs"):
        UNetGenerator(num_downs=1)
    with pytest.raises(ValueError, match="depth"):
        ClassicUNet(depth=1)
    with pytest.raises(ValueError, match="final_activation 'relu'"):
        ClassicUNet(final_activation="relu")
    with pytest.raises(ValueError, match="n_blocks"):
        CasNet(n_blocks=0)
    with pytest.raises(ValueError, match="residual CasNet needs out_channels 1"):
        CasNet(out_channels=2, residual=True)
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(n_layers=0)
    with pytest.raises(ValueError, match="norm 'group'"):
        ResnetGenerator(norm="group")


def test_make_norm() -> None:
    assert isinstance(make_norm("batch", 4), nn.BatchNorm2d)
    instance = make_norm("instance", 4)
    assert isinstance(instance, nn.InstanceNorm2d)
    assert not instance.affine and not instance.track_running_stats
    assert isinstance(make_norm("none", 4), nn.Identity)
    with pytest.raises(ValueError, match=r"unknown norm 'layer' \(known: batch, instance, none\)"):
        make_norm("layer", 4)


def test_unet_dropout_placement_follows_pix2pix() -> None:
    def dropouts(net: nn.Module) -> int:
        return sum(isinstance(m, nn.Dropout) for m in net.modules())

    assert dropouts(UNetGenerator(width=2, num_downs=8)) == 3
    assert dropouts(UNetGenerator(width=2, num_downs=7)) == 2
    assert dropouts(UNetGenerator(width=2, num_downs=5)) == 0
    assert dropouts(UNetGenerator(width=2, num_downs=8, dropout=0.0)) == 0


def test_unet_widths_are_capped_at_eight_times_width() -> None:
    net = UNetGenerator(3, 2, width=2, num_downs=8)
    down = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in down] == [2, 4, 8, 16, 16, 16, 16, 16]
    assert down[0].in_channels == 3


def test_resnet_parameter_count_is_analytic() -> None:
    # The brief's 11,378,433 does not match the architecture. With instance norm (affine=False: no
    # norm parameters) every conv has a bias; conv(c_in, c_out, k) holds c_in*c_out*k*k + c_out:
    #   7x7 1->64:            1*64*49 + 64     =      3,200
    #   3x3 64->128 stride 2: 64*128*9 + 128   =     73,856
    #   3x3 128->256 stride 2: 128*256*9 + 256 =    295,168
    #   9 blocks x 2 x (256*256*9 + 256)       = 10,621,440
    #   3x3 transposed 256->128: 256*128*9+128 =    295,040
    #   3x3 transposed 128->64: 128*64*9 + 64  =     73,792
    #   7x7 64->1:            64*1*49 + 1      =      3,137
    #   total                                  = 11,365,633
    # (for 3->3 channels the same sum gives 11,378,179, the familiar "11.378 M" of CycleGAN).
    def count(in_channels: int, out_channels: int, w: int = 64, blocks: int = 9) -> int:
        def conv(c_in: int, c_out: int, k: int) -> int:
            return c_in * c_out * k * k + c_out

        return (
            conv(in_channels, w, 7)
            + conv(w, 2 * w, 3)
            + conv(2 * w, 4 * w, 3)
            + blocks * 2 * conv(4 * w, 4 * w, 3)
            + conv(4 * w, 2 * w, 3)
            + conv(2 * w, w, 3)
            + conv(w, out_channels, 7)
        )

    assert count(1, 1) == 11_365_633
    assert count(3, 3) == 11_378_179
    for channels in ((1, 1), (3, 3)):
        net = ResnetGenerator(*channels, width=64, n_blocks=9)
        assert sum(p.numel() for p in net.parameters()) == count(*channels)


def test_patchgan_70x70_gives_30x30_grid() -> None:
    net = PatchDiscriminator(in_channels=2, width=8, n_layers=3)
    with torch.no_grad():
        out = net(torch.randn(2, 2, 256, 256))
    assert out.shape == (2, 1, 30, 30)


def test_receptive_field_values() -> None:
    assert receptive_field(3) == 70
    assert receptive_field(1) == 16
    assert receptive_field(2) == 34


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_receptive_field_matches_gradient_support(n_layers: int) -> None:
    # One interior logit depends on exactly a receptive_field(n_layers)-wide square of the input.
    net = PatchDiscriminator(in_channels=1, width=4, n_layers=n_layers, norm="none")
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = net(x)
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == receptive_field(n_layers)
    assert int(cols[-1] - cols[0]) + 1 == receptive_field(n_layers)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
def test_patchgan_features(n_layers: int) -> None:
    net = PatchDiscriminator(in_channels=3, width=4, n_layers=n_layers)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = net.features(x)
        logits = net(x)
    assert len(features) == n_layers + 2
    assert torch.equal(features[-1], logits)
    assert logits.shape[:2] == (2, 1)
    assert features[0].shape == (2, 4, 32, 32)
    assert all(f.shape[0] == 2 for f in features)


BUILD_SPECS = [
    ({"name": "resnet", "width": 8, "n_blocks": 1}, ResnetGenerator, 32),
    ({"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 4, "norm": "instance"}, UNetGenerator, 16),
    ({"name": "unet", "width": 4, "num_downs": 4}, UNetGenerator, 16),
    ({"name": "unet", "variant": "classic", "width": 4, "depth": 3, "final_activation": "none"}, ClassicUNet, 16),
    ({"name": "casnet", "n_blocks": 2, "width": 4, "num_downs": 4, "dropout": 0}, CasNet, 16),
]


@pytest.mark.parametrize("spec,cls,size", BUILD_SPECS, ids=[s["name"] + "-" + str(s.get("variant")) for s, _, _ in BUILD_SPECS])
def test_factory_builds_generators(spec: dict, cls: type, size: int) -> None:
    original = dict(spec)
    net = build_network(spec, in_channels=3, out_channels=1)
    assert spec == original  # the card's dict is not consumed
    assert type(net) is cls
    assert size % size_multiple(net) == 0
    with torch.no_grad():
        assert net(torch.randn(1, 3, size, size)).shape == (1, 1, size, size)


def test_factory_builds_patchgan() -> None:
    net = build_network({"name": "patchgan", "width": 4, "n_layers": 2, "norm": "instance"}, in_channels=4)
    assert isinstance(net, PatchDiscriminator)
    with torch.no_grad():
        assert net(torch.randn(1, 4, 64, 64)).shape == (1, 1, 14, 14)


def test_factory_covers_every_architecture() -> None:
    assert set(ARCHITECTURES) == {"resnet", "unet", "casnet", "patchgan"}


BAD_SPECS = [
    ({"name": "xyz"}, r"unknown architecture 'xyz' \(known: resnet, unet, casnet, patchgan\)"),
    ({"width": 8}, r"unknown architecture 'None'"),
    ({"name": "unet", "variant": "attention"}, r"unknown unet variant 'attention' \(known: pix2pix, classic\)"),
    ({"name": "resnet", "depth": 3}, r"unknown argument 'depth' for architecture 'resnet'"),
    ({"name": "resnet", "variant": "classic"}, r"unknown argument 'variant' for architecture 'resnet'"),
    ({"name": "unet", "variant": "classic", "num_downs": 3}, r"unknown argument 'num_downs' for architecture 'unet/classic'"),
    ({"name": "casnet", "in_channels": 3}, r"'in_channels' must not appear in the spec of architecture 'casnet'"),
    ({"name": "resnet", "out_channels": 1}, r"'out_channels' must not appear in the spec of architecture 'resnet'"),
    ({"name": "resnet", "width": "64"}, r"argument 'width' of architecture 'resnet' must be an integer"),
    ({"name": "resnet", "width": 64.0}, r"argument 'width' of architecture 'resnet' must be an integer"),
    ({"name": "patchgan", "n_layers": True}, r"argument 'n_layers' of architecture 'patchgan' must be an integer"),
    ({"name": "casnet", "dropout": "0.5"}, r"argument 'dropout' of architecture 'casnet' must be a number"),
    ({"name": "casnet", "residual": 1}, r"argument 'residual' of architecture 'casnet' must be true or false"),
    ({"name": "unet", "norm": 1}, r"argument 'norm' of architecture 'unet/pix2pix' must be a string"),
    ({"name": "resnet", "norm": "group"}, r"unknown norm 'group'"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS)
def test_factory_rejects_bad_specs(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_network(spec, in_channels=1)


def test_factory_rejects_non_dict_spec() -> None:
    with pytest.raises(ValueError, match="must be a dict"):
        build_network("resnet", in_channels=1)  # type: ignore[arg-type]


def test_build_network_defaults_are_the_constructors() -> None:
    net = build_network({"name": "resnet"}, in_channels=1)
    assert sum(p.numel() for p in net.parameters()) == 11_365_633


@pytest.mark.parametrize("in_channels,upsample", [(1, "transpose"), (3, "transpose"), (1, "pixelshuffle")])
def test_residual_casnet_starts_as_identity_and_learns_the_correction(in_channels: int, upsample: str) -> None:
    torch.manual_seed(0)
    net = build_network({"name": "casnet", "n_blocks": 2, "width": 4, "num_downs": 4, "residual": True,
                         "upsample": upsample}, in_channels=in_channels)
    if upsample == "pixelshuffle":  # sub-pixel convs in every block: no transposed convolution left
        assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    x = torch.rand(2, in_channels, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), x[:, in_channels // 2 : in_channels // 2 + 1])
    target = x[:, in_channels // 2 : in_channels // 2 + 1] * 0.5
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = (net(x) - target).abs().mean()
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.75 * first
    for block in net.blocks:  # every block refines the image: each one's correction has learned
        assert not torch.equal(block.final_conv().weight, torch.zeros_like(block.final_conv().weight))


def test_residual_casnet_blocks_refine_the_previous_estimate() -> None:
    torch.manual_seed(0)
    net = build_network({"name": "casnet", "n_blocks": 3, "width": 4, "num_downs": 4, "residual": True},
                        in_channels=3).eval()
    for block in net.blocks:
        nn.init.normal_(block.final_conv().weight, std=0.1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = x[:, 1:2] + net.blocks[0](x)
        for block in net.blocks[1:]:
            expected = expected + block(expected)
        torch.testing.assert_close(net(x), expected)
        assert not torch.allclose(net(x), x[:, 1:2] + net.blocks(x))


@pytest.mark.parametrize("spec", [
    {"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 5, "norm": "batch"},
    {"name": "unet", "variant": "classic", "width": 4, "depth": 3, "norm": "batch"},
    {"name": "unet", "variant": "classic", "width": 4, "depth": 3, "norm": "batch", "upsample": "pixelshuffle"},
    {"name": "casnet", "n_blocks": 2, "width": 4, "num_downs": 4, "norm": "batch", "residual": True},
    {"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 5, "norm": "batch", "upsample": "pixelshuffle"},
    {"name": "unet", "variant": "pix2pix", "width": 4, "num_downs": 5, "norm": "batch", "upsample": "resize"},
    {"name": "casnet", "n_blocks": 2, "width": 4, "num_downs": 4, "norm": "batch", "upsample": "pixelshuffle"},
    {"name": "casnet", "n_blocks": 2, "width": 4, "num_downs": 4, "norm": "batch", "upsample": "transpose-blur"},
])
def test_folding_batch_norms_keeps_the_output_and_the_original(spec: dict) -> None:
    torch.manual_seed(0)
    net = build_network(spec, in_channels=1).eval()
    for module in net.modules():  # trained-looking statistics, not the identity defaults
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batch_norms(net)
    assert folded is not net and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_folding_leaves_networks_without_batch_norm_alone() -> None:
    net = build_network({"name": "resnet", "width": 4, "n_blocks": 1, "norm": "instance"}, in_channels=1)
    assert fold_batch_norms(net) is net


@pytest.mark.parametrize("spec", [
    {"name": "resnet", "width": 4, "n_blocks": 2, "norm": "instance"},
    {"name": "unet", "width": 4, "num_downs": 5, "norm": "instance"},
])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norms_become_the_group_norms_they_equal(spec: dict, affine: bool) -> None:
    torch.manual_seed(0)
    net = build_network(spec, in_channels=1).eval()
    if affine:  # an InstanceNorm with learned scale and shift keeps them
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.InstanceNorm2d):
                    norm = nn.InstanceNorm2d(child.num_features, affine=True)
                    norm.weight.data.uniform_(0.5, 1.5)
                    norm.bias.data.uniform_(-0.2, 0.2)
                    setattr(parent, name, norm)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    swapped = instance_norms_as_group_norms(net)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in swapped.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in swapped.modules())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), net(x), atol=1e-5, rtol=1e-4)
        channels_last = copy.deepcopy(swapped).to(memory_format=torch.channels_last)
        torch.testing.assert_close(channels_last(x.contiguous(memory_format=torch.channels_last)), net(x),
                                   atol=1e-5, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    plain = build_network({"name": "unet", "width": 4, "num_downs": 5, "norm": "batch"}, in_channels=1)
    assert instance_norms_as_group_norms(plain) is plain


def test_the_engine_runs_instance_norm_networks_with_bf16_weights_on_bf16_cpus() -> None:
    """No autocast round trip for instance norms: the weights are cast once (GroupNorm takes bf16), and the
    result stays within bf16's rounding of the float32 network."""
    torch.manual_seed(0)
    net = build_network({"name": "resnet", "width": 8, "n_blocks": 2, "norm": "instance"}, in_channels=1).eval()
    engine = SliceEngine(net, torch.device("cpu"), options=EngineOptions(batch_size=2, precision="bf16"))
    assert engine.bf16_weights
    assert all(p.dtype == torch.bfloat16 for p in engine.network.parameters())
    source = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    output = np.zeros_like(source)
    engine.run(source, output, lambda a: a * 2 - 1, lambda a: a)
    with torch.no_grad():
        reference = net(torch.from_numpy(source[:, None] * 2 - 1))[:, 0].numpy()
    assert np.abs(output - reference).mean() < 0.02


def test_resize_upsampling_is_band_limited_and_pixelshuffle_is_not() -> None:
    """Fitting a pixel-level random image: the U-Net's outermost decoder works on a half-resolution grid, so with
    bilinear + conv ("resize") its output cannot hold detail at the full resolution; sub-pixel convolution can."""
    final = {}
    for upsample in ("resize", "pixelshuffle"):
        torch.manual_seed(0)
        net = build_network({"name": "unet", "width": 8, "num_downs": 4, "norm": "none", "upsample": upsample},
                            in_channels=1)
        x = torch.rand(2, 1, 32, 32) * 2 - 1
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(80):
            loss = (net(x) - x * 0.9).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        final[upsample] = loss.item()
    assert final["pixelshuffle"] < 0.5 * final["resize"], final


def test_icnr_starts_as_nearest_neighbour_upsampling() -> None:
    """A sub-pixel conv with ICNR gives each 2x2 output block one value: no checkerboard at the start."""
    from MedTranslateLib.networks.unet import up_layers

    torch.manual_seed(0)
    layers = torch.nn.Sequential(*up_layers(3, 2, "pixelshuffle"))
    y = layers(torch.randn(1, 3, 8, 8))
    assert y.shape == (1, 2, 16, 16)
    blocks = y.reshape(1, 2, 8, 2, 8, 2)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))


def test_resnet_generator_transpose_blur_keeps_the_parameters_and_loses_the_checkerboard() -> None:
    """The CycleGAN generator's "transpose-blur" has the paper's parameters; with the same weights a constant
    input gives a 2-periodic pattern through the plain transposed convs and a flat interior through the blurred."""
    torch.manual_seed(0)
    plain = ResnetGenerator(1, 1, width=4, n_blocks=1, norm="batch").eval()
    blurred = ResnetGenerator(1, 1, width=4, n_blocks=1, norm="batch", upsample="transpose-blur").eval()
    assert [p.shape for p in plain.parameters()] == [p.shape for p in blurred.parameters()]
    with torch.no_grad():
        for source, target in zip(plain.parameters(), blurred.parameters()):
            target.copy_(source)
        flat = torch.ones(1, 1, 64, 64)
        interiors = [net(flat)[0, 0, 20:-20, 20:-20] for net in (plain, blurred)]
    spreads = [float(out.max() - out.min()) for out in interiors]
    assert spreads[0] > 1e-3 and spreads[1] < 1e-5, spreads
    with pytest.raises(ValueError, match="upsample must be"):
        ResnetGenerator(upsample="resize")
