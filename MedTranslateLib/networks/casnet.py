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
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
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
                )
                for i in range(n_blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,out_channels,H,W), H and W multiples of 2**num_downs."""
        return self.blocks(x)
