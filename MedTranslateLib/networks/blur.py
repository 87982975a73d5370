"""A fixed anti-aliasing low-pass for upsampling layers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BinomialBlur2d(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] / 16 low-pass of every channel, (B,C,H,W) -> (B,C,H,W), edges replicated.
    Its response is zero at the Nyquist frequency, where a stride-2 transposed conv puts its checkerboard (the
    four sub-pixel phases' unequal gains): the anti-aliasing filter after upsampling of Zhang 2019 ("Making
    convolutional networks shift-invariant again") and StyleGAN2 (Karras et al. 2020). No parameters: the
    kernel is a non-persistent buffer, never saved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.to(x.dtype)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=kernel.shape[0])
