"""A SimpleITK image whose voxels are written in place through NumPy, so that a result is computed inside the
image that is returned: `sitk.GetImageFromArray` would copy a whole volume (400 MiB for a 512×512×400 float32
result) at the moment memory is fullest."""
from __future__ import annotations

import ctypes
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk


class ImageBuffer:
    """`image`, a new zero-filled SimpleITK image, and `array`, a writable (Z, Y, X) view of its voxels; both
    made on first use, so that the memory is taken only when the result is written.

    SimpleITK hands out read-only views only; the buffer belongs to the image alone (a new image, made unique),
    so it is written through a ctypes view of the same memory. The array is valid while this object, which
    holds the image, lives: keep the ImageBuffer, not the array alone.
    """

    def __init__(self, size_xyz: Sequence[int], pixel_id: int) -> None:
        self.size = tuple(int(n) for n in size_xyz)
        self.pixel_id = pixel_id
        self._image: Optional[sitk.Image] = None
        self._array: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        """The array's (Z, Y, X) shape, known without allocating."""
        return self.size[::-1]

    @property
    def image(self) -> sitk.Image:
        if self._image is None:
            self._allocate()
        return self._image

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._allocate()
        return self._array

    def _allocate(self) -> None:
        self._image = sitk.Image(list(self.size), self.pixel_id)
        view = sitk.GetArrayViewFromImage(self._image)  # makes the buffer unique to this image
        memory = (ctypes.c_char * view.nbytes).from_address(view.__array_interface__["data"][0])
        self._array = np.frombuffer(memory, dtype=view.dtype).reshape(view.shape)
