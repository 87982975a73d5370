"""How much of the machine the engine uses: the CPU's measured peak against the engine's achieved rate.

Peak: the best of several large matrix products (2048×2048, bf16 and fp32) on --threads threads, in GFLOP/s.
Work: the multiply-adds of every convolution of each benchmark network on one 256×256 slice, counted with
forward hooks (2 FLOPs each). Achieved: work × 180 slices / the library's seconds in translate_cpu.json
(written by benchmark_translate.py, so run that first). The fraction is achieved / peak in the precision the
engine ran (bf16 where the CPU has it).

    python Training/benchmarks/benchmark_peak.py [--threads 2]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_translate import NETWORKS  # noqa: E402

from MedTranslateLib.device import cpu_has_native_bf16  # noqa: E402
from MedTranslateLib.networks import build_network  # noqa: E402

RESULTS = REPO / "Training" / "benchmarks" / "results"
SIDE = 256


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of `size`² matrix products in `dtype`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def slice_flops(spec: Dict) -> float:
    """FLOPs (2 per multiply-add) of the convolutions of `spec`'s network on one SIDE×SIDE slice."""
    network = build_network(spec, in_channels=1).eval()
    total = [0.0]

    def count(module: torch.nn.Module, inputs, output) -> None:
        """A convolution's weight holds one multiply-add per output pixel (groups are in its shape); a
        transposed one's, per input pixel."""
        source = inputs[0] if isinstance(module, torch.nn.ConvTranspose2d) else output
        total[0] += 2.0 * source.shape[-2] * source.shape[-1] * module.weight.numel()

    hooks = [m.register_forward_hook(count) for m in network.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.inference_mode():
        network(torch.zeros(1, 1, SIDE, SIDE))
    for hook in hooks:
        hook.remove()
    return total[0]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    translate = json.loads((RESULTS / "translate_cpu.json").read_text(encoding="utf-8"))
    bf16 = cpu_has_native_bf16()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    engine_precision = "bf16" if bf16 else "fp32"
    networks = {}
    for name, spec in NETWORKS.items():
        library = translate["networks"].get(name, {}).get("variants", {}).get("library")
        if library is None:
            continue
        slices = library["slices"]
        work = slice_flops(spec) * slices
        achieved = work / library["seconds"] / 1e9
        networks[name] = {"gflop_per_slice": slice_flops(spec) / 1e9, "seconds": library["seconds"],
                          "slices": slices, "achieved_gflops": achieved,
                          "fraction_of_peak": achieved / peaks[engine_precision]}
        print(f"{name}: {networks[name]['gflop_per_slice']:.2f} GFLOP a slice, {achieved:.0f} GFLOP/s achieved, "
              f"{networks[name]['fraction_of_peak']:.0%} of the {engine_precision} peak "
              f"({peaks[engine_precision]:.0f} GFLOP/s)")
    result = {"date": datetime.date.today().isoformat(), "threads": args.threads, "cpu_native_bf16": bf16,
              "peak_gflops": peaks, "engine_precision": engine_precision, "networks": networks,
              "source": "translate_cpu.json (library variant)"}
    (RESULTS / "peak_cpu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"peak fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s; wrote "
          f"{(RESULTS / 'peak_cpu.json').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
