"""The image history buffer of Shrivastava et al., as CycleGAN uses it for its discriminators.

The discriminators see, half of the time, a translated image from earlier steps instead of the newest one,
which damps oscillation. The pool draws from its own numpy Generator, so its choices are reproducible and
its whole state (images and generator) goes into checkpoints.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import numpy as np
import torch


class ImagePool:
    """Holds up to `size` earlier generator outputs (C, H, W); size 0 passes images through."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: List[torch.Tensor] = []
        self.generator = np.random.default_rng(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) newest outputs -> (B, C, H, W) for the discriminator, detached, float32.

        While the pool fills, the newest images pass and are stored. Once full, each image is with
        probability 1/2 swapped for a random stored one (which it replaces), else passed through.
        """
        images = images.detach().float()
        if self.size == 0:
            return images
        chosen = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif self.generator.random() > 0.5:
                index = int(self.generator.integers(0, self.size))
                chosen.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state_dict(self) -> Dict[str, Any]:
        """Plain data for a weights-only checkpoint: CPU tensors, ints and a JSON string."""
        return {"size": self.size, "images": [image.cpu() for image in self.images],
                "generator": json.dumps(self.generator.bit_generator.state)}

    def load_state_dict(self, state: Dict[str, Any], device: Any = "cpu") -> None:
        self.size = int(state["size"])
        self.images = [image.to(device) for image in state["images"]]
        self.generator.bit_generator.state = json.loads(state["generator"])
