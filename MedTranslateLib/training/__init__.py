"""Training: datasets, recipes (CycleGAN, pix2pix, U-Net L2, MedGAN), the shared trainer, checkpoints, export.

    from MedTranslateLib.training import load_config, train, export_checkpoint
    config = load_config("Training/configs/pix2pix_t1_t2.toml", ["optim.steps=1000"])
    result = train(config)                      # or train(config, resume="latest")
    export_checkpoint(result.checkpoint, "models/my-model")
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig, load_config
from .export import export_checkpoint
from .trainer import TrainingDiverged, TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "TrainingDiverged", "export_checkpoint", "load_config",
           "train"]
