"""CPU benchmark of memory and of folders: the peak of one large CT, and files per minute for a folder batch.

1. Memory: a 512×512×400 int16 CT (0.8×0.8×1 mm; a body outline of soft tissue with a bone rim in air, with
   noise) through `medtranslate translate` with a CT-source model, in a fresh process; its peak RSS (os.wait4),
   interpreter and torch included, against the float32 size of the volume (400 MiB). Target: at most 3×.
2. Folder: FILES copies of a head volume (SPM's avg152T1 resampled to 256×256×40 at 1 mm) through
   `medtranslate translate IN_DIR OUT_DIR`, then the same folder again (every output complete: the skip path),
   then through `torchrun --nproc_per_node 2` with one thread per process: files per minute, start-up included.

    python Training/benchmarks/benchmark_scale.py [--files 12] [--threads 2] [--model-ct ID] [--model ID]
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_translate as common  # noqa: E402

DEFAULT_OUT = REPO / "Training" / "benchmarks" / "results" / "scale_cpu.json"
CT_SIZE = (400, 512, 512)  # (Z, Y, X)
TARGET_RATIO = 3.0


def build_ct(path: Path) -> Dict[str, Any]:
    """The 512×512×400 int16 CT phantom; returns what it is."""
    import SimpleITK as sitk

    rows, columns = np.ogrid[:CT_SIZE[1], :CT_SIZE[2]]
    radius = ((rows - 256) / 200.0) ** 2 + ((columns - 256) / 170.0) ** 2
    plane = np.full(CT_SIZE[1:], -1000, np.int16)
    plane[radius < 1] = 40
    plane[(radius > 0.85) & (radius < 1)] = 900
    volume = np.broadcast_to(plane, CT_SIZE).copy()
    volume += np.random.default_rng(0).normal(0, 10, CT_SIZE).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 1.0))
    sitk.WriteImage(image, str(path), True)
    return {"size_ijk": list(CT_SIZE[::-1]), "spacing_mm": [0.8, 0.8, 1.0], "dtype": "int16",
            "float32_mib": float(np.prod(CT_SIZE)) * 4 / 2**20}


def measure_memory(work: Path, model: str, threads: int) -> Dict[str, Any]:
    ct = work / "ct.nii.gz"
    # built in a child process: a child's peak RSS (ru_maxrss) starts from its parent's size at fork time, so
    # the parent must stay small
    built = subprocess.run([sys.executable, __file__, "--build-ct", str(ct)], capture_output=True, text=True,
                           check=True)
    info = json.loads(built.stdout)
    command = common.cli_command() + ["translate", str(ct), str(work / "ct_out.nii.gz"), "--model", model]
    wall, peak, code, other = common.run_process(command, common.child_env(threads), work / "memory.log")
    if code != 0:
        raise SystemExit(f"translation failed; see {work / 'memory.log'}")
    ratio = peak / info["float32_mib"]
    return {**info, "model": model, "peak_rss_mib": peak, "ratio_to_float32": ratio, "wall_s": wall,
            "other_load": other, "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO}


def build_folder(folder: Path, files: int) -> None:
    template = common.fetch_template()
    folder.mkdir(parents=True)
    first = folder / "head000.nii.gz"
    common.build_volume(template, first, slices=40, spacing=(1.0, 1.0, 1.0))
    for number in range(1, files):
        shutil.copy(first, folder / f"head{number:03d}.nii.gz")


def measure_folder(work: Path, model: str, files: int, threads: int) -> Dict[str, Any]:
    inputs = work / "heads"
    build_folder(inputs, files)
    results: Dict[str, Any] = {"files": files, "model": model, "file": "256×256×40 float32 at 1 mm"}
    runs = (("one_process", common.cli_command(), work / "out", threads),
            ("rerun_all_complete", common.cli_command(), work / "out", threads),
            ("torchrun_2_processes", _torchrun(), work / "out_torchrun", 1))
    for name, launcher, out, per_process in runs:
        command = launcher + ["translate", str(inputs), str(out), "--model", model]
        env = dict(common.child_env(per_process), TMPDIR=str(work))
        wall, peak, code, other = common.run_process(command, env, work / f"{name}.log")
        if code != 0:
            raise SystemExit(f"{name} failed; see {work / f'{name}.log'}")
        summary = (work / f"{name}.log").read_text().strip().splitlines()[-1].split(" (")[0]  # no machine paths
        results[name] = {"wall_s": wall, "files_per_minute": 60 * files / wall, "peak_rss_mib": peak,
                         "other_load": other, "summary": summary}
    for leftover in work.glob("torchelastic_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return results


def _torchrun() -> List[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return launcher + ["--standalone", "--nproc_per_node=2", "-m", "MedTranslateLib.cli"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-ct", default="ct-to-mr-t1-unet-l2")
    parser.add_argument("--model", default="mr-t1-to-t2-pix2pix")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--build-ct", type=Path, help=argparse.SUPPRESS)  # measure_memory's child process
    args = parser.parse_args(argv)
    if args.build_ct:
        print(json.dumps(build_ct(args.build_ct)))
        return 0
    with tempfile.TemporaryDirectory(prefix="medtranslate-scale-") as folder:
        work = Path(folder)
        memory = measure_memory(work, args.model_ct, args.threads)
        print(f"memory: 512×512×400 CT peak {memory['peak_rss_mib']:.0f} MiB = "
              f"{memory['ratio_to_float32']:.2f}× its float32 size (target ≤ {TARGET_RATIO}×)", flush=True)
        batch = measure_folder(work, args.model, args.files, args.threads)
        for name in ("one_process", "rerun_all_complete", "torchrun_2_processes"):
            print(f"folder, {name}: {batch[name]['files_per_minute']:.1f} files/min "
                  f"({batch[name]['wall_s']:.1f} s; {batch[name]['summary']})", flush=True)
    result = {"date": datetime.date.today().isoformat(), "machine": common.machine_info(args.threads),
              "memory": memory, "folder": batch}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
