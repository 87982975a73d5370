"""Estimating a moved scan's motion from the scan alone (autofocus) on the real moved scans of
Training/real_scans_motion.py, the timing of the moves known, cut into fixed blocks or searched as change points:
how close a physical criterion gets to the known motion of Training/tools/motion_known_inversion.py.

The criterion is the data residual of an inversion held to the head's support. A moved scan is m = |A x| (A as in
motion_known_inversion: each segment of phase-encoding lines from the Fourier transform of the image x rigidly
moved). The support is drawn from m (`support_mask`); x is fitted to m by FISTA with x >= 0 and x = 0 outside the
support, so the ghosts in the air must be explained by the motion; the sum of squares left is the criterion
(`Problem.residual`). It runs on a few central slices, at half resolution by default (the central half of k-space
in both axes; every line keeps its timing, shifts are halved): its minimum stays at the true motion there, 6-14
times cheaper. A motion also frees the fit to explain the noise in the air (a shift of the outermost lines most
of all: the magnitude turns them into a haze on the noise floor). Unless `--no-twin`, the criterion takes that back
(`Problem.objective`): the same fit on a twin of the scan with no motion and the same noise level (`noise_twin`)
measures how much noise each motion explains. Shifts are searched up to MAX_SHIFT_MM.

The search with the timing given (`search`): moved segments that hold each other's mirror lines about the k-space
centre form a group (`mirror_groups`: the magnitude image mixes each line with its mirror). Each group, nearest the
centre first, gets the best shared pose of a dense grid (`pose_grid`, steps of GRID_STEP) with the others held,
screened at SCREEN_STEPS and the best RANK_KEEP ranked at RANK_STEPS, then REFINE_STEPS gradient steps on its
poses; then each segment of a group of several alike, alone; at the end JOINT_STEPS gradient steps on all poses at
full resolution. Segments mostly outside the half band are searched at full resolution. Pose gradients use the
fitted image held fixed (the envelope of the fit). The segments are the true ones (`--timing known`) or fixed
blocks of lines (`--timing blocks`, `block_segments`). With `--timing changes` the timing is searched too
(`search_changes`): the moves are change points on each side of the k-space centre, which keeps the reference pose
(`Timing`), added one at a time. The scan is then inverted with the found motion as motion_known_inversion inverts
with the true one, and scored against the clean scan (numbers in Training/README.md).

    .venv/bin/python Training/tools/motion_autofocus.py [--scans brain2 ...] [--timing known|blocks|changes]
        [--no-twin] [--slices 2] [--threads 1] [--inversion-steps 10 ...] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from evaluate_real_scans import real_scans, reference_based  # noqa: E402
from motion_known_inversion import acquire, invert_segments_iterates, moved_segments, row_masks  # noqa: E402
from real_scans_motion import SCANS, SEED, acquisitions, scan_motion  # noqa: E402

from MedTranslateLib.metrics import largest_component  # noqa: E402
from MedTranslateLib.simulate import rician_noise  # noqa: E402

SUPPORT_SMOOTHING_VOXELS = 2.0
SUPPORT_THRESHOLD = 0.1  # of the moved scan's 99.5th percentile
SUPPORT_GROWTH_VOXELS = 2
GRID_EXTENT = 9.0  # degrees
MAX_SHIFT_MM = 10.0  # a head held in a coil moves a centimetre at most; the simulation's moves reach 10 mm apart
GRID_STEP = 1.5
SCREEN_STEPS = 10
RANK_KEEP = 32
RANK_STEPS = 60
REFINE_STEPS = 15
JOINT_STEPS = 30
POSE_LEARNING_RATE = 0.1
FIT_STEP_SIZE = 0.5  # step 1 diverges after about 100 steps on Colin27 (|A x| is not smooth where A x is 0)
INVERSION_STEPS = 10
TWIN_WEIGHT = 2.0
NOISE_MARGIN = 6  # pixels beyond the support where noise_twin reads the noise level
CHANGE_STEP = 3.0  # pose grid of the change search (twice as coarse at full resolution), refined by gradient steps
CHANGE_RATIO = 1.35  # candidate change lines lie at distances round(CHANGE_RATIO ** k) from the k-space centre
CHANGE_KEEP = 3  # the best poses ranked at each candidate change, ranked again at full resolution
CHANGE_GAIN = 0.05  # a change is kept when it lowers the criterion by this fraction
MAX_CHANGES = 4
SIDES = {"below": ("below",), "above": ("above",), "both": ("below", "above")}  # "both": mirror changes at once


def support_mask(moved: np.ndarray) -> np.ndarray:
    """(Z, Y, X) bool: where the head may be in the (Z, Y, X) moved scan: smoothed in-plane, above
    SUPPORT_THRESHOLD of its 99.5th percentile, largest component, holes filled and grown in-plane."""
    smooth = ndimage.gaussian_filter(moved.astype(np.float32), (0.0, SUPPORT_SMOOTHING_VOXELS,
                                                                SUPPORT_SMOOTHING_VOXELS))
    mask = largest_component(smooth > SUPPORT_THRESHOLD * float(np.percentile(moved, 99.5)))
    growth = ndimage.generate_binary_structure(2, 1)
    for index in range(mask.shape[0]):
        mask[index] = ndimage.binary_dilation(ndimage.binary_fill_holes(mask[index]), growth,
                                              iterations=SUPPORT_GROWTH_VOXELS)
    return mask


@dataclass(frozen=True)
class Problem:
    """A moved scan's criterion at one resolution: `observed` (Z, 1, H, W) moved magnitude scaled by its 99.5th
    percentile, `support` (Z, 1, H, W) 0/1, `line_offset`: the full-resolution centred k-space line of this
    grid's line 0, `shift_scale`: this grid's pixels per full-resolution pixel."""

    observed: torch.Tensor
    support: torch.Tensor
    line_offset: int
    shift_scale: float
    max_shift: float  # the largest shift searched, in full-resolution pixels
    twin: Optional["Problem"] = None  # the same criterion on a still scan with this scan's noise (noise_twin)
    twin_still: float = 0.0  # the twin's residual with no motion

    def lines_seen(self, first: int, last: int) -> int:
        """How many of the full-resolution centred lines first..last-1 this grid holds."""
        return max(min(last, self.line_offset + self.observed.shape[2]) - max(first, self.line_offset), 0)

    def row_masks(self, segments: Sequence[Tuple[int, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """motion_known_inversion.row_masks of the moved `segments` (full-resolution centred lines) on this grid."""
        return row_masks(segments, tuple(self.observed.shape[2:]), self.line_offset)

    def forward(self, image: torch.Tensor, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor]
                ) -> torch.Tensor:
        """|A x|: (Z, 1, H, W) `image` acquired with each moved segment at its row of `poses` (S, 3)."""
        return acquire(image, poses, masks, self.shift_scale)

    def fit(self, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor], steps: int,
            start: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(Z, 1, H, W) image x >= 0, zero outside the support, fitted to the observed scan by `steps` FISTA steps
        of FIT_STEP_SIZE on 0.5 * sum((|A x| - m)^2) from `start` (default: the masked observed scan), the momentum
        restarted whenever it points uphill (O'Donoghue and Candes 2015)."""
        poses = poses.detach()
        image = (self.observed * self.support) if start is None else start.detach()
        momentum_point, momentum = image, 1.0
        for _ in range(steps):
            momentum_point = momentum_point.detach().requires_grad_(True)
            loss = 0.5 * ((self.forward(momentum_point, poses, masks) - self.observed) ** 2).sum()
            gradient, = torch.autograd.grad(loss, momentum_point)
            following = torch.relu(momentum_point.detach() - FIT_STEP_SIZE * gradient) * self.support
            if float(((momentum_point.detach() - following) * (following - image)).sum()) > 0.0:
                momentum = 1.0  # adaptive restart: the momentum points uphill
            next_momentum = (1.0 + math.sqrt(1.0 + 4.0 * momentum ** 2)) / 2.0
            momentum_point = following + ((momentum - 1.0) / next_momentum) * (following - image)
            image, momentum = following, next_momentum
        return image.detach()

    def residual(self, image: torch.Tensor, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor]
                 ) -> torch.Tensor:
        """The criterion: sum of squares of |A x| - m for the fitted `image` (differentiable in `poses`)."""
        return ((self.forward(image, poses, masks) - self.observed) ** 2).sum()

    def objective(self, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor], steps: int
                  ) -> torch.Tensor:
        """The criterion after `steps` fitting steps from the masked observed scan (differentiable in `poses`
        through the envelope of the fit): the residual, plus whatever the same motion lowers the twin's residual
        below its still one. A motion on some lines frees the image to fit noise in the air around the head
        (most of all a shift of the outermost lines); on the twin, which has no motion to find, that is all a
        motion explains. The penalty is TWIN_WEIGHT times it (Mallows' Cp: twice the noise a fit explains)."""
        value = self.residual(self.fit(poses, masks, steps), poses, masks)
        if self.twin is not None:
            twin = self.twin.residual(self.twin.fit(poses, masks, steps), poses, masks)
            value = value + TWIN_WEIGHT * torch.relu(self.twin_still - twin)
        return value

    def score(self, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor], steps: int) -> float:
        """`objective` as a number."""
        return float(self.objective(poses.detach(), masks, steps).detach())


