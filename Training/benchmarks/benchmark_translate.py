"""CPU benchmark of volume translation: the `medtranslate` CLI, `translate_image` in process, and MONAI.

The input is a real MRI template (SPM's avg152T1) resampled onto a 256x256x180 grid of 0.86x0.86x1.1 mm, a
typical T1 acquisition size. Two networks are timed, with RANDOM weights (timing only; their output means
nothing): the compact pix2pix U-Net of the bundled demo model (mr-t1-to-t2-pix2pix), the compact classic U-Net
of the CT -> MR-T1 model and the compact CycleGAN ResNet generator.
Each model card's spacing equals the volume's in-plane spacing, so no variant resamples: all do the same work.

Per network, every measurement runs in a fresh subprocess (its peak RSS is its own, from os.wait4):

  (a) cli      `medtranslate translate IN OUT --model PKG`, end to end (start, import, read, translate, write);
               best of --repeats runs, each its own process
  (b) library  `translate_image(image, model, device="cpu", batch_size=B)` on an image already read and a
               model already loaded; one warm-up call, then best of --repeats
  (b') compile the same with compile=True; the warm-up (compilation) time is reported separately
  (c) monai    `monai.inferers.sliding_window_inference` with roi_size (1, H, W) and sw_batch_size B over the
               (1, 1, D, H, W) volume, the same network and weights, eval mode under torch.no_grad, a predictor
               squeezing the depth-1 axis; the timed part includes the library's intensity normalisation and
               the conversion back to a SimpleITK image, so (b) and (c) differ only in the network loop

(b) runs at the library's default precision ("auto": bf16 on a CPU with native bf16); after its timed calls the
worker translates once more with precision="fp32", untimed, to check the engine computes MONAI's function.

Targets: monai/library >= 3 (the engine at three times MONAI's sliding window); the fp32 library output and
MONAI's agree to < 1e-3 in normalised units on the input slices with content (see informative_slices; the
whole-volume difference is reported beside it). The default-precision
output's difference from MONAI is reported beside it (bf16's own bound, per trained model: benchmark_precision.py).
The CLI's cost over (b) is a fixed one (Python start, imports, reading and writing the gzip files) and is reported
in seconds, without a target. Each measurement also records the share of CPU time other
processes used meanwhile ("other load"), so a run on a busy machine says so. MONAI is needed for (c) only and is not a project dependency: `pip install monai`.

    python Training/benchmarks/benchmark_translate.py [--repeats 3] [--batch-size 8] [--networks unet resnet]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Training" / "benchmarks" / "results" / "translate_cpu.json"
TEMPLATE = "canonical/avg152T1.nii"
GRID_SIZE = (256, 256, 180)  # (i, j, k): 256x256 axial slices, 180 of them
GRID_SPACING = (0.86, 0.86, 1.1)  # mm; 220 x 220 x 198 mm covers the template's head
DEMO_CARD = REPO / "MedTranslateLib" / "models" / "mr-t1-to-t2-pix2pix" / "model.json"
NETWORKS: Dict[str, Dict[str, Any]] = {
    "pix2pix": json.loads(DEMO_CARD.read_text())["architecture"],
    "unet": {"name": "unet", "variant": "classic", "width": 16, "depth": 4, "norm": "batch"},
    "resnet": {"name": "resnet", "width": 32, "n_blocks": 6, "norm": "instance"},
}
NETWORK_LABELS = {"pix2pix": "pix2pix U-Net of the demo model (mr-t1-to-t2-pix2pix's architecture)",
                  "unet": "classic U-Net w16 d4 (the CT -> MR-T1 model's family)",
                  "resnet": "CycleGAN ResNet w32 6 blocks"}
CONTENT_STD = 0.1  # a slice has content when its standard deviation is at least this share of the volume's
TARGETS = {"monai_over_library_min": 3.0, "max_abs_diff_fp32_normalised": 1e-3}
INTENSITY = {
    "source": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5},
    "target": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5, "output_range": "source"},
}


# ----------------------------------------------------------------------------------------------- inputs

def fetch_template() -> Path:
    """The avg152T1 template (downloaded once by Training/data/fetch_spm_templates.py's fetch)."""
    spec = importlib.util.spec_from_file_location("fetch_spm_templates",
                                                  REPO / "Training" / "data" / "fetch_spm_templates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fetch(volumes=(TEMPLATE,))[0]


def build_volume(template: Path, path: Path, slices: int,
                 spacing: Tuple[float, float, float] = GRID_SPACING) -> Dict[str, Any]:
    """Resample the template linearly onto a GRID_SIZE grid of `spacing` (identity direction) centred on it;
    write .nii.gz."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(template), sitk.sitkFloat32)
    size = (GRID_SIZE[0], GRID_SIZE[1], slices)
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    origin = [c - (n - 1) / 2 * s for c, n, s in zip(centre, size, spacing)]
    volume = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin, spacing,
                           (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), 0.0, sitk.sitkFloat32)
    sitk.WriteImage(volume, str(path), True)
    return {"source": f"SPM {TEMPLATE} resampled (linear)", "size_ijk": list(size), "spacing_mm": list(spacing),
            "slices": slices, "slice_shape": [GRID_SIZE[1], GRID_SIZE[0]], "dtype": "float32",
            "file": path.name, "file_bytes": path.stat().st_size}


def build_package(name: str, folder: Path) -> Path:
    """A model package with random (seeded) weights for `name`; the card needs no resampling of the volume."""
    import torch

    from MedTranslateLib.networks import build_network
    from MedTranslateLib.package import save_package

    torch.manual_seed(0)
    network = build_network(NETWORKS[name], in_channels=1, out_channels=1).eval()
    card = {
        "schema_version": 1,
        "id": f"benchmark-{name}-random",
        "version": "0.0.0",
        "task": "translation",
        "source_modality": "MR-T1",
        "target_modality": "MR-T2",
        "architecture": NETWORKS[name],
        "intensity": INTENSITY,
        "spacing_mm": [GRID_SPACING[1], GRID_SPACING[0]],
        "slice_axis": "axial",
        "context_slices": 0,
        "training": {"data": "none", "note": "random weights (torch.manual_seed(0)) for timing only"},
        "metrics": {},
        "license": "Apache-2.0",
        "intended_use": "Benchmarking only: random weights, the output is meaningless.",
        "description": f"Benchmark package: {NETWORK_LABELS[name]}, random weights.",
        "warnings": ["Random weights: for timing only."],
    }
    out = folder / f"benchmark-{name}"
    save_package(card, network, out)
    return out


# ----------------------------------------------------------------------------------------------- subprocesses

def child_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"})
    return env


def run_process(command: List[str], env: Dict[str, str], log: Path) -> Tuple[float, float, int, Optional[float]]:
    """Run `command` to completion; output to `log`.

    Returns (wall seconds, peak RSS MiB of that process, exit code, other load): the share of the machine's CPU
    time that other processes used meanwhile (0: the measurement had the CPU to itself; None off Linux).
    """
    busy_before = _busy_cpu_seconds()
    with open(log, "wb") as sink:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    busy_after = _busy_cpu_seconds()
    other = None
    if busy_before is not None and busy_after is not None:
        others = busy_after - busy_before - (usage.ru_utime + usage.ru_stime)
        other = max(0.0, others) / (wall * (os.cpu_count() or 1))
    return wall, maxrss_mib(usage.ru_maxrss), process.returncode, other


def wait_until_idle(limit_s: float, window_s: float = 10.0, threshold: float = 0.05) -> Optional[float]:
    """Wait (at most `limit_s`) until other processes use < `threshold` of the CPU over `window_s`.

    Returns the last share seen (None off Linux); on a shared machine this keeps measurements apart from
    other people's jobs instead of timing the contention.
    """
    deadline = time.monotonic() + limit_s
    share = None
    while True:
        before = _busy_cpu_seconds()
        if before is None:
            return None
        time.sleep(window_s)
        share = (_busy_cpu_seconds() - before) / (window_s * (os.cpu_count() or 1))  # type: ignore[operator]
        if share < threshold or time.monotonic() >= deadline:
            return share


def _busy_cpu_seconds() -> Optional[float]:
    """CPU seconds all processes have used since boot (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def maxrss_mib(maxrss: int) -> float:
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB on Linux


def cli_command() -> List[str]:
    script = Path(sys.executable).parent / "medtranslate"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "MedTranslateLib.cli"]


def measure_cli(volume: Path, package: Path, work: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """(a): best of `repeats` fresh `medtranslate translate` processes."""
    runs, peaks, others = [], [], []
    output = work / f"cli_{package.name}.nii.gz"
    command = cli_command() + ["translate", str(volume), str(output), "--model", str(package)]
    if args.batch_size != 8:
        command += ["--batch-size", str(args.batch_size)]
    for repeat in range(args.repeats):
        if args.wait_idle:
            wait_until_idle(args.wait_idle)
        log = work / f"cli_{package.name}_{repeat}.log"
        wall, peak, code, other = run_process(command, child_env(args.threads), log)
        others.append(other)
        if code != 0:
            raise RuntimeError(f"CLI failed (exit {code}):\n{log.read_text(errors='replace')[-2000:]}")
        runs.append(wall)
        peaks.append(peak)
    shown = [part.replace(str(work), "WORK") for part in command[len(cli_command()):]]  # no machine paths
    return {"command": " ".join(["medtranslate"] + shown), "seconds": min(runs),
            "runs_s": runs, "peak_rss_mib": max(peaks), "other_load": _worst(others)}


def _worst(values: List[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def measure_worker(mode: str, volume: Path, package: Path, work: Path, args: argparse.Namespace,
                   compile: bool = False) -> Dict[str, Any]:
    """(b) or (c): one fresh worker process that warms up once and times `repeats` calls."""
    tag = f"{mode}{'_compile' if compile else ''}_{package.name}"
    result_file, array_file = work / f"{tag}.json", work / f"{tag}.npy"
    spec = {"mode": mode, "volume": str(volume), "package": str(package), "batch_size": args.batch_size,
            "repeats": args.repeats, "threads": args.threads, "compile": compile,
            "result": str(result_file), "array": str(array_file), "array_fp32": str(work / f"{tag}_fp32.npy")}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    log = work / f"{tag}.log"
    if args.wait_idle:
        wait_until_idle(args.wait_idle)
    wall, peak, code, other = run_process(command, child_env(args.threads), log)
    if code != 0 or not result_file.is_file():
        raise RuntimeError(f"{tag} worker failed (exit {code}):\n{log.read_text(errors='replace')[-3000:]}")
    result = json.loads(result_file.read_text())
    result.update({"peak_rss_mib": peak, "process_wall_s": wall, "other_load": other, "array": str(array_file),
                   "array_fp32": spec["array_fp32"]})
    return result


# ----------------------------------------------------------------------------------------------- worker

def worker(spec: Dict[str, Any]) -> int:
    """Runs inside the fresh subprocess; writes its timings to spec['result'] and the last output array."""
    import numpy as np
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(spec["threads"])
    from MedTranslateLib.axes import reorientation
    from MedTranslateLib.package import load_package
    from MedTranslateLib.translate import translate_image
    from MedTranslateLib.volume import read_volume

    image = read_volume(spec["volume"])
    model = load_package(spec["package"])
    orientation = reorientation(image.GetDirection(), model.card.slice_axis)
    if orientation.axes != (0, 1, 2) or any(orientation.flips):
        raise RuntimeError("benchmark volume must need no reorientation, so that MONAI sees the same slices")
    if spec["mode"] == "library":
        call, extra = _library_call(image, model, spec)
    else:
        call, extra = _monai_call(image, model, spec)

    caught: List[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        start = time.perf_counter()
        result, target_range = call()
        warmup = time.perf_counter() - start
        caught += [str(r.message) for r in records]
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        result, target_range = call()
        times.append(time.perf_counter() - start)
    np.save(spec["array"], sitk.GetArrayViewFromImage(result))
    if spec["mode"] == "library" and not spec["compile"]:  # untimed: the engine's function at full precision
        full = translate_image(image, model, device="cpu", precision="fp32")  # held: the view below needs it
        np.save(spec["array_fp32"], sitk.GetArrayViewFromImage(full))
    slices = image.GetSize()[2]
    report = {"mode": spec["mode"], "compile": spec["compile"], "batch_size": spec["batch_size"],
              "threads": torch.get_num_threads(), "seconds": min(times), "runs_s": times, "warmup_s": warmup,
              "slices": slices, "slices_per_s": slices / min(times),
              "target_range": [target_range.low, target_range.high], "warnings": sorted(set(caught))}
    report.update(extra)
    if spec["compile"]:
        report["compile_fell_back"] = any("torch.compile failed" in w for w in caught)
    Path(spec["result"]).write_text(json.dumps(report))
    return 0


def _library_call(image, model, spec):
    import SimpleITK as sitk

    from MedTranslateLib.translate import translate_image

    mapping = model.card.intensity_pair
    # the target range translate_image maps its output to (fitted here once, outside the timed call)
    target_range = mapping.target_range(mapping.source.fit(sitk.GetArrayViewFromImage(image)))

    def call():
        result = translate_image(image, model, device="cpu", batch_size=spec["batch_size"], compile=spec["compile"])
        return result, target_range

    compiled = ", compile=True" if spec["compile"] else ""
    return call, {"call": f"translate_image(image, model, device='cpu', batch_size=B{compiled})"}


def _monai_call(image, model, spec):
    import monai
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    from MedTranslateLib.intensity import to_output_units

    network = model.network.eval()
    card = model.card
    mapping = card.intensity_pair
    depth, height, width = sitk.GetArrayViewFromImage(image).shape

    def predictor(window: torch.Tensor) -> torch.Tensor:
        """(N, 1, 1, H, W) windows -> the 2D network on (N, 1, H, W) -> (N, 1, 1, H, W)."""
        return network(window.squeeze(2)).unsqueeze(2)

    def call():
        array = sitk.GetArrayViewFromImage(image)
        source_range = mapping.source.fit(array)
        target_range = mapping.target_range(source_range)
        inputs = torch.from_numpy(source_range.to_network(array))[None, None]  # (1, 1, D, H, W)
        with torch.no_grad():
            # roi depth 1 and the full plane: one window per slice, none overlapping (default overlap 0.25
            # gives a scan interval of 1 slice and the whole plane)
            output = sliding_window_inference(inputs, roi_size=(1, height, width), sw_batch_size=spec["batch_size"],
                                              predictor=predictor)
        units = target_range.from_network(output[0, 0].numpy())
        result = sitk.GetImageFromArray(to_output_units(units, card.target_modality))
        result.CopyInformation(image)
        return result, target_range

    return call, {"call": f"sliding_window_inference(roi_size=(1, {height}, {width}), sw_batch_size=B)",
                  "monai_version": monai.__version__}


# ----------------------------------------------------------------------------------------------- report

def machine_info(threads: int) -> Dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "torch_threads": threads, "cpu_capability": _cpu_capability(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = None
    return info


def _load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages: well above 0 before the run means other work shared the CPU."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_capability() -> Optional[str]:
    import torch

    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return None


def informative_slices(volume: Path) -> Any:
    """(D,) bool: input slices with content, whose standard deviation is at least CONTENT_STD of the volume's.
    A constant slice (air beyond the template) has no well-defined output through instance norm: rounding noise
    is normalised to unit variance, so two correct implementations can differ there by O(1). A nearly constant
    one (the fading top of the template's head) is ill-conditioned in the same way through the nine instance
    norms of a ResNet with random weights: float32 rounding differences grow to 0.1-0.4 there. Outputs are
    compared on the slices with content; the whole-volume difference is reported beside it."""
    import numpy as np
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(sitk.ReadImage(str(volume)))  # a copy: a view would outlive its image
    spread = array.reshape(array.shape[0], -1).std(axis=1)
    return np.asarray(spread >= CONTENT_STD * array.std())


def compare(library: Dict[str, Any], other: Dict[str, Any], keep: Any = None, key: str = "array") -> float:
    """Max |difference| of two outputs in normalised units (the network's [-1, 1] range), on `keep` slices;
    `key`: the library output compared ("array" at its default precision, "array_fp32")."""
    import numpy as np

    low, high = library["target_range"]
    a, b = np.load(library[key]), np.load(other["array"])
    if keep is not None:
        a, b = a[keep], b[keep]
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) * 2.0 / (high - low)


def summarise(name: str, parts: Dict[str, Dict[str, Any]], slices: int, keep: Any) -> Dict[str, Any]:
    library = parts["library"]
    for part in parts.values():
        part.setdefault("slices_per_s", slices / part["seconds"])
    out: Dict[str, Any] = {"architecture": NETWORKS[name], "label": NETWORK_LABELS[name],
                           "weights": "random (seeded), timing only", "variants": parts}
    ratios: Dict[str, Any] = {}
    if "cli" in parts:
        out["cli_overhead_s"] = parts["cli"]["seconds"] - library["seconds"]
    if "monai" in parts:
        ratios["monai_over_library"] = parts["monai"]["seconds"] / library["seconds"]
        out["max_abs_diff_library_fp32_vs_monai_normalised"] = compare(library, parts["monai"], keep, "array_fp32")
        out["max_abs_diff_library_fp32_vs_monai_normalised_all_slices"] = compare(library, parts["monai"],
                                                                                   key="array_fp32")
        out["max_abs_diff_library_vs_monai_normalised"] = compare(library, parts["monai"], keep)
        out["max_abs_diff_library_vs_monai_normalised_all_slices"] = compare(library, parts["monai"])
    if "compile" in parts:
        ratios["compile_over_library"] = parts["compile"]["seconds"] / library["seconds"]
        out["max_abs_diff_library_vs_compile_normalised"] = compare(library, parts["compile"], keep)
        out["max_abs_diff_library_vs_compile_normalised_all_slices"] = compare(library, parts["compile"])
    out["ratios"] = ratios
    met: Dict[str, bool] = {}
    if "monai_over_library" in ratios:
        met["monai_over_library>=3"] = ratios["monai_over_library"] >= TARGETS["monai_over_library_min"]
        met["fp32_outputs_agree<1e-3"] = (out["max_abs_diff_library_fp32_vs_monai_normalised"]
                                          < TARGETS["max_abs_diff_fp32_normalised"])
    out["targets_met"] = met
    for part in parts.values():
        part.pop("array", None)
        part.pop("array_fp32", None)
    return out


def print_table(results: Dict[str, Any]) -> None:
    info, volume = results["machine"], results["volume"]
    print(f"\n{info['cpu']}, {info['usable_cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
          f"MONAI {info['monai']}")
    print(f"volume {'x'.join(map(str, volume['size_ijk']))} ({volume['slices']} axial slices, "
          f"{volume['slices_without_content']} of them air or nearly), batch "
          f"{results['batch_size']}, best of {results['repeats']}; random weights (timing only)")
    print("other load: share of the machine's CPU time used by other processes during the measurement "
          "(above ~5% the timings are disturbed)")
    print()
    header = f"{'network':<8} {'variant':<30} {'seconds':>8} {'slices/s':>9} {'peak RSS MiB':>13} {'other load':>10}  notes"
    print(header)
    print("-" * len(header))
    names = {"cli": "(a) CLI end to end", "library": "(b) translate_image", "compile": "(b) translate_image compile",
             "monai": "(c) MONAI sliding window"}
    for name, network in results["networks"].items():
        for key in ("cli", "library", "compile", "monai"):
            part = network["variants"].get(key)
            if part is None:
                continue
            note = ""
            if key == "compile":
                note = f"compile warm-up {part['warmup_s']:.1f} s" + (" FELL BACK TO EAGER" if part.get(
                    "compile_fell_back") else "")
            elif key in ("library", "monai"):
                note = f"warm-up {part['warmup_s']:.1f} s"
            other = part.get("other_load")
            other_text = "?" if other is None else f"{100 * other:.0f}%"
            print(f"{name:<8} {names[key]:<30} {part['seconds']:>8.2f} {part['slices_per_s']:>9.2f} "
                  f"{part['peak_rss_mib']:>13.0f} {other_text:>10}  {note}")
        ratios, met = network["ratios"], network["targets_met"]
        lines = []
        if "cli_overhead_s" in network:
            lines.append(f"CLI - (b) = {network['cli_overhead_s']:.2f} s (start, imports, reading and writing)")
        if "monai_over_library" in ratios:
            lines.append(f"(c)/(b) = {ratios['monai_over_library']:.3f} (target >= 3: "
                         f"{'met' if met['monai_over_library>=3'] else 'NOT met'})")
            lines.append(f"max |(b) in fp32 - (c)| = {network['max_abs_diff_library_fp32_vs_monai_normalised']:.2e}"
                         f" normalised ({'agree' if met['fp32_outputs_agree<1e-3'] else 'DISAGREE'}; all slices "
                         f"incl. constant: {network['max_abs_diff_library_fp32_vs_monai_normalised_all_slices']:.2e})")
            lines.append(f"max |(b) - (c)| = {network['max_abs_diff_library_vs_monai_normalised']:.2e} normalised "
                         "at the library's default precision")
        if "compile_over_library" in ratios:
            lines.append(f"compile/(b) = {ratios['compile_over_library']:.3f}, max |diff| "
                         f"{network['max_abs_diff_library_vs_compile_normalised']:.2e} (all slices "
                         f"{network['max_abs_diff_library_vs_compile_normalised_all_slices']:.2e})")
        for line in lines:
            print(f"{'':<8} {line}")
        print()


# ----------------------------------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the best is reported")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per batch (B) for (b) and (c), and the CLI")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every measured process")
    parser.add_argument("--variants", nargs="+", default=["cli", "library", "compile", "monai"],
                        choices=["cli", "library", "compile", "monai"], help="what to measure (library is always run)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement wait up to SECONDS for other processes to leave the CPU "
                             "idle (shared machines); 0: do not wait")
    parser.add_argument("--slices", type=int, default=GRID_SIZE[2], help="axial slices (180; fewer for a quick check)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    variants = ["library"] + [v for v in args.variants if v != "library"]
    if "monai" in variants and importlib.util.find_spec("monai") is None:
        print("MONAI is not installed (pip install monai); skipping (c)", file=sys.stderr)
        variants.remove("monai")
    results: Dict[str, Any] = {
        "benchmark": "translate_cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.threads),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "weights": "random (seeded); the networks' outputs are meaningless, only timings count",
        "targets": TARGETS,
        "networks": {},
    }
    results["machine"]["load_average_before"] = _load_average()
    with tempfile.TemporaryDirectory(prefix="medtranslate-bench-") as folder:
        work = Path(folder)
        volume_path = work / "t1_256x256x180.nii.gz"
        results["volume"] = build_volume(fetch_template(), volume_path, args.slices)
        keep = informative_slices(volume_path)
        results["volume"]["slices_without_content"] = int((~keep).sum())
        results["agreement"] = (f"max |difference| in normalised units over the input slices with content (standard "
                                f"deviation at least {CONTENT_STD} of the volume's); constant and nearly constant "
                                "slices are ill-conditioned through instance norm and are reported separately as "
                                "*_all_slices")
        for name in args.networks:
            package = build_package(name, work)
            parts: Dict[str, Dict[str, Any]] = {}
            for variant in variants:
                print(f"[{name}] measuring {variant} ...", file=sys.stderr, flush=True)
                if variant == "cli":
                    parts["cli"] = measure_cli(volume_path, package, work, args)
                else:
                    mode = "library" if variant == "compile" else variant
                    parts[variant] = measure_worker(mode, volume_path, package, work, args, compile=variant == "compile")
            results["networks"][name] = summarise(name, parts, args.slices, keep)
    results["machine"]["load_average_after"] = _load_average()
    loads = [part.get("other_load") for network in results["networks"].values()
             for part in network["variants"].values()]
    results["max_other_load"] = _worst(loads)
    results["timings_disturbed"] = bool(results["max_other_load"] is not None and results["max_other_load"] > 0.05)
    met = [ok for network in results["networks"].values() for ok in network["targets_met"].values()]
    results["all_targets_met"] = all(met)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    if results["timings_disturbed"]:
        print(f"WARNING: other processes used up to {100 * results['max_other_load']:.0f}% of the CPU during a "
              "measurement; rerun on an idle machine for trustworthy timings")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
