"""Inference-time rewrites of a trained network that keep its outputs: BatchNorm folded into the convolution
before it, InstanceNorm run as the GroupNorm it equals."""
from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .blur import BinomialBlur2d

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _foldable_pairs(module: nn.Module) -> List[Tuple[int, int, int]]:
    """(conv, norm, repeat) indices in a Sequential where layer `conv` is a convolution and layer `norm` a
    BatchNorm2d with running statistics, either right after it (repeat 1), after a BinomialBlur2d between them
    (repeat 1: a per-channel affine map passes through a blur whose taps sum to 1) or after a PixelShuffle(r)
    (repeat r**2: the shuffle moves conv channels c*r**2 ... c*r**2 + r**2 - 1 into channel c)."""
    if not isinstance(module, nn.Sequential):
        return []
    layers = list(module)

    def batch_norm(index: int) -> bool:
        return (index < len(layers) and isinstance(layers[index], nn.BatchNorm2d)
                and layers[index].track_running_stats)

    pairs = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, _CONVS):
            continue
        if batch_norm(index + 1):
            pairs.append((index, index + 1, 1))
        elif index + 1 < len(layers) and isinstance(layers[index + 1], BinomialBlur2d) and batch_norm(index + 2):
            pairs.append((index, index + 2, 1))
        elif (index + 2 < len(layers) and isinstance(layers[index + 1], nn.PixelShuffle)
              and isinstance(layer, nn.Conv2d) and batch_norm(index + 2)):
            pairs.append((index, index + 2, layers[index + 1].upscale_factor ** 2))
    return pairs


def _per_conv_channel(values: Optional[torch.Tensor], repeat: int) -> Optional[torch.Tensor]:
    """A BatchNorm's per-channel values for the conv channels it covers (each `repeat` times: a PixelShuffle)."""
    return None if values is None else values.repeat_interleave(repeat)


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of `network` with every BatchNorm2d of a Sequential that follows a conv (directly, or
    through a PixelShuffle) folded into that conv.

    In eval mode BatchNorm is an affine map per channel, so it folds into the weights and bias of the
    convolution (or transposed convolution) it follows: the same output (to float rounding) for one pass
    less over every feature map. `network` is left untouched; without such a pair it is returned as is.
    """
    if not any(_foldable_pairs(module) for module in network.modules()):
        return network
    folded = copy.deepcopy(network).eval()
    for module in list(folded.modules()):
        for conv_index, norm_index, repeat in _foldable_pairs(module):
            conv, norm = module[conv_index], module[norm_index]  # folded in place: the copy is this call's own
            mean, var, weight, bias = (_per_conv_channel(values, repeat)
                                       for values in (norm.running_mean, norm.running_var, norm.weight, norm.bias))
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, mean, var, norm.eps, weight, bias,
                                                          transpose=isinstance(conv, nn.ConvTranspose2d))
            module[norm_index] = nn.Identity()
    return folded


def instance_norms_as_group_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of `network` with every InstanceNorm2d that keeps no running statistics made the
    GroupNorm of one channel per group that it equals (same statistics, same affine parameters).

    PyTorch's CPU GroupNorm has channels-last and bf16 kernels (statistics accumulated in float32); its
    InstanceNorm reshapes into a batch norm, with copies to and from channels-last and, under autocast, a
    float32 round trip: on 2 Zen 4 cores 4x64x256x256 channels-last takes 38 ms in bf16 as GroupNorm, 198 ms as
    InstanceNorm (392 ms in float32). `network` is left untouched; without such a layer it is returned as is.
    """
    def swappable(module: nn.Module) -> bool:
        return isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats

    if not any(swappable(module) for module in network.modules()):
        return network
    swapped = copy.deepcopy(network).eval()
    for parent in list(swapped.modules()):
        for name, child in list(parent.named_children()):
            if swappable(child):
                group = nn.GroupNorm(child.num_features, child.num_features, eps=child.eps, affine=child.affine)
                if child.affine:
                    group = group.to(device=child.weight.device, dtype=child.weight.dtype)
                    group.weight.data.copy_(child.weight.data)
                    group.bias.data.copy_(child.bias.data)
                setattr(parent, name, group)
    return swapped
