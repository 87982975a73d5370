"""Training-data preparation of the shipped models: the sharp T1 made from nilearn's MNI ICBM152 2009a brain
set in SPM's avg152T1 head (real files from PyPI)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fetch_mni2009_template import fetch as fetch_mni2009
from prepare_shipped_data import sharp_t1


def _detail(volume: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared in-plane Laplacian inside `mask` (fine detail), relative to the squared 99th percentile there."""
    laplacian = np.stack([ndimage.laplace(plane) for plane in volume])
    return float(np.mean(laplacian[mask] ** 2) / np.percentile(volume[mask], 99) ** 2)


def test_sharp_t1_keeps_the_head_and_sharpens_the_brain(spm_templates):
    grid = sitk.ReadImage(str(spm_templates["t1"]), sitk.sitkFloat32)
    avg152 = sitk.GetArrayFromImage(grid)
    sharp = sharp_t1(fetch_mni2009(), grid, avg152)
    assert sharp.shape == avg152.shape and sharp.dtype == np.float32
    brain = sharp != avg152
    # outside the blended brain, avg152T1's head (scalp, skull) is untouched; the brain fills much of the head
    assert 0.2 < brain.mean() < 0.6
    np.testing.assert_array_equal(sharp[~brain], avg152[~brain])
    core = brain & (avg152 > np.percentile(avg152, 60))
    # same brightness as avg152's brain, but with the crisp gyri of the 2009a template
    assert 0.85 < np.percentile(sharp[core], 99) / np.percentile(avg152[core], 99) < 1.15
    inner = ndimage.binary_erosion(brain, iterations=3)  # away from the blended rim
    assert _detail(sharp, inner) > 2 * _detail(avg152, inner)  # measured: 3.1 times
