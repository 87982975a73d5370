"""Training-data preparation of the shipped models: the sharp T1 made from nilearn's MNI ICBM152 2009a brain
set in SPM's avg152T1 head, and the contrast-randomised motion-correction pairs (real files from PyPI)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fetch_mni2009_template import fetch as fetch_mni2009
from fetch_spm_templates import fetch as fetch_spm
from prepare_shipped_data import (SOFT_TISSUE, TEMPLATES, TPM, load_sources, motion_contrast, motion_pair,
                                   sharp_t1)


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


def test_motion_pairs_share_a_random_contrast_with_a_bright_scalp_and_differ_by_motion():
    tpm = fetch_spm(volumes=tuple(TEMPLATES.values()) + (TPM,))[-1]
    _, arrays, tissues = load_sources(tpm.parents[1], fetch_mni2009())
    slab = slice(30, 46)  # axial slices through the ventricles: enough head, a fraction of the time
    clean, scalp, colin27 = arrays["t1"][slab], tissues[SOFT_TISSUE][slab], arrays["colin27"][slab]
    brain = (tissues[0] + tissues[1])[slab] > 0.5
    head = brain | (scalp > 0.5)

    def relative_brain(t1: np.ndarray) -> float:  # brain brightness relative to the brightest head voxels
        return float(np.percentile(t1[brain], 90) / np.percentile(t1[head], 99.5))

    ratios = [relative_brain(motion_contrast(clean, scalp, np.random.default_rng(seed))) for seed in range(20)]
    # from below Colin27's contrast (its bright scalp fat) to avg152's (measured: 0.73 and 0.92; the random
    # contrasts 0.55..0.92, median 0.84)
    assert relative_brain(colin27) < 0.75 and relative_brain(clean) > 0.9
    assert min(ratios) < 0.65 and max(ratios) > 0.9 and 0.7 < np.median(ratios) < 0.9
    for seed in range(2):
        pair = motion_pair(clean, scalp, np.random.default_rng(seed))
        target, moved = pair["t1_motion_target"], pair["t1_motion"]
        assert target.shape == moved.shape == clean.shape and target.dtype == moved.dtype == np.float32
        np.testing.assert_array_equal(target, motion_contrast(clean, scalp, np.random.default_rng(seed)))
        # the input is the target moved: the same mean brightness, but every slice of the brain is changed
        assert abs(moved[brain].mean() / target[brain].mean() - 1) < 0.1
        slices = np.flatnonzero(brain.any(axis=(1, 2)))
        assert all(np.abs(moved[z] - target[z])[brain[z]].mean() > 0.002 * target.max() for z in slices)
