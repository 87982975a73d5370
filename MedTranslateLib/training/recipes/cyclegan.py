"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators and two PatchGAN discriminators.

G maps source -> target and F target -> source; D_target tells real target slices from G's, D_source real
source slices from F's. Generator loss: least-squares adversarial + cycle L1 (λ = 10) + identity L1 (0.5 λ);
the source -> target -> source cycle may weigh less than the target -> source -> target one (the reference
code's λ_A and λ_B): when the source slices vary in contrast and the targets do not, a full-weight source cycle
makes G hide the source's contrast in its output so that F can restore it. A contrast-invariance L1 (not in the
paper; off by default) closes that channel instead: G's output for the source raised to a random power must match
its output for the source itself. Discriminators are trained on a history of 50 earlier translations (image
pool), their loss halved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch
import torch.nn.functional as F

from ..image_pool import ImagePool
from ..losses import GANLoss
from .base import Recipe, check_gan_options, set_requires_grad


@dataclass
class Options:
    gan_mode: str = "lsgan"        # the CycleGAN paper's least-squares loss ("vanilla": BCE, as the articles)
    lambda_cycle: float = 10.0     # λ of the cycle-consistency L1, both directions
    source_cycle_scale: float = 1.0  # the source -> target -> source cycle's weight as a fraction of λ (λ_A / λ)
    lambda_identity: float = 0.5   # identity L1 weight, as a fraction of λ (0 switches it off)
    pool_size: int = 50            # image history for the discriminators (0: none)
    lambda_contrast: float = 0.0   # weight of |G(s^γ) − G(s)| (s in [0, 1]; 0 switches it off)
    contrast_gamma: List[float] = field(default_factory=lambda: [0.6, 1.6])  # γ's range, drawn log-uniform


class CycleGAN(Recipe):
    name = "cyclegan"
    Options = Options
    needs_pairs = False
    exports = ("G", "F")

    @classmethod
    def validate_options(cls, config: Any) -> None:
        from ..config import ConfigError

        options = config.recipe
        check_gan_options(options, ("lambda_cycle", "source_cycle_scale", "lambda_identity", "pool_size",
                                    "lambda_contrast"))
        gamma = options.contrast_gamma
        if len(gamma) != 2 or not 0 < gamma[0] <= gamma[1]:
            raise ConfigError(f"recipe.contrast_gamma must be [low, high] with 0 < low <= high, not {gamma}")

    def build(self) -> None:
        channels = self.config.in_channels
        self.add_network("G", self.build_generator(channels))
        self.add_network("F", self.build_generator(channels))
        self.add_network("D_target", self.build_discriminator(1))
        self.add_network("D_source", self.build_discriminator(1))
        self.optimizers["G"] = self.adam(self.networks["G"], self.networks["F"])
        self.optimizers["D"] = self.adam(self.networks["D_target"], self.networks["D_source"])
        self.gan = GANLoss(self.options.gan_mode)
        seed = self.context.seed
        self.pools = {"target": ImagePool(self.options.pool_size, seed=seed * 2 + 1),
                      "source": ImagePool(self.options.pool_size, seed=seed * 2 + 2)}

    def train_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, float]:
        options = self.options
        real_s, real_t = batch["source"], batch["target"]
        G, F_ = self.run("G"), self.run("F")
        d_target, d_source = self.networks["D_target"], self.networks["D_source"]

        set_requires_grad([d_target, d_source], False)
        with self.autocast():
            fake_t = G(real_s)
            fake_s = F_(real_t)
            source_cycle = _l1(F_(fake_t), real_s) * options.source_cycle_scale
            cycle = (source_cycle + _l1(G(fake_s), real_t)) * options.lambda_cycle
            if options.lambda_identity > 0:
                identity = (_l1(G(real_t), real_t) + _l1(F_(real_s), real_s)) * (
                    options.lambda_cycle * options.lambda_identity)
            else:
                identity = torch.zeros((), device=self.device)
            if options.lambda_contrast > 0:
                recontrasted = _raise_to_power(real_s, self._gamma(step, real_s.shape[0]))
                contrast = _l1(G(recontrasted), fake_t) * options.lambda_contrast
            else:
                contrast = torch.zeros((), device=self.device)
            adversarial = self.gan(d_target(fake_t), True) + self.gan(d_source(fake_s), True)
            loss_g = adversarial + cycle + identity + contrast
        self.backward(loss_g)
        self.step(self.optimizers["G"])

        set_requires_grad([d_target, d_source], True)
        pooled_t, pooled_s = self.pools["target"].query(fake_t), self.pools["source"].query(fake_s)
        with self.autocast():
            wrapped_t, wrapped_s = self.run("D_target"), self.run("D_source")
            loss_dt = 0.5 * (self.gan(wrapped_t(real_t), True) + self.gan(wrapped_t(pooled_t), False))
            loss_ds = 0.5 * (self.gan(wrapped_s(real_s), True) + self.gan(wrapped_s(pooled_s), False))
        self.backward(loss_dt + loss_ds)
        self.step(self.optimizers["D"])
        return self.report(G=loss_g, G_adv=adversarial, cycle=cycle, identity=identity, contrast=contrast,
                           D_target=loss_dt, D_source=loss_ds)

    def _gamma(self, step: int, count: int) -> torch.Tensor:
        """(count, 1, 1, 1) powers, log-uniform in recipe.contrast_gamma, drawn from the seed and the step alone (a
        resumed run draws the same)."""
        generator = torch.Generator().manual_seed(self.context.seed * 1_000_003 + step)
        low, high = (math.log(g) for g in self.options.contrast_gamma)
        logs = torch.rand(count, generator=generator, dtype=torch.float64) * (high - low) + low
        return logs.exp().float().reshape(count, 1, 1, 1).to(self.device)

    def state_dict(self) -> Dict[str, Any]:
        return {"pools": {name: pool.state_dict() for name, pool in self.pools.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name], device=self.device)


def _raise_to_power(image: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) image in [-1, 1] mapped to [0, 1], raised to the per-sample power `gamma` (B, 1, 1, 1), mapped
    back: the background (−1) and the brightest value (1) stay, the contrast between them changes."""
    unit = ((image.float() + 1) / 2).clamp(0, 1)
    return (unit ** gamma * 2 - 1).to(image.dtype)


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())


RECIPE = CycleGAN
