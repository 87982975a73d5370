"""The one trainer every recipe runs in.

It owns the loop and everything around a recipe's `train_step`: seeding and determinism, data, the
learning-rate schedules, AMP (autocast + GradScaler on CUDA), DistributedDataParallel under torchrun, periodic
validation (PNG grid + MAE/PSNR/SSIM), logs (progress bar, CSV, TensorBoard when installed), atomic
checkpoints, exact resumption, Ctrl-C/SIGTERM checkpoints and the NaN/Inf guard.

Output folder (`train.out_dir`):

    config.json            the resolved config          losses.csv        losses every log_every steps
    checkpoints/step_N.pt  the newest keep_checkpoints  validation.csv    validation metrics
    checkpoints/best.pt    the best validated step (train.keep_best)
    train.log              the log lines                validation/step_N.png  input | output | target
    tensorboard/           when torch.utils.tensorboard imports

Under torchrun (WORLD_SIZE > 1) every process reads the data and, on --resume, the checkpoint; only rank 0
writes. Multi-node runs therefore need the data and train.out_dir on a filesystem all nodes share.
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..device import select_device
from ..engine import crop_to, pad_to_multiple
from ..errors import MedTranslateError
from ..metrics import compare, head_mask
from ..networks import size_multiple
from .checkpoint import (FORMAT, FORMAT_VERSION, best_checkpoint_path, capture_rng, checkpoint_folder,
                         checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, restore_rng,
                         save_checkpoint)
from .config import BEST_METRICS, ConfigError, TrainConfig, config_from_dict, flat_items
from .data import SliceDataset, TrainingData, ValidationSlices, collate, load_training_data
from .recipes import Recipe, RecipeContext, get_recipe
from .recipes.base import make_grad_scaler
from .schedule import LinearDecaySchedule

# keys a resumed run may change: run control and card text; anything else must match the checkpoint's
RESUMABLE_CHANGES = ("optim.steps", "optim.decay_start", "train.out_dir", "train.device", "train.amp",
                     "train.log_every", "train.val_every", "train.checkpoint_every", "train.keep_checkpoints",
                     "train.keep_best",
                     "data.workers", "model.id", "model.version", "model.license", "model.intended_use",
                     "model.description")
GRID_ROWS = 8


class TrainingDiverged(MedTranslateError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class TrainResult:
    """How a run ended: the step reached, the last checkpoint, the signal that stopped it (if any)."""

    step: int
    out_dir: Path
    checkpoint: Optional[Path]
    interrupted: Optional[str] = None
    history: List[Dict[str, float]] = field(default_factory=list)
    validation: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class Distributed:
    """torchrun's environment: this process's rank among `world` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def train(config: TrainConfig, resume: Optional[Any] = None, stop_at: Optional[int] = None,
          echo: bool = True) -> TrainResult:
    """Train `config`'s recipe. `resume`: a checkpoint path, or "latest" for the newest in out_dir.

    `stop_at` stops after that many total steps with a checkpoint, as an interruption would (time-boxed jobs).
    Raises ConfigError/InputError for bad configs or data, TrainingDiverged on a NaN/Inf loss.
    """
    return Trainer(config, resume=resume, stop_at=stop_at, echo=echo).run()


