"""`medtranslate demo`: translate the bundled sample with a shipped model (T1 -> T2, pix2pix), write a PNG preview."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preview import side_by_side
from .registry import load_model
from .translate import translate_file
from .volume import read_volume

SAMPLE = Path(__file__).resolve().parent / "samples" / "colin27_t1_2mm.nii.gz"
DEMO_MODEL = "mr-t1-to-t2-pix2pix"


@dataclass(frozen=True)
class DemoResult:
    model_id: str
    input_path: Path
    output_path: Path
    preview_path: Path


def run_demo(out_dir: Path, model: str = DEMO_MODEL, **options: Any) -> DemoResult:
    """Write `<out_dir>/colin27_<target>.nii.gz` and `<out_dir>/preview.png`; `options` go to translate_file."""
    loaded = load_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = loaded.card.target_modality.lower().replace("mr-", "")
    output_path = out_dir / f"colin27_{target}.nii.gz"
    result = translate_file(SAMPLE, output_path, loaded, **options)
    preview_path = side_by_side([read_volume(SAMPLE), result], out_dir / "preview.png")
    return DemoResult(loaded.card.id, SAMPLE, output_path, preview_path)
