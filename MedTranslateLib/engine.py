"""Slice-by-slice inference: (slices, rows, columns) array -> batches -> network -> output array.

Only one batch lives on the device at a time: memory is bounded by the batch, not the volume. Slices are
normalised and denormalised per batch, so the volume is never copied whole in the network's range.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .card import PAD_MODES
from .device import autocast_dtype
from .errors import TranslationError
from .networks import fold_batch_norms, instance_norms_as_group_norms, size_multiple
from .progress import ProgressCallback, check_cancel, report

# On the CPU a batch holds at most this many slice pixels (4 slices of 256 x 256): a 512 x 512 slice goes 1 at a
# time, so that the network's activations stay about the same size whatever the slices' size (on 2 Zen 4 cores
# batches of 4 run about 15 % faster than 8; a GPU keeps the batch asked for, halving it on out-of-memory). Light
# networks (pix2pix U-Nets) ran 5-12 % faster at 6 slices on a quiet machine but 45 % slower at 6 while the host
# was busy: 4 for every network.
CPU_BATCH_PIXELS = 4 * 256 * 256

ArrayMap = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EngineOptions:
    """How to run: slices per batch, autocast precision, test-time mirroring, memory layout, compilation."""

    batch_size: int = 8
    precision: str = "auto"
    tta: bool = False
    channels_last: bool = True
    compile: bool = False


def slice_indices(count: int, context: int, batch: np.ndarray) -> np.ndarray:
    """(B,) slice numbers -> (B, 2k+1) neighbour numbers, clamped at the volume's ends."""
    offsets = np.arange(-context, context + 1)
    return np.clip(batch[:, None] + offsets[None, :], 0, count - 1)


def context_stack(source: np.ndarray, numbers: np.ndarray, context: int, step: float = 1.0) -> np.ndarray:
    """(B,) slice numbers of `source` (S, H, W) -> (B, 2k+1, H, W): each slice with its ±k neighbours `step`
    slices apart, clamped at the volume's ends; a fractional step interpolates linearly between slices
    (float32), a step of 1 gathers the slices as they are."""
    if step == 1.0:
        return source[slice_indices(len(source), context, numbers)]
    positions = np.clip(numbers[:, None] + step * np.arange(-context, context + 1)[None, :], 0, len(source) - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, len(source) - 1)
    weight = (positions - lower).astype(np.float32)[:, :, None, None]
    return (1.0 - weight) * source[lower].astype(np.float32) + weight * source[upper].astype(np.float32)


def pad_to_multiple(batch: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H', W') with H', W' multiples of `multiple`, centred; `mode` (PAD_MODES):
    "reflect", mirrored borders (replicated where a mirror would not fit), or "background", the value -1."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode '{mode}' is unknown (known: {', '.join(PAD_MODES)})")
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not pad_h and not pad_w:
        return batch
    sides = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    if mode == "background":
        return F.pad(batch, sides, value=-1.0)
    return F.pad(batch, sides, mode="reflect" if pad_h < height and pad_w < width else "replicate")