def problem(moved: np.ndarray, slices: Sequence[int], support: Optional[np.ndarray] = None,
            spacing_mm: Optional[float] = None) -> Problem:
    """The full-resolution criterion of the (Z, Y, X) moved scan on its `slices`, phase encoding along Y; `support`:
    the scan's support_mask, when already drawn; shifts searched up to MAX_SHIFT_MM at the in-plane pixel size
    `spacing_mm`, or GRID_EXTENT pixels when it is not given."""
    scale = float(np.percentile(moved, 99.5)) or 1.0
    support = (support_mask(moved) if support is None else support)[list(slices)]
    observed = torch.from_numpy((moved[list(slices)] / scale).astype(np.float32))[:, None]
    max_shift = GRID_EXTENT if spacing_mm is None else MAX_SHIFT_MM / spacing_mm
    return Problem(observed, torch.from_numpy(support.astype(np.float32))[:, None], 0, 1.0, max_shift)


def half_resolution(full: Problem) -> Problem:
    """`full` on the central half of its k-space in both axes: the observed scan low-passed by cropping its Fourier
    transform (magnitude of the result, scaled by 1/4 for the smaller grid), the support max-pooled."""
    height, width = full.observed.shape[2:]
    low_h, low_w = height // 2, width // 2
    first_r, first_c = height // 2 - low_h // 2, width // 2 - low_w // 2
    spectrum = torch.fft.fftshift(torch.fft.fft2(full.observed[:, 0]), dim=(-2, -1))
    cropped = spectrum[:, first_r:first_r + low_h, first_c:first_c + low_w]
    observed = torch.abs(torch.fft.ifft2(torch.fft.ifftshift(cropped, dim=(-2, -1)))) * (low_h * low_w) / (
        height * width)
    support = torch.nn.functional.adaptive_max_pool2d(full.support, (low_h, low_w))
    low = Problem(observed[:, None].float(), support, full.line_offset + first_r, full.shift_scale * low_h / height,
                  full.max_shift)
    return low if full.twin is None else with_twin(low, half_resolution(full.twin))


