"""CUDA checks of the translation engine, run on a lent GPU (CI has none): device choice, autocast
precision and its error, throughput, peak GPU memory against the volume's size, out-of-memory handling.

    python Training/benchmarks/cuda_check.py --t1 avg152T1.nii --out results/translate_cuda.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict

import numpy as np
import SimpleITK as sitk
import torch

from MedTranslateLib import load_model, translate_image
from MedTranslateLib.device import select_device
from MedTranslateLib.networks import build_network
from MedTranslateLib.package import TranslationModel

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing"))
from tiny_model import card_fields  # noqa: E402

from MedTranslateLib.card import ModelCard  # noqa: E402


def grid_volume(t1: sitk.Image, size: tuple, spacing: tuple) -> sitk.Image:
    """The real T1 resampled onto a grid of `size` voxels (i, j, k) centred on it."""
    centre = t1.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in t1.GetSize()])
    half_extent = np.array([(n - 1) * d / 2 for n, d in zip(size, spacing)])
    origin = np.array(centre) - np.array(t1.GetDirection()).reshape(3, 3) @ half_extent
    return sitk.Resample(t1, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing, t1.GetDirection(), 0.0,
                         sitk.sitkFloat32)


def random_model(architecture: Dict[str, Any], spacing_mm) -> TranslationModel:
    torch.manual_seed(0)
    network = build_network(architecture, in_channels=1).eval()
    card = ModelCard.from_dict(card_fields(architecture=architecture, spacing_mm=spacing_mm, id="bench",
                                           weights_sha256="0" * 64))
    return TranslationModel(card=card, network=network, path=Path("."))


def timed(image, model, **options) -> tuple:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = translate_image(image, model, **options)
    torch.cuda.synchronize()
    return result, time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--t1", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    assert select_device("auto").type == "cuda", "auto did not pick CUDA"
    t1 = sitk.ReadImage(str(args.t1), sitk.sitkFloat32)
    report: Dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "python": platform.python_version(), "auto_device": "cuda", "runs": {}}
    volume = grid_volume(t1, (256, 256, 180), (0.86, 0.86, 1.1))
    networks = {"demo-unet": load_model("mr-t1-to-t2-unet-demo"),  # the demo model of the time (since replaced)
                "resnet-9-w64": random_model({"name": "resnet", "width": 64, "n_blocks": 9}, [0.86, 0.86]),
                "unet-pix2pix-256": random_model({"name": "unet", "variant": "pix2pix", "num_downs": 8},
                                                 [0.86, 0.86])}
    for name, model in networks.items():
        spacing = model.card.spacing_mm or [0.86, 0.86]
        image = volume if model.card.id != "mr-t1-to-t2-unet-demo" else grid_volume(t1, (128, 128, 90), (2, 2, 2))
        reference = None
        for precision in ("fp32", "bf16", "fp16"):
            for batch in (8, 32):
                translate_image(image, model, device="cuda", batch_size=batch, precision=precision)  # warm-up
                result, seconds, peak = timed(image, model, device="cuda", batch_size=batch, precision=precision)
                values = sitk.GetArrayFromImage(result)
                reference = values if reference is None else reference
                scale = float(np.percentile(reference, 99.5) - np.percentile(reference, 0.5)) or 1.0
                report["runs"][f"{name}/{precision}/batch{batch}"] = {
                    "seconds": round(seconds, 3), "slices_per_second": round(image.GetSize()[2] / seconds, 1),
                    "peak_gpu_mib": round(peak, 1), "spacing_mm": spacing,
                    "max_abs_error_vs_fp32_relative_to_range": float(np.abs(values - reference).max() / scale)}
                print(name, precision, batch, report["runs"][f"{name}/{precision}/batch{batch}"], flush=True)
        if name == "resnet-9-w64":
            translate_image(image, model, device="cuda", batch_size=8, compile=True)
            _, seconds, peak = timed(image, model, device="cuda", batch_size=8, compile=True)
            report["runs"][f"{name}/auto/batch8/compile"] = {"seconds": round(seconds, 3),
                                                            "slices_per_second": round(180 / seconds, 1)}

    big = grid_volume(t1, (512, 512, 600), (0.45, 0.45, 0.3))
    model = networks["resnet-9-w64"]
    _, seconds, peak = timed(big, model, device="cuda", batch_size=8)
    volume_mib = 512 * 512 * 600 * 4 / 2**20
    report["large_volume"] = {"size": [512, 512, 600], "seconds": round(seconds, 2), "peak_gpu_mib": round(peak, 1),
                              "float32_volume_mib": round(volume_mib, 1),
                              "peak_over_volume": round(peak / volume_mib, 3)}
    print("large", report["large_volume"], flush=True)

    small = grid_volume(t1, (256, 256, 24), (0.86, 0.86, 1.1))
    expected = sitk.GetArrayFromImage(translate_image(small, model, device="cuda", batch_size=1, precision="fp32"))
    report["out_of_memory"] = {}
    for label, headroom_mib in (("halves_batch", 700), ("falls_back_to_cpu", 0)):
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(0).total_memory
        budget = torch.cuda.memory_allocated() + headroom_mib * 2**20
        torch.cuda.set_per_process_memory_fraction(budget / total)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = translate_image(small, model, device="cuda", batch_size=24, precision="fp32")
        torch.cuda.set_per_process_memory_fraction(1.0)
        difference = np.abs(sitk.GetArrayFromImage(result) - expected).max()
        report["out_of_memory"][label] = {
            "memory_cap_mib": round(budget / 2**20), "max_abs_difference_vs_batch1": float(difference),
            "warnings": [str(w.message) for w in caught if "out of memory" in str(w.message)]}
        print("oom", label, report["out_of_memory"][label], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
