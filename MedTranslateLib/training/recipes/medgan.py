"""MedGAN (Armanious et al. 2020): a CasNet generator trained with adversarial, perceptual, style and
content losses.

- The conditional PatchGAN (input concatenated with the real or translated target) is also the feature
  extractor of the perceptual loss: L1 between its activations for the translation and for the target at
  every hidden layer, weighted, plus the pixel L1 term.
- Style (Gram matrices) and content (feature maps) losses come from a frozen VGG19 when a local
  torchvision-layout `.safetensors` file is given (`recipe.vgg19_weights`). ImageNet weights cannot be fetched
  here; without them the discriminator's features stand in, and the log and the card's training section say so.
- The discriminator is updated once every `d_every` (3) generator steps. Adam lr 2e-4, β1 0.5 ([optim]).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn.functional as F

from ...networks.vgg import load_vgg19_features, vgg19_layer_names
from ..config import ConfigError, path_field
from ..losses import GANLoss, content_loss, perceptual_loss, style_loss
from .base import Recipe, check_gan_options, set_requires_grad

FALLBACK_NOTE = ("style and content losses use the discriminator's features: no VGG19 weights were given "
                 "(recipe.vgg19_weights), so the paper's ImageNet VGG19 is not used")


@dataclass
class Options:
    gan_mode: str = "vanilla"
    d_every: int = 3                   # discriminator update once every 3 generator steps
    lambda_perceptual: float = 20.0
    pixel_weight: float = 1.0          # the pixel L1 term inside the perceptual loss
    perceptual_weights: List[float] = field(default_factory=list)  # per discriminator hidden layer; [] = 1 each
    lambda_style: float = 1e-4
    lambda_content: float = 1e-4
    style_layers: List[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1"])
    content_layers: List[str] = field(default_factory=lambda: ["relu4_2"])
    vgg19_weights: str = path_field()  # torchvision-layout VGG19 .safetensors; "" = discriminator features


class MedGAN(Recipe):
    name = "medgan"
    Options = Options

    @classmethod
    def validate_options(cls, config: Any) -> None:
        options = config.recipe
        check_gan_options(options, ("lambda_perceptual", "pixel_weight", "lambda_style", "lambda_content"))
        if options.d_every < 1:
            raise ConfigError("recipe.d_every must be >= 1")
        hidden = int(config.model.discriminator.get("n_layers", 3)) + 1
        if options.perceptual_weights and len(options.perceptual_weights) != hidden:
            raise ConfigError(f"recipe.perceptual_weights needs {hidden} weights (the discriminator's hidden "
                              f"layers), not {len(options.perceptual_weights)}")
        names = vgg19_layer_names()
        for key in ("style_layers", "content_layers"):
            unknown = [name for name in getattr(options, key) if name not in names]
            if unknown or not getattr(options, key):
                raise ConfigError(f"recipe.{key}: unknown VGG19 layer(s) {', '.join(unknown) or '(none given)'} "
                                  f"(e.g. relu1_1, relu2_1, relu3_1, relu4_1, relu4_2)")

    def build(self) -> None:
        channels = self.config.in_channels
        options = self.options
        self.add_network("G", self.build_generator(channels))
        self.add_network("D", self.build_discriminator(channels + 1))
        self.optimizers["G"] = self.adam(self.networks["G"])
        self.optimizers["D"] = self.adam(self.networks["D"])
        self.gan = GANLoss(options.gan_mode)
        self.last_d = 0.0
        self.vgg = None
        if options.vgg19_weights:
            layers = list(dict.fromkeys(options.style_layers + options.content_layers))
            self.vgg = load_vgg19_features(options.vgg19_weights, layers).to(self.device)
            digest = hashlib.sha256(Path(options.vgg19_weights).read_bytes()).hexdigest()
            self.notes["feature_network"] = (f"VGG19 from {Path(options.vgg19_weights).name} (sha256 {digest[:16]}), "
                                             f"style {options.style_layers}, content {options.content_layers}")
        else:
            self.notes["feature_network"] = "discriminator (fallback): " + FALLBACK_NOTE
            self.context.log(f"medgan: {FALLBACK_NOTE}")

    def train_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, float]:
        options = self.options
        source, target = batch["source"], batch["target"]
        with self.autocast():
            fake = self.run("G")(source)

        discriminator = self.networks["D"]
        if step % options.d_every == 0:
            loss_d = self.conditional_discriminator_step(self.gan, source, fake, target)
            self.last_d = float(loss_d.detach())

        set_requires_grad([discriminator], False)
        with self.autocast():
            fake_features = discriminator.features(torch.cat([source, fake], 1))
            with torch.no_grad():
                real_features = discriminator.features(torch.cat([source, target], 1))
            adversarial = self.gan(fake_features[-1], True)
            hidden_fake, hidden_real = fake_features[:-1], real_features[:-1]
            perceptual = (options.pixel_weight * F.l1_loss(fake.float(), target.float())
                          + perceptual_loss(hidden_fake, hidden_real, options.perceptual_weights or None))
            if self.vgg is not None:
                vgg_fake = self.vgg(fake)
                with torch.no_grad():
                    vgg_real = self.vgg(target)
                style = style_loss([vgg_fake[n] for n in options.style_layers],
                                   [vgg_real[n] for n in options.style_layers])
                content = content_loss([vgg_fake[n] for n in options.content_layers],
                                       [vgg_real[n] for n in options.content_layers])
            else:
                style = style_loss(hidden_fake, hidden_real)
                content = content_loss(hidden_fake, hidden_real)
            loss_g = (adversarial + options.lambda_perceptual * perceptual
                      + options.lambda_style * style + options.lambda_content * content)
        self.backward(loss_g)
        self.step(self.optimizers["G"])
        losses = self.report(G=loss_g, G_adv=adversarial, perceptual=perceptual, style=style, content=content)
        losses["D"] = self.last_d
        return losses

    def state_dict(self) -> Dict[str, Any]:
        return {"last_d": self.last_d}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.last_d = float(state.get("last_d", 0.0))


RECIPE = MedGAN
