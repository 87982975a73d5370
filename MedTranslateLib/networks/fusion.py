"""Inference-time folding of BatchNorm into the convolution before it."""
from __future__ import annotations

import copy
from typing import List

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _foldable_pairs(module: nn.Module) -> List[int]:
    """Indices i of a Sequential where layer i is a conv and layer i + 1 a BatchNorm2d with running statistics."""
    if not isinstance(module, nn.Sequential):
        return []
    layers = list(module)
    return [index for index, (conv, norm) in enumerate(zip(layers, layers[1:]))
            if isinstance(conv, _CONVS) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats]


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of `network` with every (conv, BatchNorm2d) pair of a Sequential made one conv.

    In eval mode BatchNorm is an affine map per channel, so it folds into the weights and bias of the
    convolution (or transposed convolution) it follows: the same output (to float rounding) for one pass
    less over every feature map. `network` is left untouched; without such a pair it is returned as is.
    """
    if not any(_foldable_pairs(module) for module in network.modules()):
        return network
    folded = copy.deepcopy(network).eval()
    for module in list(folded.modules()):
        for index in _foldable_pairs(module):
            conv = module[index]
            module[index] = fuse_conv_bn_eval(conv, module[index + 1], transpose=isinstance(conv, nn.ConvTranspose2d))
            module[index + 1] = nn.Identity()
    return folded
