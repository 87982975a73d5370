"""Normalization layers by name, as the generators and discriminators take them."""
from __future__ import annotations

from torch import nn

NORM_KINDS = ("batch", "instance", "none")


def _check_kind(kind: str) -> None:
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm '{kind}' (known: {', '.join(NORM_KINDS)})")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-D normalization over `channels` feature maps; (B,C,H,W) -> (B,C,H,W).

    "batch": nn.BatchNorm2d with affine parameters and running statistics.
    "instance": nn.InstanceNorm2d(affine=False, track_running_stats=False), as in CycleGAN.
    "none": nn.Identity.
    """
    _check_kind(kind)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def conv_bias(kind: str) -> bool:
    """Whether a convolution followed by a `kind` norm carries a bias.

    Batch norm's shift makes the bias redundant; instance norm without affine
    parameters and no norm at all keep it (as the CycleGAN/pix2pix code does for instance norm).
    """
    _check_kind(kind)
    return kind != "batch"
