"""The CycleGAN ResNet generator (Zhu et al. 2017; Johnson et al. 2016)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .blur import BinomialBlur2d
from .norm import conv_bias, make_norm


class ResnetBlock(nn.Module):
    """Residual block at constant width; (B,C,H,W) -> (B,C,H,W), H and W >= 2.

    x + [reflect-pad 1, 3x3 conv, norm, ReLU, (dropout), reflect-pad 1, 3x3 conv, norm](x).
    """

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: List[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            make_norm(norm, channels),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN generator; (B,in_channels,H,W) -> (B,out_channels,H,W) in [-1, 1].

    H and W must be multiples of `size_multiple` (4: two stride-2 downsamplings).
    Layout: reflect-pad 3 + 7x7 conv (width), two stride-2 3x3 convs (2w, 4w),
    `n_blocks` residual blocks at 4w, two stride-2 3x3 transposed convs (2w, w),
    reflect-pad 3 + 7x7 conv (out_channels), Tanh. Each conv but the last is
    followed by norm and ReLU. The layer order matches the reference implementation,
    so its state_dict keys (`model.<i>...`) are the same. `upsample` "transpose-blur" follows each transposed
    conv by a fixed binomial low-pass (blur.BinomialBlur2d) that removes their 2-pixel checkerboard; the
    parameters stay the same, the layer indices after the first blur shift by one.
    """

    size_multiple = 4

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: float = 0.0,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if upsample not in ("transpose", "transpose-blur"):
            raise ValueError(f"upsample must be 'transpose' or 'transpose-blur', not '{upsample}'")
        bias = conv_bias(norm)
        layers: List[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, width, kernel_size=7, bias=bias),
            make_norm(norm, width),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(width * mult, width * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                make_norm(norm, width * mult * 2),
                nn.ReLU(inplace=True),
            ]
        layers += [ResnetBlock(width * 4, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(
                    width * mult, width * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                *([BinomialBlur2d(width * mult // 2)] if upsample == "transpose-blur" else []),
                make_norm(norm, width * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(width, out_channels, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,out_channels,H,W), H and W multiples of 4."""
        return self.model(x)
