"""Train a config for a wall-clock budget: a lent GPU machine's minutes, a CPU job's night.

The config's `train_step` is timed on this device with synthetic batches of the config's crop and batch size
(`benchmark_training.time_recipe`: every network, loss, backward and Adam step; the data pipeline left out), and
the run gets as many steps as `--seconds` holds at that rate times `--efficiency` (the share of the loop's time
that is training steps: validation, data and checkpoints take the rest). The learning rate decays from the same
fraction of the run as in the config; validations and kept checkpoints are spread evenly over it. Everything
else is the config's, with `--set` overrides applied first, and the run is `medtranslate train`'s.

    python Training/tools/train_for.py CONFIG --seconds 300 [--set key=value ...] [--checkpoints 4]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training" / "benchmarks"))

from benchmark_training import time_recipe  # noqa: E402

from MedTranslateLib.device import select_device  # noqa: E402
from MedTranslateLib.training.config import load_config  # noqa: E402
from MedTranslateLib.training.trainer import amp_enabled, train  # noqa: E402


def budget_overrides(steps_per_s: float, seconds: float, efficiency: float, decay_fraction: float,
                     validations: int, checkpoints: int) -> List[str]:
    """The `--set` overrides of a run of `seconds` at `steps_per_s` (times `efficiency`): its steps, the step its
    learning rate starts to decay at (`decay_fraction` of them), `validations` validations and `checkpoints` kept
    checkpoints spread evenly over it."""
    steps = max(1, int(steps_per_s * seconds * efficiency))
    every = max(1, steps // validations)
    keep_every = max(every, (steps // checkpoints) // every * every)  # a checkpoint step is a validation step
    return [f"optim.steps={steps}", f"optim.decay_start={int(steps * decay_fraction)}",
            f"train.val_every={every}", f"train.checkpoint_every={keep_every}",
            f"train.keep_checkpoints={checkpoints}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seconds", type=float, required=True, help="the training loop's budget")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--efficiency", type=float, default=0.8,
                        help="the share of the loop spent in training steps (default 0.8)")
    parser.add_argument("--validations", type=int, default=20, help="validations over the run (default 20)")
    parser.add_argument("--checkpoints", type=int, default=4,
                        help="step checkpoints kept, spread over the run (default 4), beside the best")
    parser.add_argument("--probe-seconds", type=float, default=10.0, help="time spent timing train_step")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    device = select_device(config.train.device)
    timing = time_recipe(config, device, amp_enabled(config, device), warmup=5, min_steps=10,
                         min_seconds=args.probe_seconds)
    decay_fraction = config.optim.decay_start / config.optim.steps
    overrides = budget_overrides(timing["steps_per_s"], args.seconds, args.efficiency, decay_fraction,
                                 args.validations, args.checkpoints)
    print(json.dumps({"device": str(device), "steps_per_s": timing["steps_per_s"], "overrides": overrides}),
          flush=True)
    result = train(load_config(args.config, args.overrides + overrides))
    print(f"stopped at step {result.step}" if result.interrupted else f"finished {result.step} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
