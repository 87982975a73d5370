"""Losses of the recipes: adversarial (least squares or vanilla), Gram matrices, perceptual/style/content,
and MIND structure consistency.

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


MIND_OFFSETS = ((0, 1), (1, 0), (0, -1), (-1, 0))  # the four in-plane neighbours (Heinrich et al. 2012, 2D)


def mind_descriptor(image: torch.Tensor, distance: int = 3, patch: int = 9) -> torch.Tensor:
    """Modality-independent neighbourhood descriptor of (B, 1, H, W) images -> (B, 4, H, W), values in 0..1.

    For each neighbour r at `distance` pixels: D_r = mean over a `patch` x `patch` box of (I(x) - I(x + r))^2;
    MIND_r = exp(-D_r / V), V the mean of D_r over the four neighbours (clamped to 0.001..1000 times its image
    mean, so flat regions and air stay finite), divided by its maximum over r. It is unchanged by scaling the
    image or inverting its contrast, so it compares structure across modalities (Heinrich et al. 2012). The
    defaults suit noisy 1 mm slices: with 3 x 3 patches at 2 pixels, the true T2 of a noisy training T1 scored
    0.19-0.24 against it, a blank image 0.27-0.30; with 9 x 9 at 3 pixels 0.10-0.13 against 0.20-0.27.
    """
    image = image.float()
    padded = F.pad(image, (distance,) * 4, mode="replicate")
    h, w = image.shape[-2:]
    distances = []
    for dy, dx in MIND_OFFSETS:
        top, left = distance * (1 + dy), distance * (1 + dx)
        squared = (image - padded[..., top:top + h, left:left + w]) ** 2
        distances.append(F.avg_pool2d(F.pad(squared, (patch // 2,) * 4, mode="replicate"), patch, stride=1))
    d = torch.cat(distances, dim=1)
    variance = d.mean(dim=1, keepdim=True)
    mean = variance.mean(dim=(-2, -1), keepdim=True)
    descriptor = torch.exp(-d / variance.clamp(max=mean * 1000.0).clamp(min=mean * 0.001 + 1e-12))
    return descriptor / descriptor.amax(dim=1, keepdim=True)


def structure_loss(translated: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Structure consistency of a translation (Yang et al. 2018, structure-constrained CycleGAN): mean |MIND of the
    output - MIND of its input| over (B, 1, H, W) images; zero for any output whose local structure matches,
    whatever its contrast."""
    return F.l1_loss(mind_descriptor(translated), mind_descriptor(original))
