"""Train the demo model bundled for `make demo`: a compact U-Net with L2 loss, MRI T1 -> T2, axial.

Data: SPM's ICBM152 population averages avg152T1/avg152T2 (real scans averaged over 152 subjects, voxel
aligned, 2 mm; PyPI spm-runtime-R2025b, GPL-2), fetched by Training/data/fetch_spm_templates.py. There is only
one aligned T1/T2 pair here, so the held-out set is a slab of axial slices (with guard slices on both sides
excluded from training); metrics on it are compared with the identity and histogram-matching baselines.

    .venv/bin/python Training/train_demo_unet.py [--steps 1500] [--out MedTranslateLib/models/mr-t1-to-t2-unet-demo]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from skimage.exposure import match_histograms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Training" / "data"))
from fetch_spm_templates import fetch  # noqa: E402

from MedTranslateLib.axes import reorientation  # noqa: E402
from MedTranslateLib.engine import pad_to_multiple  # noqa: E402
from MedTranslateLib.intensity import IntensityPair  # noqa: E402
from MedTranslateLib.metrics import compare, head_mask  # noqa: E402
from MedTranslateLib.networks import build_network, size_multiple  # noqa: E402
from MedTranslateLib.package import load_package, save_package  # noqa: E402
from MedTranslateLib.translate import translate_image  # noqa: E402
from MedTranslateLib.volume import read_volume  # noqa: E402

MODEL_ID = "mr-t1-to-t2-unet-demo"
ARCHITECTURE = {"name": "unet", "variant": "classic", "width": 16, "depth": 4, "norm": "batch"}
INTENSITY = {"source": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5},
             "target": {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5,
                        "output_range": "source"}}
HELD_OUT = (38, 53)  # axial slices [38, 53) in the canonical (inferior -> superior) order
GUARD = 3            # slices on each side of the held-out slab used neither for training nor testing


def axial(image: sitk.Image) -> np.ndarray:
    """(slices, rows, columns) float32 copy in the library's canonical axial orientation."""
    view = reorientation(image.GetDirection(), "axial").apply(sitk.GetArrayViewFromImage(image))
    return np.ascontiguousarray(view, dtype=np.float32)


def train(source: np.ndarray, target: np.ndarray, steps: int, seed: int) -> Tuple[torch.nn.Module, Dict]:
    """source, target: (N, H, W) in [-1, 1]. Adam, L2 loss, linearly decaying learning rate."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    network = build_network(ARCHITECTURE, in_channels=1)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    multiple = size_multiple(network)
    losses = []
    network.train()
    for _ in range(steps):
        picks = generator.integers(0, len(source), size=8)
        x = torch.from_numpy(source[picks])[:, None]
        y = torch.from_numpy(target[picks])[:, None]
        gamma = torch.from_numpy(generator.uniform(0.7, 1.4, size=(8, 1, 1, 1)).astype(np.float32))
        x = ((x + 1) / 2).clamp(0, 1) ** gamma * 2 - 1            # contrast jitter of the input
        flip = torch.from_numpy(generator.random(8) < 0.5)
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)    # left-right mirror
        x, y = pad_to_multiple(x, multiple), pad_to_multiple(y, multiple)
        loss = torch.nn.functional.mse_loss(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return network.eval(), {"first_100_mean_loss": float(np.mean(losses[:100])),
                            "last_100_mean_loss": float(np.mean(losses[-100:]))}


def unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return (values - low) / (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "MedTranslateLib" / "models" / MODEL_ID)
    args = parser.parse_args()
    torch.set_num_threads(2)

    t1_path, t2_path = fetch(volumes=("canonical/avg152T1.nii", "canonical/avg152T2.nii"))
    t1_image, t2_image = read_volume(t1_path), read_volume(t2_path)
    t1, t2 = axial(t1_image), axial(t2_image)
    mapping = IntensityPair.from_dict(INTENSITY)
    t1_range, t2_range = mapping.source.fit(t1), mapping.target.fit(t2)

    slices = np.arange(len(t1))
    held_out = (slices >= HELD_OUT[0]) & (slices < HELD_OUT[1])
    excluded = (slices >= HELD_OUT[0] - GUARD) & (slices < HELD_OUT[1] + GUARD)
    has_head = np.array([np.mean(s > 0.05 * t1.max()) > 0.02 for s in t1])
    training = ~excluded & has_head
    started = time.time()
    network, losses = train(t1_range.to_network(t1[training]), t2_range.to_network(t2[training]),
                            args.steps, args.seed)
    seconds = time.time() - started

    card = {
        "schema_version": 1, "id": MODEL_ID, "version": "0.1.0", "task": "translation",
        "source_modality": "MR-T1", "target_modality": "MR-T2",
        "architecture": ARCHITECTURE, "intensity": INTENSITY, "spacing_mm": [2.0, 2.0],
        "slice_axis": "axial", "context_slices": 0,
        "description": "Compact U-Net (L2 loss) translating T1-weighted to T2-weighted brain MRI; a demo model "
                       "trained on one population-average pair, not a clinical tool.",
        "training": {
            "recipe": "unet-l2", "script": "Training/train_demo_unet.py",
            "data": "SPM canonical avg152T1.nii -> avg152T2.nii (ICBM152 average of 152 real scans, 2 mm, "
                    "voxel-aligned), PyPI spm-runtime-R2025b==25.1.2.post4, license GPL-2",
            "simulation": "none (real population averages)",
            "split": f"axial slices {HELD_OUT[0]}..{HELD_OUT[1] - 1} held out (inferior->superior order), "
                     f"{GUARD} guard slices each side unused, {int(training.sum())} training slices",
            "augmentation": "left-right mirror, input gamma 0.7..1.4",
            "optimizer": "Adam lr 1e-3, linear decay to 0, batch 8", "steps": args.steps, "seed": args.seed,
            "hardware": f"CPU ({platform.processor() or platform.machine()}, 2 threads), {seconds:.0f} s",
            **losses,
        },
        "metrics": {}, "license": "Weights: GPL-2 (trained on GPL-2 data). Code: Apache-2.0.",
        "intended_use": "Demonstration and testing of MedTranslate; not for diagnosis.",
        "warnings": ["Trained on a single population-average pair: outputs on single subjects are smooth and "
                     "approximate; on the bundled single-subject sample (Colin27) the ventricles come out dark "
                     "instead of bright.", "Held-out metrics come from unseen slices of the same average volume."],
    }
    save_package(card, network, args.out)
    model = load_package(args.out)  # evaluate what was shipped: fp16 weights, the real inference path
    prediction = axial(translate_image(t1_image, model, device="cpu"))
    reference = unit(t2[held_out], t2_range.low, t2_range.high)
    identity = unit(t1[held_out], t1_range.low, t1_range.high)
    matched = match_histograms(identity, unit(t2[training], t2_range.low, t2_range.high))
    mask = head_mask(reference)
    metrics = {
        "held_out": "axial slab of avg152T2, intensities scaled so the 0.5th/99.5th percentiles are 0/1",
        "model": compare(unit(prediction[held_out], t1_range.low, t1_range.high), reference, mask),
        "baseline_identity": compare(identity, reference, mask),
        "baseline_histogram_matching": compare(matched, reference, mask),
    }
    card["metrics"] = metrics
    save_package(card, model.network, args.out)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