def with_twin(crit: Problem, twin: Problem) -> Problem:
    """`crit` with `twin` (no twin of its own) as its noise twin."""
    return dataclasses.replace(crit, twin=twin, twin_still=twin.score(torch.zeros(0, 3), twin.row_masks([]), 0))


def noise_twin(crit: Problem, seed: int) -> Problem:
    """`crit` with a noise twin: its still image (the observed scan inside the support) with Rician noise of the
    observed scan's level (the median of the air NOISE_MARGIN pixels beyond the support over sqrt(2 ln 2), the
    median of noise alone) drawn by `seed`."""
    beyond = torch.nn.functional.max_pool2d(crit.support, 2 * NOISE_MARGIN + 1, stride=1, padding=NOISE_MARGIN) == 0
    level = float(crit.observed[beyond].median()) / math.sqrt(2.0 * math.log(2.0))
    still = (crit.observed * crit.support).numpy()
    noisy = torch.from_numpy(rician_noise(still, level, np.random.default_rng(seed)).astype(np.float32))
    return with_twin(crit, dataclasses.replace(crit, observed=noisy))


def pose_grid(step: float, max_shift: float) -> torch.Tensor:
    """(P, 3) poses of a grid of about `step`: rotation from -GRID_EXTENT to GRID_EXTENT degrees, shifts from
    -`max_shift` to `max_shift` pixels."""
    rotations = np.linspace(-GRID_EXTENT, GRID_EXTENT, 2 * round(GRID_EXTENT / step) + 1)
    shifts = np.linspace(-max_shift, max_shift, 2 * round(max_shift / step) + 1)
    return torch.tensor(list(itertools.product(rotations, shifts, shifts)), dtype=torch.float32)


