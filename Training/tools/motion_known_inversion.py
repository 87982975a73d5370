"""How much of a moved magnitude scan's motion can be undone when the motion is known: an upper bound for motion
correction by estimating the motion (autofocus), on the real moved scans of Training/real_scans_motion.py.

A moved scan is m = |A x|: A takes each segment of phase-encoding lines (rows) from the Fourier transform of the
image x rigidly moved, as MedTranslateLib.simulate.kspace_motion does. Given the true motion (each scan's seed), x
is found by gradient steps (Landweber) on sum((|A x| - m)^2) from x = m, kept >= 0, with A written in torch
(grid_sample for the moves; `operator` matches kspace_motion to within 1e-3 of its mean, tested). No prior: the
noise is fitted too. Each result is scored against the clean scan as the motion models are (SSIM, PSNR, MAE;
numbers in Training/README.md).

With `--errors` it also measures how exact an estimate of the motion must be for the inversion to help: the true
motion with errors (`with_errors`), each pose number off by a normal draw of POSE_ERRORS (degrees, pixels), or each
line where the pose changes moved by BOUNDARY_ERRORS lines, ERROR_DRAWS draws each.

    .venv/bin/python Training/tools/motion_known_inversion.py [--steps 10] [--errors] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from evaluate_real_scans import real_scans, reference_based  # noqa: E402
from real_scans_motion import SCANS, SEED, acquisitions, scan_motion  # noqa: E402

from MedTranslateLib.simulate import MotionEvent, motion_segments  # noqa: E402

POSE_ERRORS = (0.25, 0.5, 1.0, 2.0)  # standard deviation of each pose number's error: degrees, pixels
BOUNDARY_ERRORS = (1, 2, 4, 8)  # lines by which each change of pose is moved
ERROR_DRAWS = 3
ERROR_SEED = 0


def sampling_grid(shape: Tuple[int, int], pose: torch.Tensor, shift_scale: float = 1.0) -> torch.Tensor:
    """(1, H, W, 2) grid_sample grid (align_corners=True) of simulate.move_affine's move by `pose` (3,): rotation
    in degrees about the slice centre, then the shift (rows, columns) in full-resolution pixels times
    `shift_scale`; differentiable in `pose`."""
    height, width = shape
    angle = pose[0] * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")
    centre_r, centre_c = (height - 1) / 2.0, (width - 1) / 2.0
    source_r = cos * (rows - centre_r) - sin * (cols - centre_c) + centre_r - pose[1] * shift_scale
    source_c = sin * (rows - centre_r) + cos * (cols - centre_c) + centre_c - pose[2] * shift_scale
    return torch.stack([source_c / (width - 1), source_r / (height - 1)], -1)[None] * 2.0 - 1.0


def row_masks(segments: Sequence[Tuple[int, int]], shape: Tuple[int, int], line_offset: int = 0
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """((S, H, W) ifftshifted masks of each moved segment's lines (first, last: centred k-space lines of the full
    grid, whose line `line_offset` is this grid's line 0), (H, W) mask of the other lines)."""
    masks = np.zeros((len(segments), *shape), dtype=np.float32)
    for index, (first, last) in enumerate(segments):
        masks[index, max(first - line_offset, 0):max(last - line_offset, 0)] = 1.0
    still = 1.0 - masks.sum(0)
    return (torch.from_numpy(np.fft.ifftshift(masks, axes=(1, 2))),
            torch.from_numpy(np.fft.ifftshift(still).copy()))


def acquire(image: torch.Tensor, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor],
            shift_scale: float = 1.0) -> torch.Tensor:
    """|A x|: (Z, 1, H, W) `image` acquired with each moved segment of `masks` (row_masks) at its row of `poses`
    (S, 3), phase encoding along the rows."""
    segment_masks, still = masks
    still_spectrum = torch.fft.fft2(image[:, 0])
    kspace = still * still_spectrum
    for mask, pose in zip(segment_masks, poses):
        if not bool(mask.any()):
            continue
        if not pose.requires_grad and not bool(pose.any()):  # at the reference pose: no move to sample
            kspace = kspace + mask * still_spectrum
            continue
        grid = sampling_grid(tuple(image.shape[2:]), pose, shift_scale)
        moved = torch.nn.functional.grid_sample(image, grid.expand(image.shape[0], -1, -1, -1), align_corners=True)
        kspace = kspace + mask * torch.fft.fft2(moved[:, 0])
    return torch.abs(torch.fft.ifft2(kspace))[:, None]


