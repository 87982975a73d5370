"""Inference-time folding of BatchNorm into the convolution before it."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _has_foldable_pair(network: nn.Module) -> bool:
    for module in network.modules():
        if isinstance(module, nn.Sequential):
            layers = list(module)
            if any(isinstance(a, _CONVS) and isinstance(b, nn.BatchNorm2d) for a, b in zip(layers, layers[1:])):
                return True
    return False


def _fold_in_place(module: nn.Module) -> None:
    for child in module.children():
        _fold_in_place(child)
    if not isinstance(module, nn.Sequential):
        return
    for index in range(len(module) - 1):
        conv, norm = module[index], module[index + 1]
        if isinstance(conv, _CONVS) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
            module[index] = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, nn.ConvTranspose2d))
            module[index + 1] = nn.Identity()


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of `network` with every (conv, BatchNorm2d) pair of a Sequential made one conv.

    In eval mode BatchNorm is an affine map per channel, so it folds into the weights and bias of the
    convolution (or transposed convolution) it follows: the same output (to float rounding) for one pass
    less over every feature map. `network` is left untouched; without such a pair it is returned as is.
    """
    if not _has_foldable_pair(network):
        return network
    folded = copy.deepcopy(network).eval()
    _fold_in_place(folded)
    return folded
