"""pix2pix (Isola et al. 2017): paired translation with a U-Net generator and a conditional PatchGAN.

The discriminator sees the input concatenated with a real or translated target. Generator loss: vanilla
(binary cross-entropy) adversarial + 100 × L1 to the target; the discriminator's loss is halved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch
import torch.nn.functional as F

from ..losses import GANLoss
from .base import Recipe, check_gan_options, set_requires_grad


@dataclass
class Options:
    gan_mode: str = "vanilla"   # pix2pix's cross-entropy GAN loss
    lambda_l1: float = 100.0    # weight of the L1 term


class Pix2Pix(Recipe):
    name = "pix2pix"
    Options = Options

    @classmethod
    def validate_options(cls, config: Any) -> None:
        check_gan_options(config.recipe, ("lambda_l1",))

    def build(self) -> None:
        channels = self.config.in_channels
        self.add_network("G", self.build_generator(channels))
        self.add_network("D", self.build_discriminator(channels + 1))
        self.optimizers["G"] = self.adam(self.networks["G"])
        self.optimizers["D"] = self.adam(self.networks["D"])
        self.gan = GANLoss(self.options.gan_mode)

    def train_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, float]:
        source, target = batch["source"], batch["target"]
        with self.autocast():
            fake = self.run("G")(source)

        discriminator = self.networks["D"]
        loss_d = self.conditional_discriminator_step(self.gan, source, fake, target)

        set_requires_grad([discriminator], False)
        with self.autocast():
            adversarial = self.gan(discriminator(torch.cat([source, fake], 1)), True)
            l1 = F.l1_loss(fake.float(), target.float())
            loss_g = adversarial + self.options.lambda_l1 * l1
        self.backward(loss_g)
        self.step(self.optimizers["G"])
        return self.report(G=loss_g, G_adv=adversarial, L1=l1, D=loss_d)


RECIPE = Pix2Pix