def refine(crit: Problem, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor], free: Sequence[int],
           steps: int) -> Tuple[torch.Tensor, float]:
    """(poses, criterion at RANK_STEPS) after `steps` Adam steps on the poses of segments `free`, each gradient
    taken with the image fitted to the current poses held fixed; the poses of lowest criterion are kept."""
    best, best_residual = poses.clone(), math.inf
    current = poses.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([current], lr=POSE_LEARNING_RATE)
    chosen = torch.zeros(len(poses), 1)
    chosen[list(free)] = 1.0
    for step in range(steps + 1):
        residual = crit.objective(current, masks, RANK_STEPS)
        if float(residual.detach()) < best_residual:
            best, best_residual = current.detach().clone(), float(residual.detach())
        if step == steps:
            break
        optimiser.zero_grad()
        residual.backward()
        current.grad *= chosen
        optimiser.step()
        with torch.no_grad():
            current[:, 0].clamp_(-GRID_EXTENT, GRID_EXTENT)
            current[:, 1:].clamp_(-crit.max_shift, crit.max_shift)
    return best, best_residual


def shortlist(candidates: Sequence[Any], score: Callable[[Any, int], float]) -> List[Tuple[float, Any]]:
    """The RANK_KEEP `candidates` of lowest `score`(candidate, SCREEN_STEPS), as (score at RANK_STEPS, candidate),
    lowest first."""
    screened = sorted(candidates, key=lambda candidate: score(candidate, SCREEN_STEPS))[:RANK_KEEP]
    return sorted(((score(candidate, RANK_STEPS), candidate) for candidate in screened), key=lambda pair: pair[0])


def search_poses(crit: Problem, poses: torch.Tensor, masks: Tuple[torch.Tensor, torch.Tensor],
                 indices: Sequence[int], log: List[str]) -> torch.Tensor:
    """`poses` with one pose shared by the segments `indices` chosen from the dense grid (screened, ranked), then
    their poses refined."""
    candidates = pose_grid(GRID_STEP, crit.max_shift)

    def trial(candidate: torch.Tensor) -> torch.Tensor:
        shared = poses.clone()
        shared[list(indices)] = candidate
        return shared

    ranked = shortlist(candidates, lambda candidate, steps: crit.score(trial(candidate), masks, steps))
    best, residual = refine(crit, trial(ranked[0][1]), masks, indices, REFINE_STEPS)
    resolution = "half" if crit.shift_scale < 1.0 else "full"
    log.append(f"segments {list(indices)} ({resolution} resolution): grid {ranked[0][1].tolist()} "
               f"({ranked[0][0]:.4g}), refined {[[round(v, 2) for v in best[i].tolist()] for i in indices]} "
               f"({residual:.4g})")
    print(log[-1], flush=True)
    return best


def mirror_groups(segments: Sequence[Tuple[int, int]], lines: int) -> List[List[int]]:
    """The segments joined where one holds the mirror of another's line about the k-space centre (line
    lines // 2): the magnitude image mixes each line with its mirror, so such segments are undone together."""
    centre = lines // 2
    group = list(range(len(segments)))
    for i, (first, last) in enumerate(segments):
        low, high = 2 * centre - last + 1, 2 * centre - first + 1  # the mirrors of lines first..last-1
        for j, (other_first, other_last) in enumerate(segments):
            if j != i and max(low, other_first) < min(high, other_last):
                old, new = group[j], group[i]
                group = [new if g == old else g for g in group]
    return [[i for i in range(len(segments)) if group[i] == g] for g in sorted(set(group))]


