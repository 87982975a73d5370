"""Checkpoint -> model package: the exported generator (and CycleGAN's inverse) with a card filled from the
run: architecture, intensity, in-plane training spacing, slicing, data provenance, steps, hardware and the
validation metrics. `medtranslate translate` and `evaluate` run the result like any other package. The card names
the training data only as its user would publish it (see publish.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..card import SCHEMA_VERSION, ModelCard
from ..errors import InputError
from ..networks import build_network
from ..package import CARD_FILE, save_package
from .checkpoint import load_checkpoint
from .config import config_from_dict
from .publish import config_folder, publishable_training
from .recipes import get_recipe

RECIPE_TITLES = {"cyclegan": "CycleGAN (Zhu et al. 2017)", "pix2pix": "pix2pix (Isola et al. 2017)",
                 "unet_l2": "U-Net with L2 loss (Dong et al. 2020)", "medgan": "MedGAN (Armanious et al. 2020)"}


def export_checkpoint(checkpoint: Union[str, Path], out_dir: Union[str, Path],
                      model_id: Optional[str] = None, reverse: bool = False,
                      with_inverse: bool = True, redact_data: Optional[str] = None) -> ModelCard:
    """Write the model package of `checkpoint` to `out_dir` (replacing a package there); returns its card.

    `reverse` exports a CycleGAN's inverse generator as the model (target -> source), the forward one as its
    inverse; the card's modalities and intensity mappings are swapped and the forward validation dropped.
    `with_inverse` False leaves a CycleGAN's inverse generator out of the package (half the size, for when
    each direction ships as its own package). `redact_data` replaces every reference to the training data
    (folders, relative to the config file or by their own names) with that text.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / CARD_FILE).is_file())):
        raise InputError(f"{out_dir}: exists and is not a model package; choose a new folder")
    state = load_checkpoint(checkpoint)
    config = config_from_dict(state["config"])
    recipe = get_recipe(config.recipe_name)
    if reverse and not recipe.exports[1]:
        raise InputError(f"{checkpoint}: a {config.recipe_name} checkpoint has no inverse generator to export")
    names = tuple(reversed(recipe.exports)) if reverse else recipe.exports
    network = _network(config.model.generator, config.in_channels, state, names[0], checkpoint)
    inverse = None
    if names[1] and with_inverse:
        inverse = _network(config.model.generator, config.in_channels, state, names[1], checkpoint)
    fields = card_fields(state, config, model_id, redact_data)
    if reverse:
        fields = reversed_card_fields(fields, model_id, validation_metrics(state, config, inverse=True))
    return save_package(fields, network, out_dir, inverse_network=inverse)


