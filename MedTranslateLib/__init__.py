"""MedTranslate: translate medical volumes between modalities, geometry-exact.

    import MedTranslateLib as mt
    model = mt.load_model("mr-t1-to-t2-pix2pix")
    out = mt.translate_image(sitk_image, model, device="auto")
"""
from __future__ import annotations

from .card import ModelCard
from .errors import InputError, MedTranslateError, ModelPackageError, TranslationCancelled, TranslationError
from .package import TranslationModel
from .progress import Progress
from .registry import list_models, load_model
from .translate import translate_file, translate_image
from .volume import read_volume, write_volume

__version__ = "0.1.0"

__all__ = [
    "ModelCard", "TranslationModel", "Progress",
    "MedTranslateError", "InputError", "ModelPackageError", "TranslationCancelled", "TranslationError",
    "list_models", "load_model", "translate_image", "translate_file", "read_volume", "write_volume",
]
