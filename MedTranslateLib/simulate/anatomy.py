"""Sharp 1 mm head anatomy for simulation: the MNI ICBM152 2009a brain inside SPM's TPM head.

The brain comes from the 2009a template (1 mm): its grey- and white-matter probability maps, and CSF as what its
brain mask holds besides them (ventricles, sulci). Outside that mask the head comes from SPM's TPM (1.5 mm,
resampled in MNI space): extra-cerebral CSF (TPM's CSF plus the few GM/WM remnants of its blurrier brain), bone,
soft tissue and air. TPM's soft 1.5 mm maps are sharpened by tempering (p^k renormalised), so skull and scalp
have edges rather than ramps.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from .tissues import TISSUES


def tpm_on_grid(tpm: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """(6, Z, Y, X) TPM probabilities resampled (linear, in physical space) onto `grid`; air outside TPM."""
    size = list(tpm.GetSize())
    channels = []
    for index in range(size[3]):
        channel = sitk.Extract(tpm, size[:3] + [0], [0, 0, 0, index])
        outside = 1.0 if TISSUES[index] == "air" else 0.0
        resampled = sitk.Resample(channel, grid, sitk.Transform(), sitk.sitkLinear, outside, sitk.sitkFloat32)
        channels.append(sitk.GetArrayFromImage(resampled))
    return np.clip(np.stack(channels), 0.0, 1.0)


def _probabilities(array: np.ndarray) -> np.ndarray:
    """A probability map as float32 in [0, 1]; nilearn stores the 2009a maps as uint8 0..255."""
    array = array.astype(np.float32)
    return np.clip(array / 255.0 if array.max() > 1.0 else array, 0.0, 1.0)


def head_tissues(t1: sitk.Image, gm: sitk.Image, wm: sitk.Image, tpm: sitk.Image,
                 sharpen: float = 3.0) -> Tuple[np.ndarray, np.ndarray]:
    """(6, Z, Y, X) float32 tissue probabilities in TISSUES order on the grid of the 2009a `t1` (skull-stripped),
    and its (Z, Y, X) float32 brain mask; `gm`, `wm` are the 2009a maps, `tpm` SPM's 4D TPM."""
    grey, white = (_probabilities(sitk.GetArrayFromImage(image)) for image in (gm, wm))
    brain = (sitk.GetArrayFromImage(t1) > 0).astype(np.float32)
    white = np.minimum(white, brain)
    grey = np.minimum(grey, brain - white)
    csf_inside = brain - grey - white
    head = tpm_on_grid(tpm, t1)
    names = {name: index for index, name in enumerate(TISSUES)}
    outer = np.stack([head[names["gm"]] + head[names["wm"]] + head[names["csf"]], head[names["bone"]],
                      head[names["soft"]], head[names["air"]]]) ** sharpen
    outer /= np.maximum(outer.sum(axis=0, keepdims=True), 1e-6)
    outer[:, outer.sum(axis=0) < 0.5] = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)[:, None]
    outside = 1.0 - brain
    tissues = np.stack([grey, white, csf_inside + outside * outer[0], outside * outer[1], outside * outer[2],
                        outside * outer[3]])
    return tissues.astype(np.float32), brain
