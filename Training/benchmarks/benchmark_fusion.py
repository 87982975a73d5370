"""CPU benchmark of a three-plane model end to end: a 1 mm 256x256x180 head through `medtranslate translate`.

The input is SPM's avg152T1 resampled (linear) onto a 256x256x180 grid of 1 mm, the size of a typical 1 mm T1
acquisition. The model is the bundled `mr-t1-to-t2-pix2pix` (or --model): when its card lists several planes,
every pass runs (axial, coronal and sagittal slices of 1 mm pixels) and the passes are fused, as a user's
Apply does. Each run is a fresh process (start, import, read, three passes, fusion, write); the best of
--repeats is the figure, with its peak RSS and the share of the CPU other processes used meanwhile.

Target (issue: "speed stays usable"): at most 30 s end to end on 2 CPU cores.

    python Training/benchmarks/benchmark_fusion.py [--repeats 3] [--threads 2] [--model ID]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_translate as common  # noqa: E402

DEFAULT_OUT = REPO / "Training" / "benchmarks" / "results" / "fusion_cpu.json"
TARGET_S = 30.0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="mr-t1-to-t2-pix2pix")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from MedTranslateLib import load_model

    card = load_model(args.model).card
    with tempfile.TemporaryDirectory(prefix="medtranslate-fusion-") as temporary:
        work = Path(temporary)
        volume = work / "head_1mm.nii.gz"
        volume_info = common.build_volume(common.fetch_template(), volume, 180, spacing=(1.0, 1.0, 1.0))
        command = common.cli_command() + ["translate", str(volume), str(work / "out.nii.gz"), "--model", args.model]
        runs: List[Dict[str, Any]] = []
        for repeat in range(args.repeats):
            wall, peak, code, other = common.run_process(command, common.child_env(args.threads),
                                                         work / f"run{repeat}.log")
            if code:
                print((work / f"run{repeat}.log").read_text(errors="replace")[-2000:], file=sys.stderr)
                raise SystemExit(f"medtranslate translate failed with exit status {code}")
            runs.append({"wall_s": round(wall, 2), "peak_rss_mib": round(peak, 1),
                         "other_load": None if other is None else round(other, 3)})
            print(f"run {repeat + 1}: {wall:.1f} s, peak {peak:.0f} MiB", flush=True)
    best = min(runs, key=lambda run: run["wall_s"])
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": common.machine_info(args.threads),
        "volume": volume_info,
        "model": {"id": card.id, "version": card.version, "planes": card.inference_planes, "fusion": card.fusion,
                  "spacing_mm": card.spacing_mm, "architecture": card.architecture},
        "runs": runs,
        "best_wall_s": best["wall_s"],
        "target_s": TARGET_S,
        "meets_target": best["wall_s"] <= TARGET_S,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{card.id} ({', '.join(card.inference_planes)}; {card.fusion}): best {best['wall_s']:.1f} s end to end "
          f"for a 1 mm 256x256x180 head on {args.threads} threads (target {TARGET_S:.0f} s); {args.out}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
