"""CUDA checks of the translation engine with the shipped models, run on a lent GPU (CI has none): device
choice, agreement of every autocast precision with a float32 CPU run, throughput of the three-plane fused
translation, peak GPU memory of a large CT, out-of-memory handling, and the CLI end to end.

    python Training/benchmarks/cuda_check.py --t1 T1_1mm.nii.gz --ct head_ct.nii.gz \
        --out Training/benchmarks/results/translate_cuda_h200.json

The report is rewritten after every section, so a run stopped at its time limit keeps what it measured;
`--sections` runs some sections again into an existing report, replacing theirs.
`--device cpu` runs the same sections on the CPU (a dry run of this script; the out-of-memory section is skipped).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from MedTranslateLib import load_model, translate_image  # noqa: E402
from MedTranslateLib.device import select_device  # noqa: E402
from MedTranslateLib.networks import size_multiple  # noqa: E402
from MedTranslateLib.translate import passes_for  # noqa: E402

HEAD_SIZE = (256, 256, 180)  # a 1 mm head, (i, j, k)
LARGE_CT = ((512, 512, 400), (0.5, 0.5, 0.6))
MODELS = {"mr-t1-to-t2-pix2pix": "t1", "ct-to-mr-t1-unet-l2": "ct"}  # model id -> input it translates
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SECTIONS = ("models", "large", "oom", "cli", "stages", "compile")


def grid_volume(image: sitk.Image, size: Tuple[int, int, int], spacing: Tuple[float, float, float],
                background: float) -> sitk.Image:
    """`image` resampled (linear) onto a grid of `size` voxels (i, j, k) at `spacing`, centred on it."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    half_extent = np.array([(n - 1) * d / 2 for n, d in zip(size, spacing)])
    origin = np.array(centre) - np.array(image.GetDirection()).reshape(3, 3) @ half_extent
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing,
                         image.GetDirection(), background, sitk.sitkFloat32)


