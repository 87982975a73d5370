"""VGG19's convolutional feature layers in torchvision's layout, for MedGAN's style and content losses.

No torchvision dependency and no pickles: the layers are built here with the same module indices as
`torchvision.models.vgg19().features` (state_dict keys `features.<i>.weight` / `.bias`), and pretrained
weights are read from a local `.safetensors` file in that layout (classifier keys, if present, are ignored).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import InputError

# torchvision's configuration "E" (VGG19): conv widths, "M" for 2x2 max-pooling.
VGG19_LAYOUT: Tuple[Union[int, str], ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names() -> List[str]:
    """Names of `features`' modules by index: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ..."""
    names: List[str] = []
    block, conv = 1, 1
    for item in VGG19_LAYOUT:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


class VGG19Features(nn.Module):
    """VGG19 `features` returning the activations of the named layers.

    forward: (B, 1 or 3, H, W) images in [-1, 1] -> {layer name: (B, C, h, w)} for `layers`, in their order.
    Grayscale inputs are repeated to three channels; all are normalised with ImageNet's mean and std.
    Only the layers up to the deepest requested one are run.
    """

    def __init__(self, layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")) -> None:
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"unknown VGG19 layer(s) {', '.join(unknown) or '(none given)'} "
                             f"(known: {', '.join(names)})")
        modules: List[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*modules)
        self.layers = list(layers)
        self._index = {name: names.index(name) for name in layers}
        self._last = max(self._index.values())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {index: name for name, index in self._index.items()}
        found: Dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                found[wanted[index]] = x
            if index == self._last:
                break
        return {name: found[name] for name in self.layers}


def load_vgg19_features(path: Union[str, Path], layers: Sequence[str]) -> VGG19Features:
    """A frozen VGG19Features (eval mode) with weights from a torchvision-layout `.safetensors` file.

    Raises InputError for a missing file, another format (pickled .pth files are refused: they are never
    unpickled), or tensors that do not fit VGG19's feature layers.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"{path}: VGG19 weights must be a .safetensors file (pickled .pth/.pt files are "
                         "not loaded; convert with safetensors.torch.save_file(model.state_dict(), ...))")
    if not path.is_file():
        raise InputError(f"{path}: no such VGG19 weights file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    if not any(key.startswith("features.") for key in tensors):  # a bare `features` state dict
        tensors = {f"features.{key}": value for key, value in tensors.items()}
    network = VGG19Features(layers)
    expected = network.state_dict()
    state = {key: value for key, value in tensors.items() if key in expected}
    missing = [key for key in expected if key not in state]
    if missing:
        raise InputError(f"{path}: not VGG19 weights in torchvision's layout (missing {', '.join(missing[:4])}"
                         f"{' …' if len(missing) > 4 else ''})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise InputError(f"{path}: {key} has shape {tuple(value.shape)}, VGG19 needs {tuple(expected[key].shape)}")
    network.load_state_dict({key: value.float() for key, value in state.items()})
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network.eval()