def block_segments(lines: int) -> List[Tuple[int, int]]:
    """The timing unknown: blocks of lines (first, last) on both sides of the k-space centre line, which keeps the
    reference pose, out to a quarter of the lines: 1, 2 and 4 lines nearest the centre, then up to `lines` / 16
    each, every block with a pose of its own. The lines beyond keep the reference pose."""
    centre = lines // 2
    edges = [0, 1, 3, 7] + [edge for edge in (round(k * lines / 16) - 1 for k in range(1, 5)) if edge > 7]
    blocks: List[Tuple[int, int]] = []
    for inner, outer in zip(edges[:-1], edges[1:]):
        blocks += [(centre - outer, centre - inner), (centre + inner + 1, centre + outer + 1)]
    return blocks


@dataclass(frozen=True)
class Timing:
    """Moves as change points on each side of the k-space centre line c of `lines` lines, which keeps the
    reference pose. `below`: (distance d, pose) pairs, lines c - d and all below it up to the next change take the
    pose; `above` likewise from line c + d up. Distances ascend on each side."""

    lines: int
    below: Tuple[Tuple[int, Tuple[float, float, float]], ...] = ()
    above: Tuple[Tuple[int, Tuple[float, float, float]], ...] = ()

    def segments(self) -> Tuple[List[Tuple[int, int]], torch.Tensor]:
        """The moved segments' (first, last) centred lines and their (S, 3) poses."""
        centre, segments, poses = self.lines // 2, [], []
        for changes, sign in ((self.below, -1), (self.above, 1)):
            ends = [d for d, _ in changes[1:]] + [centre + 1 if sign < 0 else self.lines - centre]
            for (distance, pose), end in zip(changes, ends):
                first, last = (centre - end + 1, centre - distance + 1) if sign < 0 else (centre + distance,
                                                                                          centre + end)
                segments.append((first, last))
                poses.append(pose)
        return segments, torch.tensor(poses, dtype=torch.float32).reshape(-1, 3)

    def with_change(self, side: str, distance: int, poses: Sequence[Sequence[float]]) -> "Timing":
        """This timing with a change at `distance` on `side` (a key of SIDES) to `poses`, one per side it names."""
        timing = self
        for one, pose in zip(SIDES[side], poses):
            changes = dict(getattr(timing, one))
            changes[distance] = tuple(float(v) for v in pose)
            timing = dataclasses.replace(timing, **{one: tuple(sorted(changes.items()))})
        return timing

    def poses_at(self, side: str, distance: int) -> List[Tuple[float, float, float]]:
        """The poses of the change at `distance` on each side `side` names."""
        return [dict(getattr(self, one))[distance] for one in SIDES[side]]

    def taken(self, side: str) -> Set[int]:
        """The distances of the changes on the sides `side` names."""
        return {d for one in SIDES[side] for d, _ in getattr(self, one)}

    def with_poses(self, poses: torch.Tensor) -> "Timing":
        """This timing's changes with the (S, 3) `poses` in `segments`' order."""
        values = [tuple(float(v) for v in pose) for pose in poses.tolist()]
        count = len(self.below)
        return Timing(self.lines, tuple((d, p) for (d, _), p in zip(self.below, values[:count])),
                      tuple((d, p) for (d, _), p in zip(self.above, values[count:])))

    def index(self, side: str, distance: int) -> List[int]:
        """The rows in `segments` of the segments starting at the change `distance` on the sides `side` names."""
        rows = []
        for one in SIDES[side]:
            distances = [d for d, _ in getattr(self, one)]
            rows.append((0 if one == "below" else len(self.below)) + distances.index(distance))
        return rows


def change_distances(lines: int, side: str) -> List[int]:
    """Candidate distances of a change from the k-space centre line on `side`: round(CHANGE_RATIO ** k)."""
    reach = lines // 2 if side == "below" else lines - lines // 2 - 1  # "both" reaches as far as "above"
    return sorted({round(CHANGE_RATIO ** k) for k in range(64) if round(CHANGE_RATIO ** k) <= reach})


