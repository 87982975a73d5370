"""2-D image-to-image networks: generators, the PatchGAN discriminator and a factory for model cards."""
from __future__ import annotations

from .casnet import CasNet
from .factory import ARCHITECTURES, build_network, size_multiple
from .fusion import fold_batch_norms, instance_norms_as_group_norms
from .norm import NORM_KINDS, make_norm
from .patchgan import PatchDiscriminator, receptive_field
from .resnet import ResnetGenerator
from .unet import ClassicUNet, UNetGenerator

__all__ = [
    "ARCHITECTURES",
    "NORM_KINDS",
    "CasNet",
    "ClassicUNet",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
    "build_network",
    "fold_batch_norms",
    "instance_norms_as_group_norms",
    "make_norm",
    "receptive_field",
    "size_multiple",
]
