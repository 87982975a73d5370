"""Physics-based simulation of training data from tissue maps (SPM's TPM) and real volumes.

tissues     literature properties per tissue class (MR relaxation, CT HU, FDG uptake) and their random draws
contrast    tissue maps -> spin-echo MR, pseudo-CT (HU), PET uptake
corruption  domain randomisation: bias field, noise, resolution loss, gamma, fine texture within tissues
            (speckle and thin sheets)
warp        random in-plane affine + elastic warps shared by every volume of a simulated subject
anatomy     a sharp 1 mm head: the MNI ICBM152 2009a brain (GM, WM, CSF) inside SPM's TPM head
deform      random 3D affine + smooth nonlinear deformations of whole volumes (new head shapes and poses)
motion      rigid head motion simulated in k-space (segments of phase-encoding lines from moved copies)
counts      low-count PET by Poisson (binomial) thinning

Every function takes arrays shaped (Z, Y, X) with Z the slicing (axial) axis and a numpy Generator.
"""
from .contrast import mr_spin_echo, pet_background, pet_uptake, pseudo_ct
from .corruption import bias_field, blur_resolution, gamma, rician_noise, sheet_texture, tissue_texture
from .counts import poisson_counts, poisson_thinning
from .motion import (MotionEvent, Segment, kspace_motion, motion_segments, move_affine, random_motion,
                     slicewise_motion)
from .tissues import (SEQUENCES, TISSUES, MRTissue, nominal_ct_hu, nominal_mr, nominal_pet_uptake,
                      random_ct_hu, random_mr, random_pet_uptake)
from .warp import InPlaneWarp, random_warp

__all__ = [
    "mr_spin_echo", "pet_background", "pet_uptake", "pseudo_ct", "bias_field", "blur_resolution", "gamma",
    "rician_noise", "sheet_texture", "tissue_texture",
    "poisson_counts", "poisson_thinning", "MotionEvent", "Segment", "kspace_motion", "motion_segments", "move_affine",
    "random_motion", "slicewise_motion",
    "SEQUENCES",
    "TISSUES", "MRTissue", "nominal_ct_hu", "nominal_mr", "nominal_pet_uptake", "random_ct_hu", "random_mr",
    "random_pet_uptake", "InPlaneWarp", "random_warp",
]
