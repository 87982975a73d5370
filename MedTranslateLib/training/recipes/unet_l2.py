"""U-Net with L2 loss (Dong et al. 2020, CT -> MRI): the classic 9-stage U-Net trained by MSE alone.

No discriminator: one network, Adam, and the learning rate decaying over training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F

from .base import Recipe


@dataclass
class Options:
    """The recipe has no options of its own: the loss is the mean squared error."""


class UNetL2(Recipe):
    name = "unet_l2"
    Options = Options
    uses_discriminator = False

    def build(self) -> None:
        self.add_network("G", self.build_generator(self.config.in_channels))
        self.optimizers["G"] = self.adam(self.networks["G"])

    def train_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, float]:
        with self.autocast():
            prediction = self.run("G")(batch["source"])
            loss = F.mse_loss(prediction.float(), batch["target"].float())
        self.backward(loss)
        self.step(self.optimizers["G"])
        return self.report(MSE=loss)


RECIPE = UNetL2