def crop_to(batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo `pad_to_multiple`: (B, C, H', W') -> (B, C, height, width)."""
    top = (batch.shape[-2] - height) // 2
    left = (batch.shape[-1] - width) // 2
    return batch[..., top:top + height, left:left + width]


class SliceEngine:
    """Runs a 2D network over the slices of a volume, batch by batch, on one device."""

    def __init__(self, network: torch.nn.Module, device: torch.device, context: int = 0,
                 options: EngineOptions = EngineOptions(), pad: str = "reflect") -> None:
        """`pad`: how slices are padded to the network's size multiple (the model card's `pad`, as its training
        crops were)."""
        self.device = device
        self.context = context
        self.pad = pad
        self.options = options
        self.multiple = size_multiple(network)
        self.eager_network = network
        try:
            self.network = self._prepare(network)
        except torch.cuda.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            self._run_on_cpu("CUDA out of memory placing the network's weights")
        self.compiled_unproven = options.compile

    def _prepare(self, network: torch.nn.Module, compile: Optional[bool] = None) -> Any:
        original = network
        network = instance_norms_as_group_norms(fold_batch_norms(network.eval()))
        self.bf16_weights = self._bf16_weights(network)
        weights = next(network.parameters(), None)
        moves = weights is not None and weights.device != self.device
        if network is original and (moves or self.bf16_weights):
            network = copy.deepcopy(network)  # Module.to works in place: the caller's network keeps its weights
        network = network.to(self.device)
        if self.bf16_weights:
            network = network.to(torch.bfloat16)
        if self.options.channels_last:
            network = network.to(memory_format=torch.channels_last)
        if self.options.compile if compile is None else compile:
            return torch.compile(network)
        return network

    def run(self, source: np.ndarray, output: np.ndarray, normalize: ArrayMap, denormalize: ArrayMap,
            progress: Optional[ProgressCallback] = None, cancel: Any = None, mirror_context: bool = False,
            accumulate: bool = False, context_step: float = 1.0) -> None:
        """Fill `output` (S, H, W, writable) from `source` (S, H, W, any dtype), or add to it (`accumulate`: the
        passes of a fused translation summed in one volume); both may be strided views.

        `normalize` maps source units to [-1, 1]; `denormalize` maps network output back to units.
        `mirror_context`: the left-right mirror of test-time augmentation reverses the context channels
        (sagittal slices) instead of flipping columns (axial and coronal). `context_step`: how many slices apart
        the context neighbours lie (context_stack).
        """
        count = source.shape[0]
        batch_size = max(1, self.options.batch_size)
        if self.device.type == "cpu":  # activations grow with the slice: large slices go fewer at a time
            batch_size = max(1, min(batch_size, CPU_BATCH_PIXELS // max(1, source.shape[-1] * source.shape[-2])))
        start = 0
        report(progress, "translating", 0, count)
        while start < count:
            check_cancel(cancel)
            numbers = np.arange(start, min(start + batch_size, count))
            batch = slice(start, numbers[-1] + 1)  # a view where no neighbour is needed, else a gather
            stack = source[batch, None] if self.context == 0 else context_stack(source, numbers, self.context,
                                                                                 context_step)
            inputs = normalize(stack)  # (B, 2k+1, H, W)
            try:
                result = self._infer(inputs, mirror_context)
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cpu" and batch_size == 1:
                    raise
                batch_size = self._after_out_of_memory(batch_size)
                continue
            except Exception as error:  # torch.compile fails on its first call without a working compiler
                if not self.compiled_unproven:
                    raise
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); running eagerly")
                self.network = self._prepare(self.eager_network, compile=False)
                self.compiled_unproven = False
                continue
            self.compiled_unproven = False
            if not np.isfinite(result.sum(dtype=np.float64)):  # NaN or infinite exactly when a value is
                raise TranslationError(f"the network produced NaN or infinite values on slices {numbers[0]}-"
                                       f"{numbers[-1]}; nothing was written (broken weights, or an input far "
                                       "outside what the model knows)")
            if accumulate:
                output[batch] += denormalize(result)
            else:
                output[batch] = denormalize(result)
            start = numbers[-1] + 1
            report(progress, "translating", int(start), count)

    def _bf16_weights(self, network: torch.nn.Module) -> bool:
        """True when bf16 on the CPU can run with the weights cast once instead of autocast: no normalisation
        layer is left after folding but GroupNorm (instance norms become GroupNorms: networks.fusion), whose CPU
        kernel takes bf16 and accumulates its statistics in float32; autocast would keep it in float32, with a
        round trip per layer. CPU autocast also casts the weights again on every batch (17 % of the pix2pix
        U-Net's time); the convolutions compute in bf16 either way."""
        if self.device.type != "cpu" or autocast_dtype(self.device, self.options.precision) != torch.bfloat16:
            return False
        norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm)
        return not any(isinstance(module, norms) for module in network.modules())

    def _after_out_of_memory(self, batch_size: int) -> int:
        """The batch size to retry with: half, or 1 on the CPU once a single slice does not fit."""
        torch.cuda.empty_cache()
        if batch_size > 1:
            warnings.warn(f"CUDA out of memory at batch {batch_size}; retrying with batch {batch_size // 2}")
            return batch_size // 2
        self._run_on_cpu("CUDA out of memory at batch 1")
        return 1

    def _run_on_cpu(self, reason: str) -> None:
        torch.cuda.empty_cache()
        warnings.warn(f"{reason}; continuing on the CPU")
        self.device = torch.device("cpu")
        self.network = self._prepare(self.eager_network)

    @torch.inference_mode()
    def _infer(self, inputs: np.ndarray, mirror_context: bool = False) -> np.ndarray:
        """(B, C, H, W) float32 in [-1, 1] -> (B, H, W) float32 network output."""
        height, width = inputs.shape[-2:]
        batch = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(inputs)), self.multiple, self.pad)
        batch = batch.to(self.device, non_blocking=True)
        if self.options.tta:
            mirrored = batch.flip(1) if mirror_context else batch.flip(-1)
            batch = torch.cat([batch, mirrored])
        if self.options.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        dtype = autocast_dtype(self.device, self.options.precision)
        if self.bf16_weights:  # weights already bf16 (see _bf16_weights): the input follows, no autocast
            batch, dtype = batch.to(torch.bfloat16), None
        autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            result = self.network(batch)[:, 0].float()
        if self.options.tta:
            plain, mirrored = result.chunk(2)
            result = (plain + (mirrored if mirror_context else mirrored.flip(-1))) / 2
        return crop_to(result, height, width).cpu().numpy()
