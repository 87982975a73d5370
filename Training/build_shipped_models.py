"""Rebuild every shipped model from scratch: prepare the data, train, export, evaluate, document.

    .venv/bin/python Training/build_shipped_models.py all            # everything below, in order
    .venv/bin/python Training/build_shipped_models.py prepare [--subjects 32]
    .venv/bin/python Training/build_shipped_models.py train [--parallel 8] [--only RUN ...] [--set k=v ...]
    .venv/bin/python Training/build_shipped_models.py export         # runs/shipped/<run> -> MedTranslateLib/models
    .venv/bin/python Training/build_shipped_models.py evaluate       # held-out metrics into the cards, PNG grids,
                                                                     # Training/README.md's table

Training runs are `medtranslate train` processes (resumable with `--resume`), several at once on one GPU.
The shipped set was trained on one H100 (see each card's `training.hardware`); on a CPU, lower the steps with
`--set optim.steps=N --set optim.decay_start=M` and expect weaker models.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from shipped_models import DATA, MODELS, NATIVE_DATA, PRECEDING, RUN_NAMES, RUNS, SHIPPED, CONFIGS  # noqa: E402


def prepare(subjects: int, workers: int, spm: Optional[Path]) -> None:
    """The 2 mm set (prepare_shipped_data.py, `subjects` subjects) and the 1 mm set (prepare_native_data.py, its
    default subjects) when a catalogue model trains on it."""
    script = REPO / "Training" / "data" / "prepare_shipped_data.py"
    command = [sys.executable, str(script), "--out", str(DATA), "--subjects", str(subjects), "--workers", str(workers)]
    subprocess.run(command + (["--spm", str(spm)] if spm else []), check=True)
    if any(model.data == NATIVE_DATA for model in SHIPPED):
        native = REPO / "Training" / "data" / "prepare_native_data.py"
        subprocess.run([sys.executable, str(native), "--out", str(NATIVE_DATA), "--workers", str(workers)], check=True)


def next_ready(pending: List[str], active: Set[str], preceding: Dict[str, str]) -> Optional[str]:
    """The first of `pending` whose preceding run (`preceding`: run -> the run it starts from) is neither pending
    nor `active`; None when every pending run waits."""
    busy = set(pending) | active
    return next((run for run in pending if preceding.get(run) not in busy), None)


def train(runs: Dict[str, List[str]], parallel: int, preceding: Dict[str, str], resume: bool = False,
          logs: Path = RUNS) -> None:
    """Train each run (name -> its `--set` overrides), up to `parallel` processes at once; logs in `logs`. A run
    that starts from another's checkpoint (`preceding`: run -> that run) waits for it when both are in `runs`."""
    logs.mkdir(parents=True, exist_ok=True)
    pending, active = list(runs), []
    failed: List[str] = []
    while pending or active:
        while len(active) < parallel:
            run = next_ready(pending, {entry[0] for entry in active}, preceding)
            if run is None:
                break
            pending.remove(run)
            if preceding.get(run) in failed:
                failed.append(run)
                print(f"skipped {run}: {preceding[run]} failed", flush=True)
                continue
            command = [sys.executable, "-m", "MedTranslateLib.cli", "train", str(CONFIGS / f"{run}.toml")]
            for override in runs[run]:
                command += ["--set", override]
            if resume and (RUNS / run / "checkpoints").is_dir():
                command.append("--resume")
            log = open(logs / f"{run}.log", "w", encoding="utf-8")
            active.append((run, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log))
            print(f"started {run}", flush=True)
        time.sleep(2)
        for entry in list(active):
            run, process, log = entry
            if process.poll() is not None:
                log.close()
                active.remove(entry)
                print(f"finished {run}: exit {process.returncode}", flush=True)
                if process.returncode:
                    failed.append(run)
    if failed:
        raise SystemExit(f"training failed: {', '.join(failed)} (see runs/shipped/<run>.log)")


SAFETY = 0.8


