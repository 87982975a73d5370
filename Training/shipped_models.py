"""The catalogue of shipped models: which config trains each, how it is exported, what it is tested on.

Volume kinds name the folders of the model's data preparation (OUT/{train,test}/<kind>/): the 2 mm set of
Training/data/prepare_shipped_data.py (DATA), or the 1 mm set of Training/data/prepare_native_data.py (NATIVE_DATA).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "Training" / "configs" / "shipped"
DATA = REPO / "Training" / "data" / "shipped"
NATIVE_DATA = REPO / "Training" / "data" / "native"
RUNS = REPO / "runs" / "shipped"
MODELS = REPO / "MedTranslateLib" / "models"
RESULTS = REPO / "Training" / "results" / "shipped"


@dataclass(frozen=True)
class ShippedModel:
    """One bundled package: trained by `run` (a config in CONFIGS), tested on test/<source> -> test/<target>."""

    id: str
    run: str
    source: str
    target: str
    reverse: bool = False                 # CycleGAN: export the inverse generator
    extra_tests: Tuple[Path, ...] = ()    # further test folders (<folder>/<source|target>/)
    extra_tests_note: str = "the whole Colin27 head"  # what they hold, for the card
    caveat: str = ""                      # a known weakness seen in its held-out grid: a warning on its card
    data: Path = DATA                     # the prepared data it trains and is tested on (DATA or NATIVE_DATA)

    @property
    def config(self) -> Path:
        return CONFIGS / f"{self.run}.toml"


CYCLEGAN_CAVEAT = ("Trained unpaired, on simulated 1 mm subjects only. The T2 contrast is right on the held-out "
                   "subjects and on the real Colin27 head with and without skull (tissue order on each real scan: "
                   "metrics.real_scans). Against SPM's real avg152T2 it scores SSIM 0.156, no better than the T1 "
                   "itself (0.155; "
                   "mr-t1-to-t2-pix2pix 2.2: 0.601). Scalp and skull do not look like a T2's (a bright or doubled "
                   "rim), and thick-slice inputs give stripes in the through-plane views. Where a paired model "
                   "will do, mr-t1-to-t2-pix2pix is the better T1 -> T2.")

CYCLEGAN_INVERSE_CAVEAT = ("Trained unpaired, on simulated 1 mm subjects only. On SPM's real avg152T2 (never "
                           "trained on) it scores SSIM 0.401 against the real avg152T1 (the T2 itself 0.209), with "
                           "dark ventricles and a T1's scalp, but grey and white matter come out about equal, and "
                           "the air at the edges of that tight field of view comes out grey with a bright rim.")

MOTION_CAVEAT = ("Removes part of the ghosting of simulated rigid motion; severe ghosting stays visible and gains a "
                 "grainy texture. On the real Colin27 head (never trained on; one motion history for the whole "
                 "head) it is about even with its input: SSIM a little higher, MAE and PSNR a little worse (see "
                 "metrics.by_group).")

CT_TO_T1_CAVEAT = ("On the one real head CT held for evaluation (0.96 x 0.96 x 1.5 mm) CSF, bone, scalp and the "
                   "ventricles come out as on a T1, and white matter only a little brighter than grey matter (0.02 "
                   "of the range, in masks taken from the CT 10 mm away from bone): the CT shows them 5-10 HU apart. "
                   "Each of the three passes (axial, coronal, sagittal) sees a slice with its two neighbours; at "
                   "full resolution faint streaks along the slice directions remain in places (2.0, which saw "
                   "single slices, showed them throughout).")

T1_TO_CT_CAVEAT = ("Trained on simulated 1 mm subjects only; every HU check holds on the real T1 scans of other "
                   "subjects (metrics.real_scans). On the two contrast-enhanced scans of 0.78 mm pixels and 6.5 mm "
                   "slices (brain1, brain2) a fine regular texture lies over the brain, visible at a brain window: "
                   "its 2-voxel periodic amplitude (grid_hu) is 8-9 HU there, as large as the 12 HU between grey "
                   "and white matter, against 1-2 HU on the 2 mm real heads. Their brain reads 40-50 HU, the others "
                   "28-32 HU.")

PET_TO_CT_CAVEAT = ("Trained on simulated PET only. On SPM's average of real PET scans, never trained on, its "
                    "attenuation correlates with the real transmission image at r 0.67 (the PET itself 0.62, contour "
                    "correction 0.44); the 1.0 model scored 0.85 there, but it had trained on warps of that PET. "
                    "It upsamples by bilinear interpolation and a 3x3 convolution, not the paper's transposed "
                    "convolutions, which drew a square grid over the brain in 2.1: on the held-out subjects the "
                    "2-voxel grid's amplitude is 0.9-1.5 HU inside the brain (2.1: 1.0-1.9; the reference CT's noise "
                    "1.1-1.4), and no square pattern shows at a brain window. The price is 5 HU of held-out error "
                    "(MAE 104.5 against 2.1's 99). What it draws instead: a thin dark rim and streaks along the "
                    "inner skull, grain at the skull base and the edges of the neck, and on the real PET a few small "
                    "bright spots in the white matter above the corpus callosum. The brain comes out nearly uniform: "
                    "PET does not tell grey from white matter in HU. Faint texture remains in the air, most at the "
                    "corners of the field of view: on the real PET 20 % of the voxels more than 10 mm outside the "
                    "head read above -900 HU (2.1: 32 %), the highest 677 HU.")
PET_DENOISING_CAVEAT = ("Trained on simulated PET only. It upsamples by bilinear interpolation and a 3x3 convolution, "
                        "not the paper's transposed convolutions, whose overlaps left a faint 2-voxel grid in 2.0: "
                        "on the 11 held-out cases that grid's amplitude is now 0.0016-0.0023 of the range, against "
                        "2.0's 0.0018-0.0025 and 0.0017-0.0022 in the noisy full-count references. On the 1 mm "
                        "held-out subjects its MAE is a little higher than 2.0's (0.037 against 0.035), on the 2 mm "
                        "slabs lower (0.037 against 0.039).")
SHIPPED: Tuple[ShippedModel, ...] = (
    ShippedModel("mr-t1-to-t2-cyclegan", "mr-t1-t2-cyclegan", "t1", "t2", caveat=CYCLEGAN_CAVEAT, data=NATIVE_DATA),
    ShippedModel("mr-t2-to-t1-cyclegan", "mr-t1-t2-cyclegan", "t2", "t1", reverse=True,
                 caveat=CYCLEGAN_INVERSE_CAVEAT, data=NATIVE_DATA),
    ShippedModel("mr-t1-to-t2-pix2pix", "mr-t1-to-t2-pix2pix", "t1", "t2", data=NATIVE_DATA),
    ShippedModel("mr-t1-to-pd-pix2pix", "mr-t1-to-pd-pix2pix", "t1", "pd", data=NATIVE_DATA),
    ShippedModel("ct-to-mr-t1-unet-l2", "ct-to-mr-t1-unet-l2", "ct_in", "t1_target", caveat=CT_TO_T1_CAVEAT,
                 data=NATIVE_DATA),
    ShippedModel("mr-t1-to-ct-pix2pix", "mr-t1-to-ct-pix2pix", "t1", "ct", caveat=T1_TO_CT_CAVEAT, data=NATIVE_DATA),
    ShippedModel("pet-to-ct-medgan", "pet-to-ct-medgan", "pet_in", "ct_pet", caveat=PET_TO_CT_CAVEAT,
                 data=NATIVE_DATA),
    ShippedModel("mr-t1-motion-correction-medgan", "mr-t1-motion-correction-medgan", "t1_motion", "t1",
                 extra_tests=(DATA / "test_colin27",), caveat=MOTION_CAVEAT),
    ShippedModel("pet-denoising-medgan", "pet-denoising-medgan", "pet_low", "pet_full", data=NATIVE_DATA,
                 caveat=PET_DENOISING_CAVEAT, extra_tests=(DATA / "test",), extra_tests_note=(
                     "the 15-slice 2 mm slabs that 1.0 was tested on (warps of SPM's average of real PET scans, "
                     "and TPM simulations), never trained on")),
)

# run -> the run whose latest checkpoint it starts from (its config's train.init_from): that one trains first
PRECEDING: Dict[str, str] = {"mr-t1-t2-cyclegan": "mr-t1-t2-cyclegan-crops",
                              "pet-to-ct-medgan": "pet-to-ct-medgan-base"}
RUN_NAMES: Tuple[str, ...] = tuple(dict.fromkeys(run for model in SHIPPED
                                                 for run in (PRECEDING.get(model.run), model.run) if run))
