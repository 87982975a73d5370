"""MedGAN's CasNet generator (Armanious et al. 2020): U-blocks chained end to end."""
from __future__ import annotations

import torch
from torch import nn

from .unet import UNetGenerator


class CasNet(nn.Module):
    """Cascade of `n_blocks` pix2pix U-Nets; (B,in_channels,H,W) -> (B,out_channels,H,W) in [-1, 1].

    Block 1 maps in_channels -> out_channels; each following block maps
    out_channels -> out_channels, refining the previous block's output image.
    H and W must be multiples of `size_multiple` = 2**num_downs.

    `residual` (for same-modality tasks: denoising, artefact correction) makes every block a
    refinement of the image so far: y_0 is the input's centre channel (in_channels // 2, the
    slice itself when neighbours give context), y_1 = y_0 + block_1(x) and
    y_k = y_(k-1) + block_k(y_(k-1)), so each block learns only a correction of the previous
    estimate. The output is not clamped (each correction lies in [-1, 1]). Every block's final
    up-convolution starts at zero, so an untrained residual CasNet returns its input. Needs
    out_channels 1. `upsample`: "transpose" (the paper's), "transpose-blur" (the same, then a fixed binomial
    low-pass), "resize" (bilinear + 3x3 conv, no checkerboard) or "pixelshuffle" (sub-pixel conv, ICNR), as in
    UNetGenerator.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        n_blocks: int = 6,
        width: int = 32,
        num_downs: int = 8,
        norm: str = "batch",
        dropout: float = 0.0,
        residual: bool = False,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        if residual and out_channels != 1:
            raise ValueError(f"a residual CasNet needs out_channels 1, got {out_channels}")
        self.residual = residual
        self.centre = in_channels // 2
        self.size_multiple = 2**num_downs
        self.blocks = nn.Sequential(
            *(
                UNetGenerator(
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    width=width,
                    num_downs=num_downs,
                    norm=norm,
                    dropout=dropout,
                    upsample=upsample,
                )
                for i in range(n_blocks)
            )
        )
        if residual:
            for block in self.blocks:
                nn.init.zeros_(block.final_conv().weight)
                nn.init.zeros_(block.final_conv().bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,out_channels,H,W), H and W multiples of 2**num_downs."""
        if not self.residual:
            return self.blocks(x)
        image = x[:, self.centre : self.centre + 1] + self.blocks[0](x)
        for block in self.blocks[1:]:
            image = image + block(image)
        return image
