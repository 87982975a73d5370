"""fp32 against bf16 autocast on this CPU, for every shipped model: held-out cases and a real head.

For each model and case: the mean absolute difference between the fp32 and the bf16 output as a fraction of the
output's range (0.5-99.5 percentiles of the fp32 output: a model whose card maps its output to the source's range
answers in those units, not the reference's), the SSIM of each output against the reference, and the milliseconds
per slice of each (the translate_image call, passes and fusion included, divided by the slices it ran). A model
passes when every difference stays below 1 % of the range and every SSIM within 0.005; `--update-cards` writes
`precision: "fp32"` into the bundled card of a model that fails (and removes it from one that passes), so
`precision="auto"` runs it in float32.

The real head is the bundled 2 mm Colin27 T1 (MedTranslateLib/samples), for the models whose source is MR-T1.
Held-out cases come from the prepared data (Training/build_shipped_models.py prepare); a model without them is
measured on the real head only, and says so.

    python Training/benchmarks/benchmark_precision.py [--cases 2] [--threads 2] [--update-cards] [ID ...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Training"))
from shipped_models import MODELS, SHIPPED, ShippedModel  # noqa: E402

from MedTranslateLib.axes import reorientation  # noqa: E402
from MedTranslateLib.device import cpu_has_native_bf16  # noqa: E402
from MedTranslateLib.metrics import compare  # noqa: E402
from MedTranslateLib.networks import size_multiple  # noqa: E402
from MedTranslateLib.package import CARD_FILE, load_package  # noqa: E402
from MedTranslateLib.training.trainer import describe_hardware  # noqa: E402
from MedTranslateLib.translate import passes_for, translate_image  # noqa: E402
from MedTranslateLib.volume import read_volume  # noqa: E402

DEFAULT_OUT = REPO / "Training" / "benchmarks" / "results" / "precision_cpu.json"
REAL_HEAD = REPO / "MedTranslateLib" / "samples" / "colin27_t1_2mm.nii.gz"
MAX_DIFFERENCE = 0.01  # of the output's range
MAX_SSIM_CHANGE = 0.005


def cases_of(model: ShippedModel, count: int) -> List[Tuple[str, Path, Optional[Path]]]:
    """(name, input, reference or None): the first `count` held-out pairs, then the real head (MR-T1 models)."""
    cases: List[Tuple[str, Path, Optional[Path]]] = []
    folder = model.data / "test" / model.source
    for source in sorted(folder.glob("*.nii.gz"))[:count]:
        target = model.data / "test" / model.target / source.name
        if target.is_file():
            cases.append((source.name[:-len(".nii.gz")], source, target))
    if model.source.startswith("t1") and model.source != "t1_motion":
        cases.append(("real head (Colin27, 2 mm)", REAL_HEAD, None))
    return cases


def timed(image: sitk.Image, package: Any, precision: str) -> Tuple[np.ndarray, float]:
    """(output array, seconds) of one translate_image call, best of two (the first warms the caches)."""
    best, output = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        output = sitk.GetArrayFromImage(translate_image(image, package, device="cpu", precision=precision))
        best = min(best, time.perf_counter() - started)
    return output, best


def measure_case(package: Any, source: Path, reference: Optional[Path]) -> Dict[str, Any]:
    image = read_volume(source)
    planes = passes_for(image, package.card, size_multiple(package.network))
    slices = sum(image.GetSize()[2 - reorientation(image.GetDirection(), plane).axes[0]]
                 for plane in planes)  # the slices of every pass
    fp32, fp32_s = timed(image, package, "fp32")
    bf16, bf16_s = timed(image, package, "bf16")
    low, high = np.percentile(fp32, [0.5, 99.5])  # the output's own range: some models answer in the source's
    scale = float(high - low) or 1.0              # range (a card's output_range), not the reference's units
    result: Dict[str, Any] = {
        "mean_abs_difference_of_range": float(np.mean(np.abs(fp32 - bf16)) / scale),
        "max_abs_difference_of_range": float(np.max(np.abs(fp32 - bf16)) / scale),
        "ms_per_slice": {"fp32": 1000 * fp32_s / slices, "bf16": 1000 * bf16_s / slices},
        "slices": slices,
    }
    if reference is not None:
        target = sitk.GetArrayFromImage(read_volume(reference))
        ssim = {name: compare(values, target)["ssim"] for name, values in (("fp32", fp32),
                                                                                        ("bf16", bf16))}
        result["ssim"] = ssim
        result["ssim_change"] = abs(ssim["fp32"] - ssim["bf16"])
    return result


def measure_model(model: ShippedModel, count: int) -> Dict[str, Any]:
    package = load_package(MODELS / model.id)
    package.card.precision = "auto"  # measure what bf16 does, whatever the card says now
    cases = {name: measure_case(package, source, reference) for name, source, reference in cases_of(model, count)}
    failures = [f"{name}: difference {case['mean_abs_difference_of_range']:.2%} of the range"
                for name, case in cases.items() if case["mean_abs_difference_of_range"] >= MAX_DIFFERENCE]
    failures += [f"{name}: SSIM {case['ssim']['fp32']:.4f} -> {case['ssim']['bf16']:.4f}"
                 for name, case in cases.items() if case.get("ssim_change", 0.0) > MAX_SSIM_CHANGE]
    speedups = [case["ms_per_slice"]["fp32"] / case["ms_per_slice"]["bf16"] for case in cases.values()]
    return {"cases": cases, "held_out_cases": sum("ssim" in case for case in cases.values()),
            "bf16_passes": not failures, "failures": failures,
            "bf16_speedup": float(np.median(speedups)) if speedups else None}


def update_card(model_id: str, passes: bool) -> None:
    path = MODELS / model_id / CARD_FILE
    card = json.loads(path.read_text(encoding="utf-8"))
    if passes:
        card.pop("precision", None)
    else:
        card["precision"] = "fp32"
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="shipped model ids (default: all)")
    parser.add_argument("--cases", type=int, default=2, help="held-out cases per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update-cards", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not cpu_has_native_bf16():
        print("this CPU has no native bf16 (AVX512-BF16 / AMX-BF16); precision=auto stays fp32 here")
    models = [m for m in SHIPPED if not args.ids or m.id in args.ids]
    results: Dict[str, Any] = {}
    # each model keeps its own date and CPU: a run for some models merges into a file that others' runs wrote
    measured = {"date": datetime.date.today().isoformat(), "hardware": describe_hardware(torch.device("cpu"))}
    for model in models:
        results[model.id] = {**measure_model(model, args.cases), **measured}
        entry = results[model.id]
        print(f"{model.id}: bf16 {'passes' if entry['bf16_passes'] else 'FAILS'}, "
              f"{entry['bf16_speedup']:.2f}x faster; " + "; ".join(
                  f"{name} diff {case['mean_abs_difference_of_range']:.3%}, "
                  f"{case['ms_per_slice']['fp32']:.1f} / {case['ms_per_slice']['bf16']:.1f} ms a slice"
                  for name, case in entry["cases"].items()), flush=True)
        if args.update_cards:
            update_card(model.id, entry["bf16_passes"])
    previous = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    previous.setdefault("models", {}).update(results)
    previous.update({"date": measured["date"], "threads": args.threads,
                     "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
                     "limits": {"mean_abs_difference_of_range": MAX_DIFFERENCE, "ssim_change": MAX_SSIM_CHANGE}})
    args.out.write_text(json.dumps(previous, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
