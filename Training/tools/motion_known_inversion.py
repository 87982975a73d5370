"""How much of a moved magnitude scan's motion can be undone when the motion is known: an upper bound for motion
correction by estimating the motion (autofocus), on the real moved scans of Training/real_scans_motion.py.

A moved scan is m = |A x|: A takes each segment of phase-encoding lines (rows) from the Fourier transform of the
image x rigidly moved, as MedTranslateLib.simulate.kspace_motion does. Given the true motion (each scan's seed), x
is found by gradient steps (Landweber) on sum((|A x| - m)^2) from x = m, kept >= 0, with A written in torch
(grid_sample for the moves; `operator` matches kspace_motion to within 1e-3 of its mean, tested). No prior: the
noise is fitted too. Each result is scored against the clean scan as the motion models are (SSIM, PSNR, MAE;
numbers in Training/README.md).

    .venv/bin/python Training/tools/motion_known_inversion.py [--steps 10] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from evaluate_real_scans import real_scans, reference_based  # noqa: E402
from real_scans_motion import SCANS, SEED, acquisitions, scan_motion  # noqa: E402

from MedTranslateLib.simulate import MotionEvent, motion_segments, move_affine  # noqa: E402


def sampling_grid(shape: Tuple[int, int], rotation_deg: float, shift: Sequence[float]) -> torch.Tensor:
    """(1, H, W, 2) grid_sample grid (align_corners=True) of simulate.move_affine's move."""
    height, width = shape
    matrix, offset = move_affine(shape, rotation_deg, shift)
    pixels = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"), -1).reshape(-1, 2)
    source = pixels @ matrix.T + offset
    normalised = np.stack([source[:, 1] / (width - 1), source[:, 0] / (height - 1)], -1) * 2.0 - 1.0
    return torch.tensor(normalised.reshape(1, height, width, 2), dtype=torch.float32)


def operator(events: Sequence[MotionEvent], shape: Tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A: (Z, 1, H, W) image -> (Z, 1, H, W) magnitude with `events`' motion, phase encoding along the rows."""
    parts: List[Tuple[torch.Tensor, torch.Tensor]] = []  # (unshifted row mask, grid or an empty tensor)
    for segment in motion_segments(events, shape[0]):
        rows = np.zeros(shape, dtype=np.float32)
        rows[segment.first:segment.last] = 1.0
        grid = torch.empty(0) if segment.reference else sampling_grid(shape, segment.rotation_deg,
                                                                      segment.shift_voxels)
        parts.append((torch.from_numpy(np.fft.ifftshift(rows)), grid))

    def apply(image: torch.Tensor) -> torch.Tensor:
        kspace = torch.zeros(image.shape[0], *shape, dtype=torch.complex64)
        for rows, grid in parts:
            moved = image if grid.numel() == 0 else torch.nn.functional.grid_sample(
                image, grid.expand(image.shape[0], -1, -1, -1), align_corners=True)
            kspace = kspace + rows * torch.fft.fft2(moved[:, 0])
        return torch.abs(torch.fft.ifft2(kspace))[:, None]

    return apply


def invert(moved: np.ndarray, events: Sequence[MotionEvent], steps: int) -> np.ndarray:
    """(Z, H, W) moved magnitude scan and its true motion -> (Z, H, W) float64 estimate of the still scan: `steps`
    gradient steps of size 1 (Landweber) on 0.5 * sum((|A x| - m)^2) from x = m, kept >= 0, m scaled by its 99.5th
    percentile."""
    scale = float(np.percentile(moved, 99.5)) or 1.0
    observed = torch.from_numpy(moved.astype(np.float32) / scale)[:, None]
    motion = operator(events, moved.shape[1:])
    image = observed.clone()
    for _ in range(steps):
        image.requires_grad_(True)
        residual = motion(image) - observed
        gradient, = torch.autograd.grad(0.5 * (residual ** 2).sum(), image)
        image = torch.relu(image.detach() - gradient)
    return image[:, 0].numpy().astype(np.float64) * scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args()
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    scans = real_scans()
    for offset, name in enumerate(SCANS):
        image = scans[name]
        moved = acquisitions(image, SEED + offset)["moved"]
        clean = sitk.GetArrayFromImage(image).astype(np.float64)
        estimate = invert(moved, scan_motion(image, np.random.default_rng(SEED + offset)), args.steps)
        results[name] = {"moved": reference_based(moved.astype(np.float64), clean),
                         "known_motion_inverted": reference_based(estimate, clean)}
        print(f"{name}: " + ", ".join(f"{key} SSIM {value['ssim']:.3f} MAE {value['mae']:.4f}"
                                      for key, value in results[name].items()), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "scans": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