def search_changes(full: Problem, screen_half: bool, log: List[str]) -> Timing:
    """The timing and poses of the moves found on the `full`-resolution criterion: change points added one at a
    time, each the best of every candidate side (SIDES), distance and pose of a grid of CHANGE_STEP (screened at
    SCREEN_STEPS, the best RANK_KEEP of each change again at RANK_STEPS, and its best CHANGE_KEEP at full
    resolution), its poses refined and its line moved to the best between its neighbouring candidates; kept while
    it lowers the criterion by CHANGE_GAIN, at most MAX_CHANGES; then all poses refined together."""
    lines = full.observed.shape[2]
    low = half_resolution(full) if screen_half else full

    def criterion(timing: Timing, side: str, distance: int) -> Problem:
        first, last = timing.segments()[0][timing.index(side, distance)[0]]
        return low if low.lines_seen(first, last) > 0 else full  # a change whose first lines lie in the band shows

    def rank_score(timing: Timing) -> float:
        segments, poses = timing.segments()
        return full.score(poses, full.row_masks(segments), RANK_STEPS)

    timing = Timing(lines)
    current = rank_score(timing)
    log.append(f"none: {current:.4g}")
    print(log[-1], flush=True)
    for _ in range(MAX_CHANGES):
        kept = []
        for side, sides in SIDES.items():
            for distance in (d for d in change_distances(lines, side) if d not in timing.taken(side)):
                changed = timing.with_change(side, distance, [(0.0, 0.0, 0.0)] * len(sides))
                crit = criterion(changed, side, distance)
                segments, still = changed.segments()
                masks, rows = crit.row_masks(segments), changed.index(side, distance)

                def trial_score(pose: Tuple[float, ...], steps: int) -> float:
                    poses = still.clone()
                    poses[rows] = torch.tensor(pose, dtype=torch.float32)
                    return crit.score(poses, masks, steps)

                grid = pose_grid(CHANGE_STEP if crit is low else 2.0 * CHANGE_STEP, full.max_shift).tolist()
                kept += [(score if crit is full else None, side, distance, pose)  # at full resolution: ranked
                         for score, pose in shortlist(list(map(tuple, grid)), trial_score)[:CHANGE_KEEP]]
        ranked = sorted((rank_score(timing.with_change(side, d, [pose] * len(SIDES[side]))) if score is None
                         else score, side, d, pose) for score, side, d, pose in kept)
        _, side, distance, pose = ranked[0]
        trial = timing.with_change(side, distance, [pose] * len(SIDES[side]))
        segments, poses = trial.segments()
        poses, residual = refine(full, poses, full.row_masks(segments), trial.index(side, distance), REFINE_STEPS)
        trial = trial.with_poses(poses)
        poses_found = trial.poses_at(side, distance)
        candidates = change_distances(lines, side)
        at = candidates.index(distance)
        for moved_to in range(candidates[max(at - 1, 0)] + 1, candidates[min(at + 1, len(candidates) - 1)]):
            if moved_to != distance and moved_to not in timing.taken(side):
                score = rank_score(timing.with_change(side, moved_to, poses_found))
                if score < residual:
                    trial, residual = timing.with_change(side, moved_to, poses_found), score
        accepted = residual < (1.0 - CHANGE_GAIN) * current
        log.append(f"change {side} {sorted(trial.taken(side))}: {[[round(v, 2) for v in p] for p in poses_found]} "
                   f"({residual:.4g} against {current:.4g}){'' if accepted else ', not kept'}")
        print(log[-1], flush=True)
        if not accepted:
            break
        timing, current = trial, residual
    segments, poses = timing.segments()
    poses, residual = refine(full, poses, full.row_masks(segments), range(len(segments)), JOINT_STEPS)
    log.append(f"joint: {segments} {[[round(v, 2) for v in pose] for pose in poses.tolist()]} ({residual:.4g})")
    print(log[-1], flush=True)
    return timing.with_poses(poses)


