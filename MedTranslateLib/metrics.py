"""Image-similarity metrics inside a mask: MAE, MSE, PSNR and SSIM (the last two from scikit-image)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean mask (the mask itself when it has one or none)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def head_mask(reference: np.ndarray) -> np.ndarray:
    """Foreground of a (Z, Y, X) reference: above Otsu's threshold, largest component, holes filled."""
    values = reference.astype(np.float32, copy=False)
    mask = largest_component(values > threshold_otsu(values))
    for index in range(mask.shape[0]):  # fill holes slice by slice (cavities open in 3D, closed in-plane)
        mask[index] = ndimage.binary_fill_holes(mask[index])
    return mask


def compare(prediction: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """MAE, MSE, PSNR (dB) and mean SSIM inside `mask` (default: the reference's head mask).

    Arrays are (Z, Y, X) in the same units; the data range for PSNR and SSIM is the reference's range
    inside the mask. SSIM is computed in 3D (7-voxel window) when every axis allows, else per slice.
    """
    if prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
    pred = prediction.astype(np.float64)
    ref = reference.astype(np.float64)
    mask = head_mask(ref) if mask is None else mask.astype(bool)
    if not mask.any():
        raise ValueError("the mask is empty")
    inside_ref, inside_pred = ref[mask], pred[mask]
    data_range = float(inside_ref.max() - inside_ref.min()) or 1.0
    error = inside_pred - inside_ref
    return {
        "mae": float(np.mean(np.abs(error))),
        "mse": float(np.mean(error ** 2)),
        "psnr": float(peak_signal_noise_ratio(inside_ref, inside_pred, data_range=data_range)),
        "ssim": _masked_ssim(pred, ref, mask, data_range),
        "voxels": int(mask.sum()),
    }


def _masked_ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    if min(ref.shape) >= 7:
        _, ssim_map = structural_similarity(ref, pred, data_range=data_range, win_size=7, full=True)
    else:
        window = max(3, min(7, min(ref.shape[1:]) // 2 * 2 - 1))
        ssim_map = np.stack([structural_similarity(r, p, data_range=data_range, win_size=window, full=True)[1]
                             for r, p in zip(ref, pred)])
    return float(ssim_map[mask].mean())
