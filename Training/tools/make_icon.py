"""Draw the module icon, MedTranslate/Resources/Icons/MedTranslate.png (128×128 RGBA), with numpy + SimpleITK.

An axial brain slice split down the middle: the left half in T1 contrast (white matter bright, CSF dark), the
right half in T2 contrast (CSF bright, white matter dark), and an arrow from one to the other.

    python Training/tools/make_icon.py [OUT.png]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SIZE = 128
SUPERSAMPLE = 4  # draw at 512×512, average 4×4 blocks: antialiased edges
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "MedTranslate" / "Resources" / "Icons" / "MedTranslate.png"

# tissue -> grey level (0..1) in each contrast
T1 = {"skull": 0.92, "csf": 0.12, "grey": 0.50, "white": 0.86, "background": 0.0}
T2 = {"skull": 0.25, "csf": 0.97, "grey": 0.62, "white": 0.38, "background": 0.0}


def tissue_maps(n: int) -> dict:
    """Boolean masks of each tissue on an n×n grid (y down, x right, both in -1..1)."""
    y, x = np.mgrid[-1:1:complex(0, n), -1:1:complex(0, n)]
    angle = np.arctan2(y, x)
    head = (x / 0.80) ** 2 + (y / 0.95) ** 2
    brain_radius = 0.86 + 0.02 * np.sin(15 * angle)  # a folded cortical edge
    brain = head < brain_radius ** 2
    skull = (head < 1.0) & ~brain
    white = (x / 0.56) ** 2 + (y / 0.70) ** 2 < (0.86 + 0.07 * np.sin(11 * angle + 0.5)) ** 2
    ventricles = np.zeros_like(brain)
    for side in (-1, 1):  # a butterfly of lateral ventricles
        ventricles |= ((x - side * 0.13) / 0.08) ** 2 + ((y + 0.05) / 0.33) ** 2 < 1.0
    sulci = brain & ~white & (np.abs(np.sin(15 * angle + 1.0)) < 0.07) & (head > 0.45)
    csf = ventricles | sulci
    return {"skull": skull, "csf": csf & brain, "white": white & brain & ~csf, "grey": brain & ~white & ~csf}


def arrow_mask(n: int) -> np.ndarray:
    """A right-pointing arrow across the middle of the image."""
    y, x = np.mgrid[-1:1:complex(0, n), -1:1:complex(0, n)]
    shaft = (np.abs(y) < 0.06) & (x > -0.36) & (x < 0.14)
    head = (x >= 0.12) & (x < 0.44) & (np.abs(y) < 0.22 * (0.44 - x) / 0.32)
    return shaft | head


def draw(size: int = SIZE) -> np.ndarray:
    """The icon as a uint8 [y, x, RGBA] array."""
    n = size * SUPERSAMPLE
    maps = tissue_maps(n)
    x = np.linspace(-1, 1, n)[None, :].repeat(n, axis=0)
    grey = np.zeros((n, n))
    for tissue, mask in maps.items():
        grey[mask] = np.where(x < 0, T1[tissue], T2[tissue])[mask]
    head = maps["skull"] | maps["csf"] | maps["white"] | maps["grey"]
    seam = np.abs(x) < 0.012  # a thin dark line between the two contrasts
    grey[seam & head] = 0.05
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[..., 2] = np.clip(rgb[..., 2] * 1.04 + 0.02, 0, 1)  # cool tint on the grey
    alpha = head.astype(float)

    arrow = arrow_mask(n)
    outline = _dilate(arrow, SUPERSAMPLE * 2) & ~arrow
    rgb[outline] = (0.10, 0.10, 0.12)
    rgb[arrow] = (1.00, 0.58, 0.10)  # orange
    alpha[arrow | outline] = 1.0

    rgba = np.concatenate([rgb, alpha[..., None]], axis=2)
    blocks = rgba.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean(axis=(1, 3))
    colour = blocks[..., :3] / np.maximum(blocks[..., 3:], 1e-6)  # un-premultiply averaged edges
    blocks[..., :3] = np.where(blocks[..., 3:] > 0, colour, 0)
    return np.clip(np.rint(blocks * 255), 0, 255).astype(np.uint8)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return out


def main(argv: list) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(draw(), isVector=True), str(out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