def reversed_card_fields(fields: Dict[str, Any], model_id: Optional[str],
                         metrics: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Card fields of a CycleGAN's inverse direction: modalities and intensity mappings swapped, `metrics`
    (the inverse direction's validation; none when not given) in place of the forward ones."""
    fields = dict(fields)
    fields["source_modality"], fields["target_modality"] = fields["target_modality"], fields["source_modality"]
    source, target = dict(fields["intensity"]["target"]), dict(fields["intensity"]["source"])
    source.pop("output_range", None)
    if target["kind"] == "percentile":
        target["output_range"] = "source"
    fields["intensity"] = {"source": source, "target": target}
    fields["id"] = model_id or (f"{fields['source_modality']}-to-{fields['target_modality']}-"
                                f"{fields['training']['recipe']}".lower().replace("_", "-"))
    fields["training"] = {**fields["training"], "exported_direction": "inverse generator (target -> source)"}
    fields["metrics"] = dict(metrics or {})
    fields.pop("description", None)
    warnings = [w for w in fields.get("warnings", []) if "no metrics" not in w]
    if not metrics:
        warnings.append("No held-out validation of the inverse direction was run during training.")
    fields["warnings"] = warnings
    return fields


def validation_metrics(state: Dict[str, Any], config: Any, inverse: bool) -> Dict[str, Any]:
    """The card's metrics from the checkpoint's newest validation, of one direction; {} when there is none."""
    if not state.get("validation"):
        return {}
    last = state["validation"][-1]
    prefix = "inverse_" if inverse else ""
    if f"{prefix}mae" not in last:
        return {}
    units = "source" if inverse else "target"
    fitted_on = "source" if inverse or config.intensity.target.get("kind") == "source" else "target"
    metrics = {
        "held_out": (f"{len(last['volumes'])} validation volume(s), "
                     f"{config.data.val_slices} fixed {config.data.slice_axis} slices each, in {units} units "
                     f"(network output mapped with the {fitted_on} volume's fitted range), head mask per slice"),
        "step": last["step"],
        "model": {k: last[prefix + k] for k in ("mae", "mse", "psnr", "ssim")},
    }
    baseline = state.get("baseline", {}).get(f"{prefix}mean")
    if baseline:
        metrics["baseline_identity"] = baseline
    return metrics


def _network(spec: Dict[str, Any], in_channels: int, state: Dict[str, Any], name: str, path: Any) -> torch.nn.Module:
    network = build_network(spec, in_channels=in_channels, out_channels=1)
    try:
        network.load_state_dict(state["networks"][name])
    except (KeyError, RuntimeError) as error:
        raise InputError(f"{path}: network '{name}' does not fit the checkpoint's config ({error})") from None
    return network.eval()


def card_fields(state: Dict[str, Any], config: Any, model_id: Optional[str] = None,
                redact_data: Optional[str] = None) -> Dict[str, Any]:
    """Every card key but the weight hashes, from a checkpoint's state and its config; the training data named
    as publish.py says (`redact_data`: a placeholder in their place)."""
    model, data = config.model, state["data"]
    step, total = int(state["step"]), config.optim.steps
    run = state.get("run", {})
    identifier = model_id or model.id or (f"{model.source_modality}-to-{model.target_modality}-"
                                          f"{config.recipe_name}".lower().replace("_", "-"))
    training: Dict[str, Any] = {
        "recipe": config.recipe_name,
        "method": RECIPE_TITLES.get(config.recipe_name, config.recipe_name),
        "steps": step,
        "planned_steps": total,
        "complete": max(step, state.get("selection", {}).get("run_steps", 0)) >= total,  # best.pt: its whole run
        "batch_size": config.data.batch_size,
        "crop_size": config.data.crop_size,
        "optimizer": {"name": "Adam", "lr": config.optim.lr, "betas": [config.optim.beta1, config.optim.beta2],
                      "schedule": f"constant until step {config.optim.decay_start}, then linear decay to 0 at {total}"},
        "data": data["provenance"],
        "simulation": "none",
        "hardware": run.get("hardware", "unknown"),
        "processes": run.get("world_size", 1),
        "amp": run.get("amp", False),
        "duration_s": run.get("elapsed_s"),
        "seed": config.train.seed,
        "torch": run.get("torch", str(torch.__version__)),
        "config": state["config"],
        **state.get("notes", {}),
    }
    if state.get("selection"):
        training["selected"] = state["selection"]
    training = publishable_training(training, config_folder(run.get("config_file")), redact_data)
    metrics = validation_metrics(state, config, inverse=False)
    warnings = []
    if step < total and not state.get("selection"):
        warnings.append(f"Exported after {step} of {total} planned training steps.")
    if not metrics:
        warnings.append("No held-out validation was configured; the card has no metrics.")
    if str(state.get("notes", {}).get("feature_network", "")).startswith("discriminator (fallback)"):
        warnings.append("MedGAN style/content losses used discriminator features instead of ImageNet VGG19.")
    fields = {
        "schema_version": SCHEMA_VERSION,
        "id": identifier,
        "version": model.version,
        "task": model.task,
        "source_modality": model.source_modality,
        "target_modality": model.target_modality,
        "architecture": dict(model.generator),
        "intensity": config.intensity_pair.to_dict(),
        "spacing_mm": [float(s) for s in data["spacing_mm"]],
        "slice_axis": config.data.slice_axis,
        "context_slices": config.data.context_slices,
        "pad": config.data.pad,
        "planes": list(config.data.planes) if len(config.data.planes) > 1 else [],
        "fusion": config.data.fusion,
        "training": training,
        "metrics": metrics,
        "license": model.license,
        "intended_use": model.intended_use,
    }
    if model.description:
        fields["description"] = model.description
    if warnings:
        fields["warnings"] = warnings
    return fields


def run_export_command(checkpoint: str, out_dir: str, model_id: Optional[str], reverse: bool = False,
                       with_inverse: bool = True, redact_data: Optional[str] = None) -> int:
    card = export_checkpoint(checkpoint, out_dir, model_id, reverse, with_inverse, redact_data)
    inverse = " (with its inverse generator)" if card.inverse_weights_sha256 else ""
    print(f"wrote {out_dir}: model {card.id}{inverse}")
    return 0