def moved_segments(events: Sequence[MotionEvent], lines: int) -> Tuple[List[Tuple[int, int]], torch.Tensor]:
    """The segments of `events` that are not at the reference pose: their (first, last) centred k-space lines of
    `lines` and their (S, 3) poses (rotation in degrees, shift in rows and columns)."""
    moved = [segment for segment in motion_segments(events, lines) if not segment.reference]
    poses = torch.tensor([[segment.rotation_deg, *segment.shift_voxels] for segment in moved], dtype=torch.float32)
    return [(segment.first, segment.last) for segment in moved], poses.reshape(-1, 3)


def operator(events: Sequence[MotionEvent], shape: Tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A: (Z, 1, H, W) image -> (Z, 1, H, W) magnitude with `events`' motion, phase encoding along the rows."""
    segments, poses = moved_segments(events, shape[0])
    masks = row_masks(segments, shape)
    return lambda image: acquire(image, poses, masks)


def landweber(moved: np.ndarray, motion: Callable[[torch.Tensor], torch.Tensor], steps: int) -> np.ndarray:
    """(Z, H, W) moved magnitude scan and A (`motion`, on the scan scaled by its 99.5th percentile) -> (Z, H, W)
    float64 estimate of the still scan: `steps` gradient steps of size 1 (Landweber) on 0.5 * sum((|A x| - m)^2)
    from x = m, kept >= 0."""
    return landweber_iterates(moved, motion, [steps])[steps]


def landweber_iterates(moved: np.ndarray, motion: Callable[[torch.Tensor], torch.Tensor], steps: Sequence[int]
                       ) -> Dict[int, np.ndarray]:
    """`landweber`'s estimate after each number of `steps`, from one run of max(steps) steps."""
    scale = float(np.percentile(moved, 99.5)) or 1.0
    observed = torch.from_numpy(moved.astype(np.float32) / scale)[:, None]
    image = observed.clone()
    estimates = {0: image.detach()} if 0 in steps else {}
    for step in range(1, max(steps) + 1):
        image.requires_grad_(True)
        residual = motion(image) - observed
        gradient, = torch.autograd.grad(0.5 * (residual ** 2).sum(), image)
        image = torch.relu(image.detach() - gradient)
        if step in steps:
            estimates[step] = image.detach()  # the next step marks `image` as requiring grad
    return {step: estimates[step][:, 0].numpy().astype(np.float64) * scale for step in steps}


def invert_segments(moved: np.ndarray, segments: Sequence[Tuple[int, int]], poses: torch.Tensor, steps: int
                    ) -> np.ndarray:
    """(Z, H, W) moved magnitude scan and a motion, its moved `segments` (first, last centred lines) and their (S, 3)
    `poses` -> (Z, H, W) float64 estimate of the still scan (`landweber` with that motion's A)."""
    return invert_segments_iterates(moved, segments, poses, [steps])[steps]


def invert_segments_iterates(moved: np.ndarray, segments: Sequence[Tuple[int, int]], poses: torch.Tensor,
                             steps: Sequence[int]) -> Dict[int, np.ndarray]:
    """`invert_segments`' estimate after each number of `steps`, from one inversion (`landweber_iterates`)."""
    masks = row_masks(segments, moved.shape[1:])
    return landweber_iterates(moved, lambda image: acquire(image, poses, masks), steps)


def invert(moved: np.ndarray, events: Sequence[MotionEvent], steps: int) -> np.ndarray:
    """`invert_segments` with the motion given as its `events` (the true motion)."""
    return invert_segments(moved, *moved_segments(events, moved.shape[1]), steps)


def with_errors(segments: Sequence[Tuple[int, int]], poses: torch.Tensor, lines: int, rng: np.random.Generator,
                pose_error: float = 0.0, boundary_error: int = 0) -> Tuple[List[Tuple[int, int]], torch.Tensor]:
    """The moved `segments` and (S, 3) `poses` with errors: every pose number plus a normal draw of standard
    deviation `pose_error`; every line where the pose changes (an edge of a segment inside 0..`lines`) moved up or
    down by `boundary_error` lines at random, the same for both segments it divides, kept within 1..`lines` - 1.
    Segments that close up are dropped."""
    edges = sorted({edge for segment in segments for edge in segment if 0 < edge < lines})
    signs = rng.choice((-1, 1), size=len(edges))
    moved_edge = {edge: int(np.clip(edge + sign * boundary_error, 1, lines - 1)) for edge, sign in zip(edges, signs)}
    moved_edge.update({0: 0, lines: lines})
    noisy = poses + torch.from_numpy(rng.normal(0.0, pose_error, tuple(poses.shape))).float()
    kept = [(index, (moved_edge[first], moved_edge[last])) for index, (first, last) in enumerate(segments)
            if moved_edge[first] < moved_edge[last]]
    return [segment for _, segment in kept], noisy[[index for index, _ in kept]].reshape(-1, 3)


def error_scores(moved: np.ndarray, clean: np.ndarray, events: Sequence[MotionEvent], steps: int
                 ) -> Dict[str, List[Dict[str, float]]]:
    """The scores of `moved` inverted with its true motion `events` given each error of POSE_ERRORS and
    BOUNDARY_ERRORS (ERROR_DRAWS draws each, from ERROR_SEED), keyed "pose E" and "lines E"."""
    segments, poses = moved_segments(events, moved.shape[1])
    rng = np.random.default_rng(ERROR_SEED)
    trials: Dict[str, Dict[str, Any]] = {f"pose {e}": {"pose_error": e} for e in POSE_ERRORS}
    trials.update({f"lines {e}": {"boundary_error": e} for e in BOUNDARY_ERRORS})
    scores: Dict[str, List[Dict[str, float]]] = {}
    for key, error in trials.items():
        scores[key] = []
        for _ in range(ERROR_DRAWS):
            wrong_segments, wrong_poses = with_errors(segments, poses, moved.shape[1], rng, **error)
            estimate = invert_segments(moved, wrong_segments, wrong_poses, steps)
            scores[key].append(reference_based(estimate, clean))
        print(f"  {key}: SSIM " + ", ".join(f"{s['ssim']:.3f}" for s in scores[key]) + "; MAE "
              + ", ".join(f"{s['mae']:.4f}" for s in scores[key]), flush=True)
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--errors", action="store_true", help="also invert with the true motion given errors")
    parser.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args()
    results: Dict[str, Dict[str, Any]] = {}
    scans = real_scans()
    for offset, name in enumerate(SCANS):
        image = scans[name]
        moved = acquisitions(image, SEED + offset)["moved"]
        clean = sitk.GetArrayFromImage(image).astype(np.float64)
        events = scan_motion(image, np.random.default_rng(SEED + offset))
        results[name] = {"moved": reference_based(moved.astype(np.float64), clean),
                         "known_motion_inverted": reference_based(invert(moved, events, args.steps), clean)}
        print(f"{name}: " + ", ".join(f"{key} SSIM {value['ssim']:.3f} MAE {value['mae']:.4f}"
                                      for key, value in results[name].items()), flush=True)
        if args.errors:
            results[name]["known_motion_with_errors"] = error_scores(moved, clean, events, args.steps)
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "scans": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