def steps_for_budget(runs: List[str], parallel: int, overrides: List[str], seconds: float) -> Dict[str, int]:
    """Time 200 steps of every run (all at once, as they will train) and return the steps that fill `seconds`.

    Rates are measured while every run is still going (the fastest stops first) and discounted by SAFETY
    for validation, checkpoints and data loading.
    """
    calibration = RUNS / "calibration"
    train({run: overrides + ["optim.steps=200", f"train.out_dir={calibration / run}", "train.val_every=0",
                             "train.checkpoint_every=0", "train.log_every=50", "train.init_from="] for run in runs},
          parallel, {}, logs=calibration)  # all at once, from random weights: no run waits for another
    rows = {}
    for run in runs:
        with open(calibration / run / "losses.csv", encoding="utf-8") as stream:
            rows[run] = [(int(r["step"]), float(r["elapsed_s"])) for r in csv.DictReader(stream)]
    together = min(run_rows[-1][1] for run_rows in rows.values())  # every run was still going until then
    steps = {}
    for run in runs:
        window = [row for row in rows[run] if row[1] <= together]
        if len(window) < 8:  # this run had barely started when the fastest stopped: use all its steps
            window = rows[run]
        (first_step, first_time), (last_step, last_time) = window[len(window) // 4], window[-1]
        rate = (last_step - first_step) / max(last_time - first_time, 1e-6)
        steps[run] = max(200, int(SAFETY * rate * seconds) // 100 * 100)
        print(f"{run}: {rate:.1f} steps/s with {min(parallel, len(runs))} runs at once -> {steps[run]} steps",
              flush=True)
    shutil.rmtree(calibration, ignore_errors=True)
    return steps


def chosen_checkpoint(run: str) -> Path:
    """The run's best validated checkpoint where its config keeps one (train.keep_best), else its newest."""
    from MedTranslateLib.training.checkpoint import best_checkpoint_path, latest_checkpoint

    folder = RUNS / run / "checkpoints"
    best = best_checkpoint_path(folder)
    found = best if best.is_file() else latest_checkpoint(folder)
    if found is None:
        raise SystemExit(f"{run}: no checkpoint under {folder}")
    return found


def export(runs: List[str]) -> None:
    from MedTranslateLib.training.export import export_checkpoint

    for model in (m for m in SHIPPED if m.run in runs):
        card = export_checkpoint(chosen_checkpoint(model.run), MODELS / model.id, model.id, reverse=model.reverse,
                                 with_inverse=False)  # each direction ships as its own package
        chosen = card.training.get("selected", {}).get("rule", "last step")
        print(f"exported {card.id} (step {card.training['steps']}, {chosen})")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("all", "prepare", "train", "export", "evaluate"))
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="data-preparation processes")
    parser.add_argument("--spm", type=Path, default=None, help="SPM template folder (default: fetched into .cache)")
    parser.add_argument("--parallel", type=int, default=len(RUN_NAMES), help="training processes at once")
    parser.add_argument("--only", nargs="*", default=list(RUN_NAMES), choices=RUN_NAMES, metavar="RUN")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS",
                        help="train: time every run first, then give each the steps that fill SECONDS "
                             "(learning rate decays over the second half, a checkpoint every quarter)")
    args = parser.parse_args(argv)
    if args.stage in ("all", "prepare"):
        prepare(args.subjects, args.workers, args.spm)
    if args.stage in ("all", "train"):
        runs = {run: list(args.overrides) for run in args.only}
        if args.time_budget:
            for run, steps in steps_for_budget(args.only, args.parallel, args.overrides, args.time_budget).items():
                runs[run] += [f"optim.steps={steps}", f"optim.decay_start={steps // 2}",
                              f"train.val_every={steps // 4}", f"train.checkpoint_every={steps // 4}"]
        train(runs, args.parallel, PRECEDING, args.resume)
    if args.stage in ("all", "export"):
        export(args.only)
    if args.stage in ("all", "evaluate"):
        from evaluate_shipped_models import evaluate_all
        return evaluate_all([model.id for model in SHIPPED if model.run in args.only])
    return 0


if __name__ == "__main__":
    sys.exit(main())