class Trainer:
    def __init__(self, config: TrainConfig, resume: Optional[Any] = None, stop_at: Optional[int] = None,
                 echo: bool = True) -> None:
        self.config = config
        self.resume = resume
        self.stop_at = stop_at
        self.echo = echo
        self.out_dir = Path(config.train.out_dir)
        self.dist = Distributed.from_env()
        self.stop_signal: Optional[int] = None
        self.history: List[Dict[str, float]] = []
        self.validation: List[Dict[str, Any]] = []
        self.baseline: Dict[str, Any] = {}
        self.last_checkpoint: Optional[Path] = None
        self.elapsed = 0.0
        self.bar: Any = None
        self.writer: Any = None
        self._previous_handlers: Dict[int, Any] = {}
        self._rank_rng: Optional[Dict[str, Any]] = None
        self.stream: Any = None

    # ================================================================================================= run
    def run(self) -> TrainResult:
        own_group, finished = False, False
        determinism = (torch.are_deterministic_algorithms_enabled(),
                       torch.is_deterministic_algorithms_warn_only_enabled())
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        self._install_signal_handlers()
        try:
            self.device = self._select_device()
            if self.dist.active and not torch.distributed.is_initialized():
                torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
                own_group = True
            self._set_determinism()
            self._setup()
            result = self._loop()
            finished = True
            return result
        finally:
            _close_loader(getattr(self, "batches", None))
            self.batches = None
            if self.bar is not None:
                self.bar.close()
            if self.writer is not None:
                self.writer.close()
            self._restore_signal_handlers()
            torch.use_deterministic_algorithms(determinism[0], warn_only=determinism[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            if own_group:
                if finished:  # every rank stops at the same step (_agree): none tears the group down mid-collective
                    torch.distributed.barrier()
                torch.distributed.destroy_process_group()

    def _select_device(self) -> torch.device:
        device = select_device(self.config.train.device)
        if device.type == "cuda":
            if self.dist.active:
                device = torch.device("cuda", self.dist.local_rank)
            elif device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(device)
        return device

    def _set_determinism(self) -> None:
        deterministic = self.config.train.deterministic
        if self.device.type == "cpu" and deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = deterministic
            torch.backends.cudnn.benchmark = not deterministic

    # =============================================================================================== setup
    def _setup(self) -> None:
        config = self.config
        checkpoint = self._resume_state()
        seed = config.train.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.amp = amp_enabled(config, self.device)
        self.scaler = make_grad_scaler(self.amp)
        if self.dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
        self.log(f"{config.recipe_name}: {config.model.source_modality} -> {config.model.target_modality}, "
                 f"{config.optim.steps} steps, batch {config.data.batch_size}"
                 f"{f' × {self.dist.world} processes' if self.dist.active else ''}, device {self.device}"
                 f"{', AMP' if self.amp else ''}")
        recipe_cls = get_recipe(config.recipe_name)
        context = RecipeContext(device=self.device, amp=self.amp, scaler=self.scaler,
                                distributed=self.dist.active, seed=seed, log=self.log)
        self.recipe: Recipe = recipe_cls(config, context)
        multiple = size_multiple(self.recipe.generator())
        if config.data.crop_size % multiple:
            raise ConfigError(f"data.crop_size {config.data.crop_size} must be a multiple of {multiple}, "
                              f"the size multiple of model.generator")
        self.data: TrainingData = load_training_data(config, reverse=self.recipe.inverse() is not None)
        counts = self.data.provenance["counts"]
        self.log(f"data: {counts['training_source_volumes']} source / {counts['training_target_volumes']} target "
                 f"training volumes, {counts['validation_pairs']} validation pairs, in-plane spacing "
                 f"{self.data.spacing_mm[0]:g}×{self.data.spacing_mm[1]:g} mm")
        self.schedules = {name: LinearDecaySchedule(optimizer, config.optim.steps, config.optim.decay_start)
                          for name, optimizer in self.recipe.optimizers.items()}
        if config.optim.decay_start >= config.optim.steps:
            self.log(f"learning rate constant at {config.optim.lr:g} (optim.decay_start >= optim.steps)")
        self.start_step = 0
        if checkpoint is not None:
            self._load_state(checkpoint)
        elif config.train.init_from:
            self._initialise_from(Path(config.train.init_from))
        self.recipe.distribute()
        self.batches = self._batches()
        if self.dist.main:
            text = json.dumps(config.to_dict(), indent=2) + "\n"
            (self.out_dir / "config.json").write_text(text, encoding="utf-8")
            self._trim_csv("losses.csv")
            self._trim_csv("validation.csv")

    def _resume_state(self) -> Optional[Dict[str, Any]]:
        folder = checkpoint_folder(self.out_dir)
        if self.resume is None:
            existing = latest_checkpoint(folder)
            if existing is not None:
                raise ConfigError(f"{self.out_dir} already holds checkpoints ({existing.name}); continue with "
                                  "--resume, or set another train.out_dir")
            return None
        path = latest_checkpoint(folder) if str(self.resume) == "latest" else Path(self.resume)
        if path is None:
            raise ConfigError(f"--resume: {folder} holds no checkpoint")
        state = load_checkpoint(path)
        self._check_resumable(state["config"], path)
        self.log(f"resuming from {path} (step {state['step']})")
        self.last_checkpoint = path
        return state

    def _check_resumable(self, saved: Dict[str, Any], path: Path) -> None:
        before = flat_items(config_from_dict(saved).to_dict())
        now = flat_items(self.config.to_dict())
        changed = sorted(k for k in set(before) | set(now)
                         if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            details = ", ".join(f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed[:4])
            raise ConfigError(f"--resume: the config differs from the checkpoint {path.name}'s in {details}"
                              f"{' …' if len(changed) > 4 else ''}; only run-control keys may change")

    def _initialise_from(self, path: Path) -> None:
        """Start every network from the weights of checkpoint `path` (train.init_from; a run's folder: its latest
        checkpoint): same recipe, same network specs; the card's training notes say so."""
        if path.is_dir():
            path = latest_checkpoint(checkpoint_folder(path)) or path
        if not path.is_file():
            raise ConfigError(f"train.init_from: {path} is not a checkpoint file or a run folder holding one")
        state = load_checkpoint(path)
        saved = config_from_dict(state["config"])
        now = self.config
        if saved.recipe_name != now.recipe_name or (saved.model.generator, saved.model.discriminator,
                                                    saved.in_channels) != (now.model.generator,
                                                                           now.model.discriminator, now.in_channels):
            raise ConfigError(f"train.init_from: {path.name} is a {saved.recipe_name} run with other networks; "
                              "it must have this config's recipe, model.generator, model.discriminator and "
                              "data.context_slices")
        for name, network in self.recipe.networks.items():
            network.load_state_dict(state["networks"][name])
        self.recipe.notes["initialised_from"] = (f"the weights of step {int(state['step'])} of another "
                                                 f"{saved.recipe_name} run ({path.name}, crop size "
                                                 f"{saved.data.crop_size}); this run fine-tuned them")
        self.log(f"networks initialised from {path} (step {int(state['step'])})")

    def _load_state(self, state: Dict[str, Any]) -> None:
        recipe = self.recipe
        for name, network in recipe.networks.items():
            network.load_state_dict(state["networks"][name])
        for name, optimizer in recipe.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, schedule in self.schedules.items():
            schedule.load_state_dict(state["schedulers"][name])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        recipe.load_state_dict(state["recipe_state"])
        for key, note in state.get("notes", {}).items():
            recipe.notes.setdefault(key, note)  # such as train.init_from's, which only a fresh run writes
        self.start_step = int(state["step"])
        self.history = list(state.get("history", []))
        self.validation = list(state.get("validation", []))
        self.baseline = dict(state.get("baseline", {}))
        self.elapsed = float(state.get("run", {}).get("elapsed_s", 0.0))
        ranks = state["rng"]["ranks"]
        if len(ranks) == self.dist.world:
            self._rank_rng = ranks[self.dist.rank]
        else:
            self.log(f"resuming {len(ranks)}-process checkpoint with {self.dist.world} processes: data streams "
                     "restart from fresh seeds (the run is not bit-identical to an uninterrupted one)")
            self._rank_rng = None

    # ================================================================================================ data
    def _batches(self) -> Iterator[Dict[str, torch.Tensor]]:
        """Batches for this process, continuing where a resumed run stopped; restores the generators."""
        config, rank = self.config, self.dist.rank
        restored = self._rank_rng
        if restored is not None:
            restore_rng(restored, self.device)
        batch = config.data.batch_size
        if config.data.workers == 0:
            # a resume with another process count cannot continue the old streams: seed new ones
            seed = config.train.seed if restored is not None or not self.start_step else \
                config.train.seed + 7919 * self.start_step
            stream = self.stream = self.data.stream(seed, rank)
            if restored is not None:
                stream.load_state_dict(restored["data"])
            return iter(lambda: stream.next_batch(batch), None)
        from torch.utils.data import DataLoader, DistributedSampler

        self.stream = None
        dataset = SliceDataset(self.data.sampler, config.train.seed, config.optim.steps * batch * self.dist.world)
        order = DistributedSampler(dataset, num_replicas=self.dist.world, rank=rank, shuffle=True,
                                   seed=config.train.seed, drop_last=True)
        indices = list(iter(order))[self.start_step * batch:]
        return iter(DataLoader(dataset, batch_size=batch, sampler=indices, num_workers=config.data.workers,
                               collate_fn=collate, drop_last=True, worker_init_fn=_ignore_stop_signals))

    # ================================================================================================ loop
    def _loop(self) -> TrainResult:
        config = self.config
        total = config.optim.steps
        step = self.start_step
        end = min(total, self.stop_at) if self.stop_at is not None else total
        self._open_bar(step, total)
        interval: Dict[str, List[float]] = {}
        started = time.time()
        interval_start, interval_step = started, step
        while step < end:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in next(self.batches).items()}
            losses = self.recipe.train_step(batch, step)
            self.scaler.update()
            for schedule in self.schedules.values():
                schedule.step()
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            bad_anywhere, stop = self._agree(bool(bad), self.stop_signal is not None)
            if bad_anywhere:
                self._diverged(step + 1, {k: losses[k] for k in bad})
            step += 1
            for key, value in losses.items():
                interval.setdefault(key, []).append(value)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            if step % config.train.log_every == 0 or step == end:
                now = time.time()
                self._log_losses(step, total, {k: float(np.mean(v)) for k, v in interval.items()},
                                 (step - interval_step) / max(now - interval_start, 1e-9),
                                 self.elapsed + now - started)
                interval, interval_start, interval_step = {}, now, step
            if stop:
                self.elapsed += time.time() - started
                path = self._checkpoint(step)
                name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
                self.log(f"stopped by {name} at step {step}; checkpoint {path}")
                return self._result(step, name)
            at_end = step == total
            if self.data.validation and (at_end or (config.train.val_every and step % config.train.val_every == 0)):
                self._validate(step)
            periodic = config.train.checkpoint_every and step % config.train.checkpoint_every == 0
            if periodic and not at_end and step != end:
                self.elapsed += time.time() - started
                started = time.time()
                self._checkpoint(step)
        self.elapsed += time.time() - started
        if step > self.start_step or self.last_checkpoint is None:
            self._checkpoint(step)  # else a resumed run had nothing left to do: its checkpoint stands
        if step < total:
            self.log(f"stopped at step {step} of {total}; checkpoint {self.last_checkpoint}")
            return self._result(step, "stop_at")
        self.log(f"done: {step} steps in {self.elapsed:.0f} s; checkpoint {self.last_checkpoint}")
        self._close_best(step)
        return self._result(step, None)

    def _result(self, step: int, interrupted: Optional[str]) -> TrainResult:
        return TrainResult(step, self.out_dir, self.last_checkpoint, interrupted, list(self.history),
                           list(self.validation))

    def _agree(self, bad: bool, stop: bool) -> Sequence[bool]:
        """Every process learns whether any saw a non-finite loss or a stop signal (one all-reduce)."""
        if not self.dist.active:
            return bad, stop
        flags = torch.tensor([float(bad), float(stop)], device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return bool(flags[0].item()), bool(flags[1].item())

    def _diverged(self, step: int, bad: Dict[str, float]) -> None:
        where = ", ".join(f"{k} = {v}" for k, v in bad.items()) or "on another process"
        kept = (f"the last good checkpoint is kept: {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint had been written yet")
        message = (f"training diverged at step {step}: non-finite loss ({where}); stopped without saving, "
                   f"{kept}. Lower optim.lr or check the data")
        self.log(message)
        raise TrainingDiverged(message)

    # ============================================================================================ logging
    def log(self, message: str) -> None:
        if not self.dist.main:
            return
        if self.echo:
            if self.bar is not None:
                self.bar.write(message, file=sys.stdout)
            else:
                print(message, flush=True)
        if self.out_dir.is_dir():
            with open(self.out_dir / "train.log", "a", encoding="utf-8") as stream:
                stream.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {message}\n")

    def _open_bar(self, step: int, total: int) -> None:
        if not (self.dist.main and self.echo):
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=step, unit="step", disable=None, file=sys.stderr, dynamic_ncols=True,
                        desc=self.config.recipe_name)
        if self.bar.disable:
            self.bar = None

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def _log_losses(self, step: int, total: int, losses: Dict[str, float], rate: float, elapsed: float) -> None:
        lr = next(iter(self.schedules.values())).get_last_lr()[0]
        self.history.append({"step": step, "lr": lr, **losses})
        if not self.dist.main:
            return
        eta = (total - step) / rate if rate > 0 else float("nan")
        text = "  ".join(f"{k} {v:.4g}" for k, v in losses.items())
        self.log(f"step {step}/{total}  {text}  lr {lr:.3g}  {rate:.2f} step/s  ETA {_duration(eta)}")
        self._append_csv("losses.csv", {"step": step, "lr": lr, "elapsed_s": round(elapsed, 2), **losses})
        if self.writer is not None:
            for key, value in losses.items():
                self.writer.add_scalar(f"loss/{key}", value, step)
            self.writer.add_scalar("lr", lr, step)

    def _append_csv(self, name: str, row: Dict[str, Any]) -> None:
        path = self.out_dir / name
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _trim_csv(self, name: str) -> None:
        """Drop rows logged after the step a run resumes from (they are logged again); a fresh run starts
        a new file (an earlier run there wrote no checkpoint)."""
        path = self.out_dir / name
        if not path.exists():
            return
        if self.start_step == 0:
            path.unlink()
            return
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
        kept = rows[:1] + [r for r in rows[1:] if r and int(float(r[0])) <= self.start_step]
        if len(kept) != len(rows):
            with open(path, "w", newline="", encoding="utf-8") as stream:
                csv.writer(stream).writerows(kept)

    # ========================================================================================= validation
    def _validate(self, step: int) -> None:
        """Rank 0: translate the fixed validation slices, write the PNG grid, append the metrics."""
        if not self.dist.main:
            return
        generator, inverse = self.recipe.generator(), self.recipe.inverse()
        networks = [n for n in (generator, inverse) if n is not None]
        was_training = [n.training for n in networks]
        for network in networks:
            network.eval()
        scores: Dict[str, List[Dict[str, float]]] = {"forward": [], "inverse": []}
        rows: List[np.ndarray] = []
        need_baseline = not self.baseline
        try:
            for slices in self.data.validation:
                output = self._translate_slices(generator, slices.inputs)
                scores["forward"].append(self._score(output, slices.inputs, slices.targets, slices.target_range,
                                                     "forward" if need_baseline else None))
                if inverse is not None:
                    back = self._translate_slices(inverse, slices.reverse_inputs)
                    scores["inverse"].append(self._score(back, slices.reverse_inputs, slices.sources,
                                                         slices.source_range, "inverse" if need_baseline else None))
                rows += _grid_rows(slices, output)
        finally:
            for network, mode in zip(networks, was_training):
                network.train(mode)
        if "volumes" in self.baseline and "mean" not in self.baseline:
            volumes = self.baseline.pop("volumes")
            self.baseline["mean"] = _mean_metrics(volumes["forward"])
            if volumes["inverse"]:
                self.baseline["inverse_mean"] = _mean_metrics(volumes["inverse"])
        metrics = _mean_metrics(scores["forward"])
        if scores["inverse"]:
            metrics.update({f"inverse_{k}": v for k, v in _mean_metrics(scores["inverse"]).items()})
        record = {"step": step, **metrics, "volumes": [s.name for s in self.data.validation]}
        self.validation.append(record)
        self._append_csv("validation.csv", {"step": step, **metrics})
        folder = self.out_dir / "validation"
        folder.mkdir(exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(_grid(rows[:GRID_ROWS])), str(folder / f"step_{step:07d}.png"))
        self.log(f"validation at step {step}: MAE {metrics['mae']:.4g}  PSNR {metrics['psnr']:.2f} dB  "
                 f"SSIM {metrics['ssim']:.4f}  (identity baseline: MAE {self.baseline['mean']['mae']:.4g}, "
                 f"SSIM {self.baseline['mean']['ssim']:.4f})")
        if scores["inverse"]:
            self.log(f"  inverse direction: MAE {metrics['inverse_mae']:.4g}  PSNR {metrics['inverse_psnr']:.2f} dB  "
                     f"SSIM {metrics['inverse_ssim']:.4f}  (identity baseline: MAE "
                     f"{self.baseline['inverse_mean']['mae']:.4g}, SSIM {self.baseline['inverse_mean']['ssim']:.4f})")
        if self.writer is not None:
            for key in metrics:
                if key.split("_")[-1] in ("mae", "psnr", "ssim"):
                    self.writer.add_scalar(f"validation/{key}", metrics[key], step)
        if self.config.train.keep_best and self._is_best(record):
            self._save_best(step, record)

    def _score(self, output: np.ndarray, inputs: np.ndarray, references: np.ndarray, mapping: Any,
               baseline: Optional[str]) -> Dict[str, float]:
        """Metrics of (N, H, W) network outputs against references in their units; also records the identity
        baseline (the input's centre slice mapped like an output) under `baseline` when given."""
        mask = np.stack([head_mask(r[None])[0] for r in references])
        if baseline is not None:
            identity = mapping.from_network(inputs[:, inputs.shape[1] // 2])
            volumes = self.baseline.setdefault("volumes", {"forward": [], "inverse": []})
            volumes[baseline].append(compare(identity, references, mask))
        return compare(mapping.from_network(output), references, mask)

    def _is_best(self, record: Dict[str, Any]) -> bool:
        """Whether `record` (the newest validation) scores best so far on train.keep_best; ties keep the older."""
        metric = self.config.train.keep_best
        scores = [selection_score(r, metric) for r in self.validation]
        best = min(scores) if BEST_METRICS[metric] == "lower" else max(scores)
        return selection_score(record, metric) == best and scores.index(best) == len(scores) - 1

    def _save_best(self, step: int, record: Dict[str, Any]) -> None:
        """Rank 0 writes checkpoints/best.pt: this step's state, with rank 0's generators only (resuming
        from it under torchrun reseeds the other ranks' data streams)."""
        metric = self.config.train.keep_best
        state = self._state(step, [self._rank_state(step)])
        state["selection"] = {"metric": metric, "score": selection_score(record, metric), "step": step,
                              "rule": f"best validation {metric.upper()}"
                                      f"{' (mean of both directions)' if 'inverse_' + metric in record else ''}"}
        path = save_checkpoint(state, best_checkpoint_path(checkpoint_folder(self.out_dir)))
        self.log(f"  best validation {metric.upper()} so far: {path}")

    def _close_best(self, step: int) -> None:
        """At the end of a complete run, best.pt records the run's length (the card's training.complete)."""
        path = best_checkpoint_path(checkpoint_folder(self.out_dir))
        if not (self.dist.main and self.config.train.keep_best and path.is_file()):
            return
        state = load_checkpoint(path)
        state["selection"]["run_steps"] = step
        save_checkpoint(state, path)

    @torch.no_grad()
    def _translate_slices(self, network: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
        """(N, C, H, W) network-range slices -> (N, H, W) outputs, padded to the network's multiple."""
        height, width = inputs.shape[-2:]
        outputs = []
        for start in range(0, len(inputs), 8):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start:start + 8])).to(self.device)
            batch = pad_to_multiple(batch, size_multiple(network), self.config.data.pad)
            with self.recipe.autocast():
                result = network(batch)
            outputs.append(crop_to(result, height, width)[:, 0].float().cpu().numpy())
        return np.concatenate(outputs)

    # ======================================================================================== checkpoints
    def _checkpoint(self, step: int) -> Optional[Path]:
        """All processes contribute their generator states; rank 0 writes the file."""
        rank_state = self._rank_state(step)
        ranks = [rank_state]
        if self.dist.active:
            ranks = [None] * self.dist.world  # type: ignore[list-item]
            torch.distributed.all_gather_object(ranks, rank_state)
        if not self.dist.main:
            return None
        folder = checkpoint_folder(self.out_dir)
        path = save_checkpoint(self._state(step, ranks), checkpoint_path(folder, step))
        prune_checkpoints(folder, self.config.train.keep_checkpoints)
        self.last_checkpoint = path
        return path

    def _rank_state(self, step: int) -> Dict[str, Any]:
        """This process's generators and data-stream position."""
        rank_state = capture_rng(self.device)
        rank_state["data"] = (self.stream.state_dict() if self.stream is not None
                              else {"kind": "indexed", "consumed": step * self.config.data.batch_size})
        return rank_state

    def _state(self, step: int, ranks: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Everything a checkpoint holds at `step`, given every rank's generator state."""
        recipe = self.recipe
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "step": step, "recipe": self.config.recipe_name,
            "config": self.config.to_dict(),
            "networks": {n: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                         for n, m in recipe.networks.items()},
            "optimizers": {n: o.state_dict() for n, o in recipe.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedules.items()},
            "scaler": self.scaler.state_dict() if self.amp else {},
            "recipe_state": recipe.state_dict(),
            "rng": {"ranks": [_cpu(r) for r in ranks]},
            "data": {"spacing_mm": self.data.spacing_mm, "provenance": self.data.provenance,
                     "validation_slices": {s.name: s.indices for s in self.data.validation}},
            "history": self.history[-1000:], "validation": self.validation, "baseline": self.baseline,
            "notes": recipe.notes,
            "run": {"world_size": self.dist.world, "device": str(self.device), "amp": self.amp,
                    "config_file": self.config.path,
                    "hardware": describe_hardware(self.device, self.dist.world), "elapsed_s": round(self.elapsed, 1),
                    "torch": str(torch.__version__), "saved": datetime.datetime.now().isoformat(timespec="seconds")},
        }

    # ============================================================================================ signals
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (e.g. a GUI worker thread); stop via stop_at
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        self.stop_signal = signum


# ================================================================================================ helpers

def amp_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether a run of `config` on `device` autocasts (with a GradScaler): `train.amp`, on CUDA only."""
    return bool(config.train.amp and device.type == "cuda")


def _ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader worker ignores SIGINT and SIGTERM: `timeout`, batch schedulers and Ctrl-C signal the whole
    process group, and the run keeps drawing batches until its checkpoint is written; `_close_loader` (or the
    workers' watch on their parent) ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _close_loader(batches: Any) -> None:
    """Stop DataLoader worker processes now rather than whenever the iterator is collected."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def describe_hardware(device: torch.device, world: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({_cpu_model()}, {torch.get_num_threads()} threads)"
    return f"{world} × {name}" if world > 1 else name


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value


def selection_score(record: Dict[str, Any], metric: str) -> float:
    """A validation record's score on `metric`: the mean of both directions when it has the inverse's."""
    values = [record[metric]] + ([record[f"inverse_{metric}"]] if f"inverse_{metric}" in record else [])
    return float(np.mean(values))


def _mean_metrics(per_volume: List[Dict[str, float]]) -> Dict[str, float]:
    keys = ("mae", "mse", "psnr", "ssim")
    return {k: float(np.mean([m[k] for m in per_volume])) for k in keys}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _grid_rows(slices: ValidationSlices, output: np.ndarray) -> List[np.ndarray]:
    """One row per slice: input (centre channel) | output | target, each uint8 from [-1, 1]."""
    rows = []
    centre = slices.inputs.shape[1] // 2
    target = slices.target_range.to_network(slices.targets)
    for i in range(len(output)):
        tiles = [slices.inputs[i, centre], output[i], target[i]]
        gap = np.zeros((output.shape[-2], 2), dtype=np.uint8)
        row = [(np.clip((t + 1) / 2, 0, 1) * 255).round().astype(np.uint8) for t in tiles]
        rows.append(np.concatenate([row[0], gap, row[1], gap, row[2]], axis=1))
    return rows


def _grid(rows: List[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = []
    for row in rows:
        canvas = np.zeros((row.shape[0] + 2, width), dtype=np.uint8)
        canvas[:row.shape[0], :row.shape[1]] = row
        padded.append(canvas)
    return np.concatenate(padded, axis=0)


def run_train_command(config_path: str, overrides: Sequence[str], resume: Optional[str]) -> int:
    """`medtranslate train`: load the config, train, print where things are; exit status 128+signal when
    interrupted (after writing a checkpoint)."""
    from .config import load_config

    config = load_config(config_path, overrides)
    result = train(config, resume=resume)
    if result.interrupted and result.interrupted != "stop_at":
        signum = getattr(signal, result.interrupted, None)
        print(f"interrupted ({result.interrupted}) at step {result.step}; resume with: medtranslate train "
              f"{config_path} --resume", file=sys.stderr)
        return 128 + int(signum) if signum is not None else 1
    if Distributed.from_env().main:
        print(f"checkpoint: {result.checkpoint}")
    return 0
