"""The slice engine equals a plain per-slice loop; padding, context, mirroring, progress and cancel."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from MedTranslateLib.engine import (EngineOptions, SliceEngine, context_stack, crop_to, pad_to_multiple,
                                    slice_indices)
from MedTranslateLib.errors import TranslationCancelled
from MedTranslateLib.intensity import IntensityRange
from MedTranslateLib.networks import build_network

SOURCE_RANGE = IntensityRange(0.0, 500.0)
TARGET_RANGE = IntensityRange(-1024.0, 3071.0)
FP32 = EngineOptions(precision="fp32")  # the mechanics are compared with float32 loops; bf16 has its own test


def network(in_channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network({"name": "unet", "variant": "classic", "width": 4, "depth": 3, "norm": "batch"},
                        in_channels=in_channels)
    for module in net.modules():  # non-trivial running statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def plain_loop(net: torch.nn.Module, volume: np.ndarray, context: int, pad: str = "reflect") -> np.ndarray:
    """The reference: one slice at a time, float32, no tricks."""
    out = np.empty(volume.shape, np.float32)
    for index in range(volume.shape[0]):
        channels = [volume[min(max(index + o, 0), volume.shape[0] - 1)] for o in range(-context, context + 1)]
        x = torch.from_numpy(SOURCE_RANGE.to_network(np.stack(channels)[None]))
        with torch.no_grad():
            y = crop_to(net(pad_to_multiple(x, 4, pad)), *volume.shape[1:])
        out[index] = TARGET_RANGE.from_network(y[0, 0].numpy())
    return out


@pytest.mark.parametrize("context, batch_size, shape", [(0, 3, (7, 19, 26)), (1, 4, (9, 16, 16)),
                                                        (2, 16, (5, 33, 21))])
def test_engine_equals_plain_per_slice_loop(context, batch_size, shape):
    rng = np.random.default_rng(context)
    volume = rng.uniform(0, 600, shape).astype(np.float32)
    net = network(2 * context + 1)
    expected = plain_loop(net, volume, context)
    output = np.full(shape, np.nan, np.float32)
    engine = SliceEngine(net, torch.device("cpu"), context, EngineOptions(batch_size=batch_size, precision="fp32"))
    engine.run(volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    np.testing.assert_allclose(output, expected, atol=1e-2)  # HU units; float32 reassociation only


def test_engine_writes_through_strided_views():
    volume = np.random.default_rng(3).uniform(0, 500, (12, 10, 8)).astype(np.float32)
    net = network(1)
    expected = plain_loop(net, volume.transpose(2, 1, 0)[::-1], 0)
    output = np.zeros((12, 10, 8), np.float32)
    view = output.transpose(2, 1, 0)[::-1]
    SliceEngine(net, torch.device("cpu"), 0, FP32).run(volume.transpose(2, 1, 0)[::-1], view,
                                               SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    np.testing.assert_allclose(view, expected, atol=1e-2)


def test_mirroring_averages_with_the_mirrored_prediction():
    volume = np.random.default_rng(4).uniform(0, 500, (4, 16, 12)).astype(np.float32)
    net = network(1)
    plain = plain_loop(net, volume, 0)
    mirrored = plain_loop(net, volume[:, :, ::-1], 0)[:, :, ::-1]
    output = np.empty_like(volume)
    SliceEngine(net, torch.device("cpu"), 0, EngineOptions(tta=True, precision="fp32")).run(
        volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    np.testing.assert_allclose(output, (plain + mirrored) / 2, atol=1e-2)


def test_context_indices_clamp_at_the_ends():
    np.testing.assert_array_equal(slice_indices(5, 2, np.array([0, 4])), [[0, 0, 0, 1, 2], [2, 3, 4, 4, 4]])


def test_context_neighbours_a_fraction_of_a_slice_apart_are_interpolated():
    """Slices whose values are their numbers: neighbours `step` slices apart read number ± step, clamped."""
    volume = np.broadcast_to(np.arange(6, dtype=np.int16)[:, None, None], (6, 3, 4)).copy()
    numbers = np.array([0, 2, 5])
    np.testing.assert_array_equal(context_stack(volume, numbers, 1), volume[slice_indices(6, 1, numbers)])
    stack = context_stack(volume, numbers, 2, step=0.25)
    assert stack.shape == (3, 5, 3, 4) and stack.dtype == np.float32
    np.testing.assert_allclose(stack[:, :, 1, 2], [[0, 0, 0, 0.25, 0.5], [1.5, 1.75, 2, 2.25, 2.5],
                                                   [4.5, 4.75, 5, 5, 5]])
    np.testing.assert_allclose(context_stack(volume, numbers, 1, step=2.0)[:, :, 0, 0], [[0, 0, 2], [0, 2, 4],
                                                                                        [3, 5, 5]])


@pytest.mark.parametrize("height, width", [(1, 1), (7, 30), (16, 16), (3, 100)])
def test_pad_then_crop_is_identity(height, width):
    batch = torch.randn(2, 3, height, width)
    padded = pad_to_multiple(batch, 8)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert torch.equal(crop_to(padded, height, width), batch)


def test_background_padding_surrounds_the_slice_with_minus_one():
    batch = torch.rand(2, 1, 5, 13)
    padded = pad_to_multiple(batch, 8, "background")
    assert padded.shape == (2, 1, 8, 16)
    assert torch.equal(crop_to(padded, 5, 13), batch)
    border = torch.ones(8, 16, dtype=torch.bool)
    border[1:6, 1:14] = False  # centred: 1 row above, 2 below, 1 column left, 2 right
    assert torch.equal(padded[..., border], torch.full((2, 1, int(border.sum())), -1.0))
    with pytest.raises(ValueError, match="pad mode 'zeros'"):
        pad_to_multiple(batch, 8, "zeros")


def test_engine_pads_as_told_like_the_model_was_trained():
    volume = np.random.default_rng(7).uniform(0, 600, (4, 10, 13)).astype(np.float32)
    net = network(1)
    outputs = {}
    for pad in ("reflect", "background"):
        outputs[pad] = np.empty_like(volume)
        SliceEngine(net, torch.device("cpu"), 0, FP32, pad=pad).run(volume, outputs[pad], SOURCE_RANGE.to_network,
                                                           TARGET_RANGE.from_network)
        np.testing.assert_allclose(outputs[pad], plain_loop(net, volume, 0, pad), atol=1e-2)
    assert np.abs(outputs["reflect"] - outputs["background"]).max() > 1.0  # the borders reach the output


def test_progress_reports_every_batch_and_cancel_stops_within_one_batch():
    volume = np.random.default_rng(5).uniform(0, 500, (10, 8, 8)).astype(np.float32)
    output = np.zeros_like(volume)
    cancel = threading.Event()
    reports = []

    def progress(report):
        reports.append(report)
        if report.done >= 3:
            cancel.set()

    engine = SliceEngine(network(1), torch.device("cpu"), 0, EngineOptions(batch_size=3))
    with pytest.raises(TranslationCancelled):
        engine.run(volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network, progress, cancel)
    assert [(r.stage, r.done, r.total) for r in reports] == [("translating", 0, 10), ("translating", 3, 10)]
    assert np.all(output[3:] == 0)  # nothing after the first batch was computed


def test_cancel_accepts_a_callable():
    volume = np.ones((4, 8, 8), np.float32)
    with pytest.raises(TranslationCancelled):
        SliceEngine(network(1), torch.device("cpu")).run(volume, np.zeros_like(volume), SOURCE_RANGE.to_network,
                                                           TARGET_RANGE.from_network, cancel=lambda: True)


class RunsOutOfMemoryAbove(torch.nn.Module):
    """Stand-in for a GPU running out of memory (no GPU here): raises torch.OutOfMemoryError, as CUDA's
    allocator does, whenever a batch holds more than `limit` slices."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.size_multiple = net, limit, net.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_halves_the_batch():
    volume = np.random.default_rng(6).uniform(0, 500, (9, 16, 16)).astype(np.float32)
    net = network(1)
    expected = plain_loop(net, volume, 0)
    output = np.empty_like(volume)
    engine = SliceEngine(RunsOutOfMemoryAbove(net, 2), torch.device("cpu"), 0, EngineOptions(batch_size=8, precision="fp32"))
    with pytest.warns(UserWarning, match="retrying with batch 4") as caught:
        engine.run(volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    assert [str(w.message) for w in caught][-1].endswith("retrying with batch 2")
    np.testing.assert_allclose(output, expected, atol=1e-2)
    never = SliceEngine(RunsOutOfMemoryAbove(net, 0), torch.device("cpu"), 0, EngineOptions(batch_size=2, precision="fp32"))
    with pytest.warns(UserWarning, match="retrying with batch 1"), pytest.raises(torch.cuda.OutOfMemoryError):
        never.run(volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network)  # nowhere left to go


class NoRoomOnTheGpu(torch.nn.Module):
    """Stand-in for a GPU without room for the weights (no GPU here): moving it to any device but the CPU
    raises torch.OutOfMemoryError, as CUDA's allocator does."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.size_multiple = net, net.size_multiple

    def to(self, *args, **kwargs):
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None and device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().to(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_no_room_for_the_weights_on_the_gpu_runs_on_the_cpu():
    volume = np.random.default_rng(7).uniform(0, 500, (5, 16, 16)).astype(np.float32)
    net = network(1)
    with pytest.warns(UserWarning, match="placing the network's weights; continuing on the CPU"):
        engine = SliceEngine(NoRoomOnTheGpu(net), torch.device("cuda"), 0, EngineOptions(precision="fp32"))
    assert engine.device.type == "cpu"
    output = np.empty_like(volume)
    engine.run(volume, output, SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    np.testing.assert_allclose(output, plain_loop(net, volume, 0), atol=1e-2)


# --------------------------------------------------------------------------------------------- precision

def test_auto_precision_is_bf16_exactly_where_the_cpu_has_native_bf16(monkeypatch):
    import MedTranslateLib.device as device

    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        assert device.autocast_dtype(torch.device("cpu"), "auto") is expected
        assert device.autocast_dtype(torch.device("cpu"), "fp32") is None
        assert device.autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16


def test_the_cpu_flags_decide_native_bf16():
    """Read from /proc/cpuinfo on Linux: the flags avx512_bf16 / amx_bf16 (x86) or bf16 (Arm)."""
    from MedTranslateLib.device import cpu_has_native_bf16

    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.split(":")[0].strip() in ("flags", "Features")), []))
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def test_bf16_autocast_stays_close_to_float32():
    net = network(1)
    volume = np.random.default_rng(3).uniform(0, 500, (6, 64, 64)).astype(np.float32)
    outputs = {}
    for precision in ("fp32", "bf16"):
        outputs[precision] = np.zeros_like(volume)
        SliceEngine(net, torch.device("cpu"), 0, EngineOptions(precision=precision)).run(
            volume, outputs[precision], SOURCE_RANGE.to_network, TARGET_RANGE.from_network)
    span = TARGET_RANGE.high - TARGET_RANGE.low
    difference = np.abs(outputs["fp32"] - outputs["bf16"]) / span
    assert 0 < difference.mean() < 0.01  # bf16 really ran, and stayed within 1 % of the range
