"""The pix2pix PatchGAN discriminator (NLayerDiscriminator) and its receptive field."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .norm import conv_bias, make_norm

KERNEL = 4
PADDING = 1


def _strides(n_layers: int) -> List[int]:
    """Strides of the discriminator's convs: n_layers stride-2, then two stride-1 (the last to logits)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int) -> int:
    """Side in pixels of the input patch that one output logit sees (70 for n_layers=3).

    Walking back from one output pixel, a conv of kernel k and stride s turns a field
    of r pixels into r*s + (k - s).
    """
    field = 1
    for stride in reversed(_strides(n_layers)):
        field = field * stride + (KERNEL - stride)
    return field


class PatchDiscriminator(nn.Module):
    """PatchGAN; (B,in_channels,H,W) -> (B,1,h,w) patch logits (no sigmoid).

    For conditional GANs, in_channels counts the condition and the image together.
    Each output logit judges a receptive_field(n_layers)-pixel square patch; with
    n_layers=3 a 256x256 input gives a 30x30 grid of 70x70 patches. Layout (4x4 convs,
    padding 1): conv stride 2 + LeakyReLU(0.2); n_layers-1 convs stride 2 doubling the
    width (capped at 8w) + norm + LeakyReLU; one conv stride 1 + norm + LeakyReLU; one conv
    stride 1 to 1 channel. The module tree matches the reference implementation's state_dict keys.
    """

    def __init__(self, in_channels: int = 2, width: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        bias = conv_bias(norm)
        strides = _strides(n_layers)
        channels = [in_channels] + [width * min(2**i, 8) for i in range(n_layers + 1)] + [1]
        layers: List[nn.Module] = []
        for i, stride in enumerate(strides):
            first, last = i == 0, i == len(strides) - 1
            layers.append(
                nn.Conv2d(
                    channels[i],
                    channels[i + 1],
                    kernel_size=KERNEL,
                    stride=stride,
                    padding=PADDING,
                    bias=bias or first or last,
                )
            )
            if not first and not last:
                layers.append(make_norm(norm, channels[i + 1]))
            if not last:
                layers.append(nn.LeakyReLU(0.2))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,1,h,w) logits."""
        return self.model(x)

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Activations after each LeakyReLU, then the logits: n_layers+2 tensors (B,C_i,h_i,w_i).

        MedGAN's perceptual loss compares these between real and translated images.
        """
        outputs: List[torch.Tensor] = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                outputs.append(x)
        outputs.append(x)
        return outputs
