"""U-Net generators: the pix2pix U-Net (Isola et al. 2017) and the classic 9-stage U-Net (Dong et al. 2020)."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from .blur import BinomialBlur2d
from .norm import conv_bias, make_norm

FINAL_ACTIVATIONS = ("tanh", "none")
# 4x4 stride-2 transposed convs (pix2pix); the same followed by a fixed binomial low-pass; bilinear x2 then a 3x3
# conv; or a 3x3 conv to 4x the channels then pixel shuffle, initialised as nearest-neighbour upsampling (ICNR)
UPSAMPLING = ("transpose", "transpose-blur", "resize", "pixelshuffle")


def icnr_(conv: nn.Conv2d, factor: int = 2) -> None:
    """ICNR initialisation (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"): the
    factor² sub-pixel filters of every output channel start equal, so conv + PixelShuffle(factor) begins as a
    conv followed by nearest-neighbour upsampling (no checkerboard), and learns sub-pixel detail from there."""
    if conv.weight.is_meta:  # a network built only to be counted; normal_ on the meta device would import
        return               # TorchDynamo (1 s here, 5 s on a GPU machine: every load_model paid it)
    groups = factor * factor
    base = torch.empty(conv.out_channels // groups, *conv.weight.shape[1:])
    nn.init.kaiming_normal_(base, a=0.2)
    with torch.no_grad():
        conv.weight.copy_(base.repeat_interleave(groups, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(torch.zeros(conv.out_channels // groups).repeat_interleave(groups))


def up_layers(in_channels: int, out_channels: int, upsample: str, bias: bool = True) -> List[nn.Module]:
    """The decoder's x2 upsampling: (B,in,H,W) -> (B,out,2H,2W). "resize" (bilinear then 3x3 conv) has no
    checkerboard artefacts (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts", Distill) but cannot
    make detail finer than its input's grid: at the outermost level the output is band-limited to half the
    image's resolution. "pixelshuffle" (sub-pixel conv, ICNR) starts without checkerboard and keeps the full
    resolution, but can learn one. "transpose-blur" is the transposed conv followed by BinomialBlur2d, which
    takes the checkerboard out at every level whatever the weights learn, with "transpose"'s parameters."""
    if upsample in ("transpose", "transpose-blur"):
        conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        return [conv] if upsample == "transpose" else [conv, BinomialBlur2d(out_channels)]
    if upsample == "resize":
        return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)]
    if upsample == "pixelshuffle":
        conv = nn.Conv2d(in_channels, out_channels * 4, kernel_size=3, padding=1, bias=bias)
        icnr_(conv)
        return [conv, nn.PixelShuffle(2)]
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, not '{upsample}'")


