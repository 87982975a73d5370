"""Build a network from a model card's `architecture` dict."""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, Mapping, Tuple, Type

import torch
from torch import nn

from .casnet import CasNet
from .patchgan import PatchDiscriminator
from .resnet import ResnetGenerator
from .unet import ClassicUNet, UNetGenerator

ARCHITECTURES = ("resnet", "unet", "casnet", "patchgan")
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights; the translation networks here hold a few million
# the sizes a constructor argument may take: wide enough for any published configuration, small enough that
# neither building nor running the network can take the machine (a U-Net of 60 downsamplings needs 2^60 pixels)
ARGUMENT_RANGES: Dict[str, Tuple[float, float]] = {"width": (1, 1024), "num_downs": (1, 10), "depth": (1, 10),
                                                   "n_blocks": (0, 64), "n_layers": (1, 8), "dropout": (0.0, 0.9)}
UNET_VARIANTS: Dict[str, Type[nn.Module]] = {"pix2pix": UNetGenerator, "classic": ClassicUNet}
_CLASSES: Dict[str, Type[nn.Module]] = {"resnet": ResnetGenerator, "casnet": CasNet, "patchgan": PatchDiscriminator}
_CHANNEL_ARGS = ("in_channels", "out_channels")

# constructor annotation -> (accepts value, name in messages); bool is not an int here
_TYPE_CHECKS: Dict[Any, Tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
}


def _resolve(spec: Mapping[str, Any]) -> Tuple[Type[nn.Module], str, Dict[str, Any]]:
    """The class, its label for messages ("unet/classic"), and the spec's remaining arguments."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"architecture spec must be a dict, not {type(spec).__name__}")
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{name}' (known: {', '.join(ARCHITECTURES)})")
    if name != "unet":
        return _CLASSES[name], name, kwargs
    variant = kwargs.pop("variant", "pix2pix")
    if variant not in UNET_VARIANTS:
        raise ValueError(f"unknown unet variant '{variant}' (known: {', '.join(UNET_VARIANTS)})")
    return UNET_VARIANTS[variant], f"unet/{variant}", kwargs


def _check_arguments(cls: Type[nn.Module], label: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Reject arguments the constructor lacks or whose type differs from its annotation."""
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self",) + _CHANNEL_ARGS]
    hints = typing.get_type_hints(cls.__init__)
    checked: Dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _CHANNEL_ARGS:
            raise ValueError(
                f"argument '{key}' must not appear in the spec of architecture '{label}'; "
                "the channels follow from the model card"
            )
        if key not in accepted:
            raise ValueError(f"unknown argument '{key}' for architecture '{label}' (accepted: {', '.join(accepted)})")
        accepts, kind = _TYPE_CHECKS[hints[key]]
        if not accepts(value):
            raise ValueError(
                f"argument '{key}' of architecture '{label}' must be {kind}, not {type(value).__name__} {value!r}"
            )
        low, high = ARGUMENT_RANGES.get(key, (None, None))
        if low is not None and not low <= value <= high:
            raise ValueError(f"argument '{key}' of architecture '{label}' must lie in [{low}, {high}], not {value}")
        checked[key] = float(value) if hints[key] is float else value
    return checked


def check_spec(spec: Mapping[str, Any]) -> Tuple[Type[nn.Module], str, Dict[str, Any]]:
    """Validate an architecture dict without building it: (class, label, checked arguments).

    Raises ValueError for an unknown name or variant, or an unknown or ill-typed argument.
    """
    cls, label, kwargs = _resolve(spec)
    return cls, label, _check_arguments(cls, label, kwargs)


def build_network(spec: Dict[str, Any], in_channels: int, out_channels: int = 1) -> nn.Module:
    """The network a model card's architecture dict describes, with freshly initialized weights.

    spec: {"name": "resnet" | "unet" | "casnet" | "patchgan", ...constructor arguments};
    "unet" also takes "variant": "pix2pix" (default) | "classic". The channel counts come
    from the caller, not the spec; "patchgan" has one output channel and ignores out_channels.
    Raises ValueError for an unknown name or variant, an unknown, ill-typed or out-of-range argument, or a
    network of more than MAX_PARAMETERS values (counted on the meta device first: nothing large is allocated).
    """
    parameter_count(spec, in_channels, out_channels)
    return _construct(spec, in_channels, out_channels)


def parameter_count(spec: Dict[str, Any], in_channels: int, out_channels: int = 1) -> int:
    """How many values (parameters and buffers) the network of `spec` holds, counted on the meta device;
    ValueError beyond MAX_PARAMETERS."""
    with torch.device("meta"):
        network = _construct(spec, in_channels, out_channels)
    count = sum(tensor.numel() for tensor in network.state_dict().values())
    if count > MAX_PARAMETERS:
        raise ValueError(f"the network would hold {count:.3g} values ({count * 4 / 2**30:.3g} GiB in float32); "
                         f"at most {MAX_PARAMETERS:.0e} are built")
    return count


def _construct(spec: Dict[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    cls, label, kwargs = check_spec(spec)
    if cls is PatchDiscriminator:
        return cls(in_channels=in_channels, **kwargs)
    return cls(in_channels=in_channels, out_channels=out_channels, **kwargs)


def size_multiple(net: nn.Module) -> int:
    """What the input's H and W must be multiples of for `net` (1 when it sets none)."""
    return int(getattr(net, "size_multiple", 1))


def spec_size_multiple(spec: Dict[str, Any], in_channels: int = 1) -> int:
    """size_multiple of the network `spec` describes, built on the meta device (nothing allocated): 2 to the
    number of its downsamplings for the U-Nets and CasNet."""
    with torch.device("meta"):
        return size_multiple(_construct(spec, in_channels, 1))
