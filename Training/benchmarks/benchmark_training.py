"""Training speed of every recipe: optimisation steps per second at 128² and 256², batch 1, and of the
shipped 1 mm configs as they train (their own crop and batch size).

Each recipe is built from its shipped config (Training/configs/, the papers' network sizes) and timed through
its real `train_step` - forward, losses, backward, Adam, for all its networks - on synthetic batches already
on the device: the data pipeline is left out (drawing a 256² crop costs well under a millisecond on the CPU).
Sizes below a generator's size multiple use the paper's smaller variant: U-Net-128 / CasNet blocks with
num_downs = 7 at 128². MedGAN is timed twice: with the discriminator-feature fallback and with a VGG19
feature network (random weights, for timing only: the cost of the paper's ImageNet VGG19).

On CUDA (--device cuda) each recipe is timed without and with AMP (autocast fp16 + GradScaler).

    python Training/benchmarks/benchmark_training.py                 # CPU -> results/training_cpu.json
    python Training/benchmarks/benchmark_training.py --device cuda   # -> results/training_cuda.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from MedTranslateLib.training.config import load_config  # noqa: E402
from MedTranslateLib.training.recipes import RecipeContext, get_recipe  # noqa: E402
from MedTranslateLib.training.recipes.base import make_grad_scaler  # noqa: E402
from MedTranslateLib.training.trainer import describe_hardware  # noqa: E402

CONFIGS = REPO / "Training" / "configs"
RESULTS = REPO / "Training" / "benchmarks" / "results"
VARIANTS = {  # label -> (config file, extra overrides)
    "cyclegan": ("cyclegan_t1_t2.toml", []),
    "pix2pix": ("pix2pix_t1_t2.toml", []),
    "unet_l2": ("unet_l2_ct_mr.toml", []),
    "medgan": ("medgan_pet_ct.toml", []),
    "medgan+vgg19": ("medgan_pet_ct.toml", ["VGG"]),
}
AS_SHIPPED = {  # label -> config file, timed at its own crop and batch size (--sizes does not apply)
    "t2-pix2pix-1mm": "shipped/mr-t1-to-t2-pix2pix.toml",
    "ct-t1-unet_l2-1mm": "shipped/ct-to-mr-t1-unet-l2.toml",
    "cyclegan-1mm": "native/mr-t1-t2-cyclegan.toml",
    "pet-ct-medgan": "shipped/pet-to-ct-medgan.toml",
}


def make_config(variant: str, size: int, device: str, amp: bool, vgg_file: Optional[Path]) -> Any:
    if variant in AS_SHIPPED:
        return load_config(CONFIGS / AS_SHIPPED[variant], [f"train.device={device}",
                                                           f"train.amp={'true' if amp else 'false'}"])
    name, extra = VARIANTS[variant]
    overrides = [f"data.crop_size={size}", "data.batch_size=1", f"train.device={device}",
                 f"train.amp={'true' if amp else 'false'}"]
    if size < 256 and variant.startswith(("pix2pix", "medgan")):
        overrides.append("model.generator.num_downs=7")
    if "VGG" in extra:
        overrides.append(f"recipe.vgg19_weights={vgg_file}")
    return load_config(CONFIGS / name, overrides)


def random_vgg19(folder: Path) -> Path:
    from safetensors.torch import save_file

    from MedTranslateLib.networks.vgg import VGG19Features

    torch.manual_seed(0)
    path = folder / "vgg19_random.safetensors"
    save_file({k: v.contiguous() for k, v in VGG19Features().state_dict().items()}, str(path))
    return path


def time_recipe(config: Any, device: torch.device, amp: bool, warmup: int, min_steps: int,
                min_seconds: float) -> Dict[str, Any]:
    torch.manual_seed(0)
    scaler = make_grad_scaler(amp)
    recipe = get_recipe(config.recipe_name)(config, RecipeContext(device=device, amp=amp, scaler=scaler,
                                                                  log=lambda message: None))
    size, count = config.data.crop_size, config.data.batch_size
    generator = torch.Generator().manual_seed(0)
    batch = {"source": (torch.rand(count, config.in_channels, size, size, generator=generator) * 2 - 1).to(device),
             "target": (torch.rand(count, 1, size, size, generator=generator) * 2 - 1).to(device)}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # warm up: at least `warmup` steps, more (up to 4x) while a step is still much slower than the one before -
    # the first steps of a large model page in gigabytes of fresh memory (slow in a VM) and fill kernel caches
    warm: List[float] = []
    while len(warm) < warmup or (len(warm) < 4 * warmup + 2 and len(warm) >= 2 and warm[-1] > 1.2 * warm[-2]):
        begin = time.perf_counter()
        recipe.train_step(batch, len(warm))
        scaler.update()
        sync()
        warm.append(time.perf_counter() - begin)
    warmup = len(warm)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    times: List[float] = []
    while len(times) < min_steps or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        recipe.train_step(batch, warmup + len(times))
        scaler.update()
        sync()
        times.append(time.perf_counter() - begin)
    seconds = time.perf_counter() - started
    steps = len(times)
    result = {
        "warmup_steps": warmup, "steps": steps, "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 3),
        "s_per_step": round(seconds / steps, 4), "median_s_per_step": round(statistics.median(times), 4),
        "best_s_per_step": round(min(times), 4), "best_steps_per_s": round(1 / min(times), 3),
        "parameters_millions": {name: round(sum(p.numel() for p in net.parameters()) / 1e6, 3)
                                for name, net in recipe.networks.items()},
        "generator": config.model.generator,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del recipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--recipes", nargs="+", default=list(VARIANTS), choices=list(VARIANTS) + list(AS_SHIPPED))
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps at least (default: 2 CPU, 5 CUDA)")
    parser.add_argument("--min-steps", type=int, default=None, help="timed steps at least (default: 3 CPU, 30 CUDA)")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="timed seconds at least (default 5 CPU, 3 CUDA)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    min_steps = args.min_steps if args.min_steps is not None else (30 if cuda else 3)
    min_seconds = args.min_seconds if args.min_seconds is not None else (3.0 if cuda else 5.0)
    out = args.out or RESULTS / f"training_{device.type}.json"
    if cuda:
        torch.backends.cudnn.benchmark = True

    rows: List[Dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        vgg = random_vgg19(Path(folder)) if any(r.endswith("vgg19") for r in args.recipes) else None
        for variant in args.recipes:
            for size in ([0] if variant in AS_SHIPPED else args.sizes):
                for amp in ((False, True) if cuda else (False,)):
                    config = make_config(variant, size, args.device, amp, vgg)
                    size = config.data.crop_size
                    row = {"recipe": variant, "size": size, "batch": config.data.batch_size, "amp": amp,
                           **time_recipe(config, device, amp, warmup, min_steps, min_seconds)}
                    rows.append(row)
                    print(f"{variant:13s} {size:4d}²  amp={str(amp):5s}  {row['steps_per_s']:8.3f} steps/s  "
                          f"({row['s_per_step']:.3f} s/step; median {row['median_s_per_step']:.3f}, "
                          f"best {row['best_s_per_step']:.3f})", flush=True)
    report = {
        "benchmark": ("training steps per second, batch 1 (shipped configs: their own batch), synthetic batches on "
                      "the device (data loading excluded)"),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": describe_hardware(device),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
        "python": platform.python_version(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": ("other processes may share the machine (see the load averages): on a loaded CPU the mean "
                 "(steps_per_s) suffers most, the best single step (best_steps_per_s) least"),
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