class UNetSkipBlock(nn.Module):
    """One level of the pix2pix U-Net: 4x4 stride-2 down, the inner levels, 4x4 stride-2 up.

    Outermost: (B,in_channels,H,W) -> (B,outer_channels,H,W), ending in Tanh.
    Otherwise: (B,outer_channels,H,W) -> (B,2*outer_channels,H,W), the input concatenated
    with the block's output (the skip connection).
    The innermost block (`submodule` None) has no norm after its down conv, so the
    1x1 bottleneck of a 2**num_downs input is never normalized.
    `in_channels` is given for the outermost block only (the network input); inner blocks
    take `outer_channels`. `dropout` applies to non-outermost decoders, after their norm. `upsample`:
    see `up_layers`.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        submodule: Optional[nn.Module],
        norm: str,
        dropout: float = 0.0,
        in_channels: Optional[int] = None,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        self.outermost = in_channels is not None
        innermost = submodule is None
        bias = conv_bias(norm)
        down_in = in_channels if in_channels is not None else outer_channels
        down_conv = nn.Conv2d(down_in, inner_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        up_in = inner_channels if innermost else inner_channels * 2
        layers: List[nn.Module]
        if self.outermost:
            layers = [down_conv, submodule, nn.ReLU(), *up_layers(up_in, outer_channels, upsample), nn.Tanh()]
        else:
            down = [nn.LeakyReLU(0.2), down_conv]
            if not innermost:
                down.append(make_norm(norm, inner_channels))
            inner = [] if innermost else [submodule]
            layers = down + inner + [nn.ReLU(), *up_layers(up_in, outer_channels, upsample, bias),
                                     make_norm(norm, outer_channels)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UNetGenerator(nn.Module):
    """pix2pix U-Net; (B,in_channels,H,W) -> (B,out_channels,H,W) in [-1, 1].

    H and W must be multiples of `size_multiple` = 2**num_downs (num_downs=8: U-Net-256).
    Level i (0 = outermost) downsamples to width*min(2**i, 8) channels with a 4x4 stride-2
    conv after LeakyReLU(0.2); the decoder mirrors it with ReLU + 4x4 stride-2 transposed
    convs, concatenating each level's input as the skip. As in pix2pix, dropout is applied
    in the decoders of the levels between the first 8w level (i=4) and the innermost one:
    num_downs-5 blocks, three for num_downs=8, none for num_downs<=5. `upsample`: see `up_layers` ("resize",
    "transpose-blur" and "pixelshuffle" against checkerboard artefacts).
    With the default "transpose" the module tree matches the reference implementation's state_dict keys.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        num_downs: int = 8,
        norm: str = "batch",
        dropout: float = 0.5,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        self.size_multiple = 2**num_downs
        block: Optional[nn.Module] = None
        for level in reversed(range(num_downs)):
            inner = width * min(2**level, 8)
            if level == 0:
                block = UNetSkipBlock(out_channels, inner, block, norm, in_channels=in_channels, upsample=upsample)
            else:
                outer = width * min(2 ** (level - 1), 8)
                level_dropout = dropout if 4 <= level < num_downs - 1 else 0.0
                block = UNetSkipBlock(outer, inner, block, norm, dropout=level_dropout, upsample=upsample)
        self.model = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,out_channels,H,W), H and W multiples of 2**num_downs."""
        return self.model(x)

    def final_conv(self) -> nn.Module:
        """The outermost up-convolution, whose output the final Tanh squashes (after the pixel shuffle, if any)."""
        return next(m for m in reversed(self.model.model) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


class DoubleConv(nn.Sequential):
    """Two 3x3 convs (stride 1, padding 1), each followed by norm and ReLU; (B,in,H,W) -> (B,out,H,W)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        bias = conv_bias(norm)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


def classic_up(in_channels: int, out_channels: int, upsample: str) -> nn.Module:
    """The classic U-Net's x2 upsampling, (B,in,H,W) -> (B,out,2H,2W): the paper's 2x2 stride-2 transposed
    conv for "transpose" (a bare module, as packages of that network name its weights), else `up_layers`."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
    return nn.Sequential(*up_layers(in_channels, out_channels, upsample))


class ClassicUNet(nn.Module):
    """The classic U-Net as used for CT->MRI by Dong et al. 2020; (B,in_channels,H,W) -> (B,out_channels,H,W).

    `depth` encoder stages (DoubleConv, width*2**level channels at level 0..depth-1) separated
    by 2x2 max-pools, then depth-1 decoder stages (x2 upsampling halving the channels, concatenation
    with the encoder stage of the same level, DoubleConv); depth=5 gives the 9 stages. `upsample`:
    "transpose" (the paper's 2x2 stride-2 transposed conv), "transpose-blur", "resize" or "pixelshuffle" (see
    `up_layers`). A final 1x1 conv maps to out_channels, followed by Tanh ("tanh", output in
    [-1, 1]) or nothing ("none"). H and W must be multiples of `size_multiple` = 2**(depth-1).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        depth: int = 5,
        norm: str = "batch",
        final_activation: str = "tanh",
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if final_activation not in FINAL_ACTIVATIONS:
            raise ValueError(
                f"unknown final_activation '{final_activation}' (known: {', '.join(FINAL_ACTIVATIONS)})"
            )
        self.size_multiple = 2 ** (depth - 1)
        widths = [width * 2**level for level in range(depth)]
        self.encoders = nn.ModuleList(
            DoubleConv(c_in, c_out, norm) for c_in, c_out in zip([in_channels] + widths[:-1], widths)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.ups = nn.ModuleList(
            classic_up(widths[level + 1], widths[level], upsample) for level in reversed(range(depth - 1))
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * widths[level], widths[level], norm) for level in reversed(range(depth - 1))
        )
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        self.activation = nn.Tanh() if final_activation == "tanh" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_channels,H,W) -> (B,out_channels,H,W), H and W multiples of 2**(depth-1)."""
        skips: List[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return self.activation(self.head(x))
