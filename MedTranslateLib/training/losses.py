"""Losses of the recipes: adversarial (least squares or vanilla), Gram matrices, perceptual/style/content.

Feature lists are what `PatchDiscriminator.features` or `VGG19Features` return: tensors (B, C_i, H_i, W_i).
Every loss is computed in float32, also under autocast.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("lsgan", "vanilla")


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits (B, 1, h, w) against an all-real or all-fake target.

    "lsgan": mean squared error to 1 / 0 (Mao et al.; CycleGAN). "vanilla": binary cross-entropy with logits
    (Goodfellow et al.; pix2pix).
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN loss '{mode}' (known: {', '.join(GAN_MODES)})")
        self.mode = mode

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix of the feature maps, divided by C*H*W (float32)."""
    b, c, h, w = features.shape
    flat = features.float().reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / float(c * h * w)


def _weights(weights: Optional[Sequence[float]], count: int, what: str) -> List[float]:
    if not weights:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{what}: {len(weights)} weights for {count} feature layers")
    return [float(w) for w in weights]


def perceptual_loss(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor],
                    weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """MedGAN's perceptual loss: sum_i w_i * mean |fake_i - real_i| over feature layers (L1)."""
    factors = _weights(weights, len(fake), "perceptual loss")
    terms = [w * F.l1_loss(f.float(), r.float()) for w, f, r in zip(factors, fake, real)]
    return torch.stack(terms).sum()


def style_loss(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor],
               weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Style-transfer loss: sum_j w_j * mean squared difference of the Gram matrices of layer j."""
    factors = _weights(weights, len(fake), "style loss")
    terms = [w * F.mse_loss(gram_matrix(f), gram_matrix(r)) for w, f, r in zip(factors, fake, real)]
    return torch.stack(terms).sum()


def content_loss(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor],
                 weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Content loss: sum_j w_j * mean squared difference of the feature maps of layer j."""
    factors = _weights(weights, len(fake), "content loss")
    terms = [w * F.mse_loss(f.float(), r.float()) for w, f, r in zip(factors, fake, real)]
    return torch.stack(terms).sum()
