"""The Recipe interface: what a training method brings to the shared trainer.

A recipe builds its networks and Adam optimizers from the config, runs one training step on a batch and
returns its losses as floats, and names the networks a model package exports. The trainer owns everything
else: data, schedules, AMP's GradScaler, DistributedDataParallel, checkpoints, logging, validation.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Iterable, List, Optional, Tuple, Type

import torch
from torch import nn

from ...networks import build_network

if TYPE_CHECKING:
    from ..config import TrainConfig


def make_grad_scaler(enabled: bool) -> Any:
    """torch.amp.GradScaler("cuda") (torch >= 2.3), or the older torch.cuda.amp one."""
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        return amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # pragma: no cover - old torch


@dataclass
class RecipeContext:
    """What the trainer gives a recipe: where to run and how."""

    device: torch.device
    amp: bool = False
    scaler: Any = None
    distributed: bool = False
    seed: int = 0
    log: Callable[[str], None] = print
    ddp_kwargs: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scaler is None:
            self.scaler = make_grad_scaler(False)


def set_requires_grad(networks: Iterable[nn.Module], flag: bool) -> None:
    """Freeze (False) or unfreeze (True) every parameter of `networks`."""
    for network in networks:
        for parameter in network.parameters():
            parameter.requires_grad_(flag)


class Recipe:
    """Base class. Subclasses set the class attributes, `build()` networks/optimizers, and `train_step()`.

    `networks` holds the plain modules (what checkpoints and packages store); `run(name)` returns the module
    to call when its gradients must be synchronised across processes (the DDP wrapper when distributed).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[Type[Any]]
    needs_pairs: ClassVar[bool] = True
    uses_discriminator: ClassVar[bool] = True
    exports: ClassVar[Tuple[str, Optional[str]]] = ("G", None)  # (network, inverse network or None)

    def __init__(self, config: "TrainConfig", context: RecipeContext) -> None:
        self.config = config
        self.options = config.recipe
        self.context = context
        self.device = context.device
        self.networks: Dict[str, nn.Module] = {}
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self.notes: Dict[str, Any] = {}  # goes into the card's training section
        self._wrapped: Dict[str, nn.Module] = {}
        self.build()

    # ------------------------------------------------------------------ what subclasses provide
    @classmethod
    def validate_options(cls, config: "TrainConfig") -> None:
        """Check the recipe's own options; raise ConfigError naming the key."""

    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, float]:
        """One optimisation step on batch {"source": (B,2k+1,H,W), "target": (B,1,H,W)} -> {loss: value}."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Recipe state beyond networks and optimizers (image pools, ...), weights-only loadable."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ helpers
    def generator(self) -> nn.Module:
        """The exported (source -> target) network."""
        return self.networks[self.exports[0]]

    def inverse(self) -> Optional[nn.Module]:
        return self.networks[self.exports[1]] if self.exports[1] else None

    def build_generator(self, in_channels: int, out_channels: int = 1) -> nn.Module:
        return build_network(self.config.model.generator, in_channels=in_channels, out_channels=out_channels)

    def build_discriminator(self, in_channels: int) -> nn.Module:
        return build_network(self.config.model.discriminator, in_channels=in_channels)

    def add_network(self, name: str, network: nn.Module) -> nn.Module:
        network = network.to(self.device).train()
        self.networks[name] = network
        return network

    def adam(self, *networks: nn.Module) -> torch.optim.Optimizer:
        optim = self.config.optim
        parameters = itertools.chain(*(n.parameters() for n in networks))
        return torch.optim.Adam(parameters, lr=optim.lr, betas=(optim.beta1, optim.beta2))

    def distribute(self) -> None:
        """Wrap every network with parameters in DistributedDataParallel (called by the trainer)."""
        if not self.context.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        for name, network in self.networks.items():
            if any(p.requires_grad for p in network.parameters()):
                self._wrapped[name] = DistributedDataParallel(network, device_ids=device_ids,
                                                              **self.context.ddp_kwargs)

    def run(self, name: str) -> nn.Module:
        return self._wrapped.get(name, self.networks[name])

    def autocast(self) -> Any:
        if not self.context.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        self.context.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.context.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)

    def conditional_discriminator_step(self, gan: Any, source: torch.Tensor, fake: torch.Tensor,
                                       target: torch.Tensor) -> torch.Tensor:
        """One update of the conditional discriminator "D" (pix2pix, MedGAN); returns its loss.

        D sees (source, image) pairs concatenated along channels, (B, C+1, H, W): the generator's `fake`
        (detached) as false, the real `target` as true; the loss is halved, as in pix2pix.
        """
        set_requires_grad([self.networks["D"]], True)
        with self.autocast():
            wrapped = self.run("D")
            loss_d = 0.5 * (gan(wrapped(torch.cat([source, fake.detach()], 1)), False)
                            + gan(wrapped(torch.cat([source, target], 1)), True))
        self.backward(loss_d)
        self.step(self.optimizers["D"])
        return loss_d

    @staticmethod
    def report(**losses: torch.Tensor) -> Dict[str, float]:
        """Tensors -> floats with one device synchronisation."""
        names = list(losses)
        values: List[float] = torch.stack([losses[n].detach().float().reshape(()) for n in names]).tolist()
        return dict(zip(names, values))


def check_gan_options(options: Any, non_negative: Iterable[str]) -> None:
    """Refuse an unknown `options.gan_mode` and negative values of the named options (loss weights, sizes)."""
    from ..config import ConfigError
    from ..losses import GAN_MODES

    if options.gan_mode not in GAN_MODES:
        raise ConfigError(f"recipe.gan_mode '{options.gan_mode}' is unknown (known: {', '.join(GAN_MODES)})")
    for key in non_negative:
        if getattr(options, key) < 0:
            raise ConfigError(f"recipe.{key} must be >= 0")