def search(full: Problem, segments: Sequence[Tuple[int, int]], screen_half: bool, log: List[str]) -> torch.Tensor:
    """(S, 3) poses of the moved `segments` (full-resolution centred lines) found on the `full`-resolution
    criterion (module docstring)."""
    lines = full.observed.shape[2]
    low = half_resolution(full) if screen_half else full
    centre = lines // 2

    def distance(indices: Sequence[int]) -> int:
        return min(min(abs(segments[i][0] - centre), abs(segments[i][1] - 1 - centre)) for i in indices)

    def criterion(indices: Sequence[int]) -> Problem:
        lines = sum(segments[i][1] - segments[i][0] for i in indices)
        seen = sum(low.lines_seen(*segments[i]) for i in indices)
        return low if 2 * seen >= lines else full  # segments mostly outside the half band: full resolution

    poses = torch.zeros(len(segments), 3)
    groups = sorted(mirror_groups(segments, lines), key=distance)
    for group in groups:
        screen = criterion(group)
        poses = search_poses(screen, poses, screen.row_masks(segments), group, log)
    for index in sorted((i for group in groups if len(group) > 1 for i in group), key=lambda i: distance([i])):
        screen = criterion([index])
        poses = search_poses(screen, poses, screen.row_masks(segments), [index], log)
    poses, residual = refine(full, poses, full.row_masks(segments), range(len(segments)), JOINT_STEPS)
    log.append(f"joint: {[[round(v, 2) for v in pose] for pose in poses.tolist()]} ({residual:.4g})")
    print(log[-1], flush=True)
    return poses


def central_slices(support: np.ndarray, count: int) -> List[int]:
    """The `count` slices around the middle of the head's extent along Z in the scan's (Z, Y, X) `support`
    (support_mask; all slices of the head when count <= 0)."""
    occupied = np.flatnonzero(support.any(axis=(1, 2)))
    if count <= 0:
        return occupied.tolist()
    middle = int(occupied.mean().round())
    first = max(middle - count // 2, 0)
    return list(range(first, min(first + count, support.shape[0])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", nargs="+", default=list(SCANS), choices=SCANS)
    parser.add_argument("--timing", choices=("known", "blocks", "changes"), default="known",
                        help="the true segments' lines, blocks of lines each with its own pose (block_segments), "
                             "or change points found with the poses (search_changes)")
    parser.add_argument("--no-twin", action="store_true", help="the criterion without its noise twin's penalty")
    parser.add_argument("--slices", type=int, default=2, help="central slices the criterion sees (0: all)")
    parser.add_argument("--full-resolution", action="store_true", help="screen at full resolution too")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--inversion-steps", type=int, nargs="+", default=[INVERSION_STEPS],
                        help="Landweber steps of the inversion with the found motion, one score for each (fewer "
                             "tolerate more error)")
    parser.add_argument("--out", type=Path, default=None, help="write the scores and poses as JSON here")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    results: Dict[str, Dict[str, object]] = {}
    scans = real_scans()
    for name in args.scans:
        image = scans[name]
        seed = SEED + SCANS.index(name)
        moved = acquisitions(image, seed)["moved"]
        clean = sitk.GetArrayFromImage(image).astype(np.float64)
        true_segments, true_poses = moved_segments(scan_motion(image, np.random.default_rng(seed)), moved.shape[1])
        support = support_mask(moved)
        full = problem(moved, central_slices(support, args.slices), support, image.GetSpacing()[1])
        full = full if args.no_twin else noise_twin(full, seed)
        log: List[str] = []
        started = time.time()
        if args.timing == "changes":
            segments, poses = search_changes(full, not args.full_resolution, log).segments()
        else:
            segments = true_segments if args.timing == "known" else block_segments(moved.shape[1])
            poses = search(full, segments, not args.full_resolution, log)
        seconds = time.time() - started
        results[name] = {
            "segments": segments, "found_poses": poses.tolist(), "true_segments": true_segments,
            "true_poses": true_poses.tolist(),
            "residual": {"none": full.score(torch.zeros(0, 3), full.row_masks([]), RANK_STEPS),
                         "truth": full.score(true_poses, full.row_masks(true_segments), RANK_STEPS),
                         "found": full.score(poses, full.row_masks(segments), RANK_STEPS)},
            "moved": reference_based(moved.astype(np.float64), clean),
            "found_motion_inverted": {str(steps): reference_based(estimate, clean) for steps, estimate in
                                      invert_segments_iterates(moved, segments, poses, args.inversion_steps).items()},
            "seconds": round(seconds, 1), "log": log}
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'log'})}", flush=True)
    if args.out:
        summary = {"timing": args.timing, "slices": args.slices, "inversion_steps": args.inversion_steps,
                   "scans": results}
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
