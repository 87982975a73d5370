"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators and two PatchGAN discriminators.

G maps source -> target and F target -> source; D_target tells real target slices from G's, D_source real
source slices from F's. Generator loss: least-squares adversarial + cycle L1 (λ = 10) + identity L1 (0.5 λ);
the source -> target -> source cycle may weigh less than the target -> source -> target one (the reference
code's λ_A and λ_B): when the source slices vary in contrast and the targets do not, a full-weight source cycle
makes G hide the source's contrast in its output so that F can restore it. Discriminators are trained on a
history of 50 earlier translations (image pool), their loss halved. An optional structure loss (Yang et al.
2018, structure-constrained CycleGAN) compares the MIND descriptors of each translation and its input, which
keeps edges where the input has them whatever the contrast; off by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch
import torch.nn.functional as F

from ..image_pool import ImagePool
from ..losses import GANLoss, structure_loss
from .base import Recipe, check_gan_options, set_requires_grad


@dataclass
class Options:
    gan_mode: str = "lsgan"        # the CycleGAN paper's least-squares loss ("vanilla": BCE, as the articles)
    lambda_cycle: float = 10.0     # λ of the cycle-consistency L1, both directions
    source_cycle_scale: float = 1.0  # the source -> target -> source cycle's weight as a fraction of λ (λ_A / λ)
    lambda_identity: float = 0.5   # identity L1 weight, as a fraction of λ (0 switches it off)
    pool_size: int = 50            # image history for the discriminators (0: none)
    lambda_structure: float = 0.0  # weight of the MIND structure loss, both directions (0 switches it off)


class CycleGAN(Recipe):
    name = "cyclegan"
    Options = Options
    needs_pairs = False
    exports = ("G", "F")

    @classmethod
    def validate_options(cls, config: Any) -> None:
        check_gan_options(config.recipe, ("lambda_cycle", "source_cycle_scale", "lambda_identity", "pool_size",
                                          "lambda_structure"))

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
            if options.lambda_structure > 0:
                structure = (structure_loss(fake_t, real_s) + structure_loss(fake_s, real_t)) * (
                    options.lambda_structure)
            else:
                structure = torch.zeros((), device=self.device)
            adversarial = self.gan(d_target(fake_t), True) + self.gan(d_source(fake_s), True)
            loss_g = adversarial + cycle + identity + structure
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
        return self.report(G=loss_g, G_adv=adversarial, cycle=cycle, identity=identity, structure=structure,
                           D_target=loss_dt, D_source=loss_ds)

    def state_dict(self) -> Dict[str, Any]:
        return {"pools": {name: pool.state_dict() for name, pool in self.pools.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name], device=self.device)


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())


RECIPE = CycleGAN