def timed(run: Callable[[], sitk.Image]) -> Tuple[sitk.Image, float, float]:
    """(result, seconds, peak GPU MiB; 0 without CUDA) of one synchronised run."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
    return result, time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0


def agreement(values: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
    """Differences from the float32 CPU result, as fractions of its 0.5-99.5 percentile range."""
    scale = float(np.percentile(reference, 99.5) - np.percentile(reference, 0.5)) or 1.0
    difference = np.abs(values.astype(np.float64) - reference)
    return {"max_of_range": round(float(difference.max()) / scale, 5),
            "p99_9_of_range": round(float(np.percentile(difference, 99.9)) / scale, 5),
            "mean_of_range": round(float(difference.mean()) / scale, 6)}


def check_models(images: Dict[str, sitk.Image], device: str, report: Dict[str, Any]) -> None:
    """Every precision and two batch sizes on CUDA against a float32 run on the CPU, per shipped model."""
    for model_id, source in MODELS.items():
        model = load_model(model_id)
        image = images[source]
        planes = passes_for(image, model.card, size_multiple(model.network))
        started = time.perf_counter()
        reference = sitk.GetArrayFromImage(translate_image(image, model, device="cpu", precision="fp32"))
        entry: Dict[str, Any] = {"input": source, "size": list(image.GetSize()), "planes": planes,
                                 "card_precision": model.card.precision,
                                 "cpu_fp32_seconds": round(time.perf_counter() - started, 2),
                                 "cpu_threads": torch.get_num_threads(), "runs": {}}
        for precision in PRECISIONS:
            for batch in (8, 32):
                def run() -> sitk.Image:
                    return translate_image(image, model, device=device, batch_size=batch, precision=precision)
                run()  # warm-up: cuDNN picks its algorithms
                result, seconds, peak = timed(run)
                values = sitk.GetArrayFromImage(result)
                finite = bool(np.isfinite(values).all())
                row = {"seconds": round(seconds, 3), "peak_gpu_mib": round(peak, 1), "finite": finite,
                       "geometry_kept": (result.GetSize(), result.GetSpacing(), result.GetOrigin(),
                                         result.GetDirection()) == (image.GetSize(), image.GetSpacing(),
                                                                    image.GetOrigin(), image.GetDirection()),
                       "vs_cpu_fp32": agreement(values, reference)}
                entry["runs"][f"{precision}/batch{batch}"] = row
                print(model_id, precision, batch, row, flush=True)
        entry["caller_weights_on"] = str(next(model.network.parameters()).device)  # the engine copies to move
        report["models"][model_id] = entry


def check_large_ct(ct: sitk.Image, device: str, report: Dict[str, Any]) -> None:
    """Peak GPU memory of a 512×512×400 CT through CT → T1 (three planes, fused), against its float32 size."""
    size, spacing = LARGE_CT
    big = grid_volume(ct, size, spacing, -1000.0)
    model = load_model("ct-to-mr-t1-unet-l2")
    translate_image(grid_volume(ct, (64, 64, 64), (4.0, 4.0, 4.0), -1000.0), model, device=device)
    result, seconds, peak = timed(lambda: translate_image(big, model, device=device))
    volume_mib = float(np.prod(size)) * 4 / 2**20
    planes = passes_for(big, model.card, size_multiple(model.network))
    report["large_ct"] = {"model": "ct-to-mr-t1-unet-l2", "size": list(size), "spacing_mm": list(spacing),
                          "planes": planes, "seconds": round(seconds, 2), "peak_gpu_mib": round(peak, 1),
                          "float32_volume_mib": round(volume_mib, 1),
                          "peak_gpu_over_volume": round(peak / volume_mib, 3),
                          "finite": bool(np.isfinite(sitk.GetArrayViewFromImage(result)).all())}
    print("large", report["large_ct"], flush=True)


def check_out_of_memory(t1: sitk.Image, report: Dict[str, Any]) -> None:
    """GPU memory caps of a half, a quarter and a tenth of what a 24-slice batch takes: the engine halves the
    batch until it fits; with no room at all, not even for the weights, it runs on the CPU. Every cap must
    give the batch-1 result."""
    model = load_model("mr-t1-to-t2-pix2pix")
    small = grid_volume(t1, (256, 256, 24), (1.0, 1.0, 1.0), 0.0)
    expected = sitk.GetArrayFromImage(translate_image(small, model, device="cuda", batch_size=1, precision="fp32"))
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    _, _, peak_mib = timed(lambda: translate_image(small, model, device="cuda", batch_size=24, precision="fp32"))
    report["out_of_memory"] = {"batch24_peak_gpu_mib": round(peak_mib, 1)}
    need = peak_mib * 2**20 - base
    caps = {"half": need / 2, "quarter": need / 4, "tenth": need / 10, "none": 0}
    for label, headroom in caps.items():
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(0).total_memory
        budget = torch.cuda.memory_allocated() + headroom
        torch.cuda.set_per_process_memory_fraction(budget / total)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = translate_image(small, model, device="cuda", batch_size=24, precision="fp32")
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
        values = sitk.GetArrayFromImage(result)
        report["out_of_memory"][label] = {
            "memory_cap_mib": round(budget / 2**20), "vs_batch1": agreement(values, expected),
            "warnings": sorted({str(w.message) for w in caught if "memory" in str(w.message)})}
        print("oom", label, report["out_of_memory"][label], flush=True)


def check_cli(t1: sitk.Image, report: Dict[str, Any]) -> None:
    """`medtranslate translate` end to end with the default device (auto, so CUDA), and a device that is not
    there (cuda:1 on a one-GPU machine): one line, a nonzero exit, no output file."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "t1.nii.gz", Path(folder) / "t2.nii.gz"
        sitk.WriteImage(t1, str(source))
        command = [sys.executable, "-m", "MedTranslateLib.cli", "translate", str(source), str(target),
                   "--model", "mr-t1-to-t2-pix2pix"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - started
        written = sitk.ReadImage(str(target)) if target.exists() else None
        report["cli"] = {"device": "auto", "seconds_end_to_end": round(seconds, 2), "exit": done.returncode,
                         "stderr": done.stderr.strip().splitlines()[-3:],
                         "geometry_kept": written is not None and (written.GetSize(), written.GetSpacing(),
                                                                    written.GetOrigin()) == (
                             t1.GetSize(), t1.GetSpacing(), t1.GetOrigin())}
        missing = Path(folder) / "missing.nii.gz"
        refused = subprocess.run(command[:-3] + [str(missing), "--model", "mr-t1-to-t2-pix2pix", "--device",
                                                 f"cuda:{torch.cuda.device_count()}"],
                                 capture_output=True, text=True, cwd=REPO)
        report["cli"]["absent_gpu"] = {"exit": refused.returncode, "stderr": refused.stderr.strip().splitlines(),
                                       "output_written": missing.exists()}
    print("cli", report["cli"], flush=True)


STAGES = """
import json, sys, time
stages, clock = {}, [time.perf_counter()]
def mark(name):
    clock.append(time.perf_counter())
    stages[name] = round(clock[-1] - clock[-2], 3)
import torch; mark("import torch")
torch.zeros(1, device=sys.argv[3])
if torch.cuda.is_available():
    torch.cuda.synchronize()
mark("device ready")
import SimpleITK as sitk
from MedTranslateLib import load_model, translate_image; mark("import MedTranslateLib")
model = load_model("mr-t1-to-t2-pix2pix"); mark("load model")
image = sitk.ReadImage(sys.argv[1]); mark("read")
result = translate_image(image, model, device=sys.argv[3]); mark("translate (first)")
result = translate_image(image, model, device=sys.argv[3]); mark("translate (again)")
sitk.WriteImage(result, sys.argv[2], True); mark("write")
print(json.dumps(stages))
"""


def check_cli_stages(t1: sitk.Image, device: str, report: Dict[str, Any]) -> None:
    """Where a fresh process's seconds go (what each Apply in Slicer and each CLI call pays): the imports, the
    CUDA context, the model, reading, the first and a second translation, writing."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "t1.nii.gz", Path(folder) / "t2.nii.gz"
        sitk.WriteImage(t1, str(source))
        done = subprocess.run([sys.executable, "-c", STAGES, str(source), str(target), device],
                              capture_output=True, text=True, cwd=REPO, check=True)
    report["process_stages_seconds"] = json.loads(done.stdout.strip().splitlines()[-1])
    print("stages", report["process_stages_seconds"], flush=True)


def check_compile(t1: sitk.Image, device: str, report: Dict[str, Any]) -> None:
    """`compile=True` on the three-plane T2 model: first run (compilation included) and a second run."""
    model = load_model("mr-t1-to-t2-pix2pix")
    _, first, _ = timed(lambda: translate_image(t1, model, device=device, compile=True))
    _, second, peak = timed(lambda: translate_image(t1, model, device=device, compile=True))
    report["compile"] = {"model": "mr-t1-to-t2-pix2pix", "first_seconds": round(first, 2),
                         "second_seconds": round(second, 3), "peak_gpu_mib": round(peak, 1)}
    print("compile", report["compile"], flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1", type=Path, required=True, help="a head T1 (resampled to a 1 mm 256×256×180 grid)")
    parser.add_argument("--ct", type=Path, required=True, help="a head CT in HU (resampled likewise)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and select_device("auto").type != "cuda":
        parser.error("device auto did not pick CUDA: run this on a machine with a GPU")
    torch.backends.cudnn.benchmark = True
    t1 = grid_volume(sitk.ReadImage(str(args.t1), sitk.sitkFloat32), HEAD_SIZE, (1.0, 1.0, 1.0), 0.0)
    ct = grid_volume(sitk.ReadImage(str(args.ct), sitk.sitkFloat32), HEAD_SIZE, (1.0, 1.0, 1.0), -1000.0)
    report: Dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {"models": {}}
    report.update({"gpu": torch.cuda.get_device_name(0) if cuda else "none (dry run on the CPU)",
                   "torch": torch.__version__, "python": platform.python_version(),
                   "auto_device": select_device("auto").type, "inputs": {"t1": args.t1.name, "ct": args.ct.name}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run = {"models": lambda: check_models({"t1": t1, "ct": ct}, args.device, report),
           "large": lambda: check_large_ct(ct, args.device, report),
           "oom": lambda: check_out_of_memory(t1, report),
           "cli": lambda: check_cli(t1, report), "stages": lambda: check_cli_stages(t1, args.device, report),
           "compile": lambda: check_compile(t1, args.device, report)}
    for section in args.sections:
        if section == "oom" and not cuda:
            continue
        run[section]()
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
