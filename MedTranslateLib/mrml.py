"""The MRML bridge: a Slicer volume node <-> a SimpleITK image, and a translation that returns a new node.

No Qt here, and `slicer`/VTK are imported inside the functions, so the library imports without Slicer
(tests use the `slicer-core` wheel). Geometry conventions:

- A node's IJKToRAS matrix maps voxel (i, j, k) to RAS millimetres: its columns are spacing × direction.
- SimpleITK (like ITK and DICOM) uses LPS: the same point has x and y negated. So the image's direction is the
  node's direction with its first two rows negated, and its origin the node's origin with x and y negated.
- The voxel array is shared in the same [k, j, i] order by VTK (x fastest) and `sitk.GetArrayFromImage`.

Only the node's own IJKToRAS is used; a parent transform is not hardened into the image. `translate_node`
puts its output under the input's parent transform, so the two still overlay.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .registry import load_model
from .translate import ModelLike, translate_image

# RAS <-> LPS: negate x and y. Its own inverse.
_RAS_LPS = np.diag([-1.0, -1.0, 1.0])


# --- geometry ---------------------------------------------------------------------------------------------

def ijk_to_ras(node: Any) -> np.ndarray:
    """The node's 4×4 IJKToRAS matrix as a numpy array."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _to_numpy(matrix)


def lps_geometry(node: Any) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """(spacing, origin, direction) of a volume node in SimpleITK's LPS convention.

    Taken from the IJKToRAS matrix: spacing = column norms, direction = normalised columns. When the node's
    stored spacing and direction reproduce the matrix exactly (they are what it is built from) they are used
    as they are, so node -> image -> node gives back a bit-identical matrix.
    """
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = ijk_to_ras(node)
    linear = matrix[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(spacing > 0) or not np.all(np.isfinite(linear)):
        raise InputError(f"{_name(node)}: IJKToRAS matrix {linear.tolist()} is degenerate (a zero or invalid axis)")
    direction = linear / spacing
    stored_matrix = vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(stored_matrix)
    stored_direction = _to_numpy(stored_matrix)[:3, :3]
    stored_spacing = np.array(node.GetSpacing(), dtype=float)
    if (np.array_equal(stored_direction * stored_spacing, linear)
            and np.allclose(stored_spacing, spacing, rtol=1e-9, atol=0)):
        spacing, direction = stored_spacing, stored_direction
    origin = _RAS_LPS @ matrix[:3, 3]
    return (tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
            tuple(float(d) for d in (_RAS_LPS @ direction).ravel()))


def set_node_geometry(node: Any, image: sitk.Image) -> None:
    """Give `node` the IJKToRAS of `image` (origin, spacing, directions converted from LPS to RAS)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    direction = _RAS_LPS @ np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = _RAS_LPS @ np.array(image.GetOrigin(), dtype=float)
    matrix = vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, float(direction[row, column]))
    node.SetIJKToRASDirectionMatrix(matrix)
    node.SetSpacing(*(float(s) for s in image.GetSpacing()))
    node.SetOrigin(*(float(o) for o in origin))


# --- voxels -----------------------------------------------------------------------------------------------

def image_from_node(node: Any) -> sitk.Image:
    """A new 3D SimpleITK image with a copy of the node's voxels and its geometry in LPS.

    The node is not modified. Raises InputError for a node without image data or with vector voxels.
    """
    from vtkmodules.util import numpy_support

    if node is None:
        raise InputError("no input volume node")
    image_data = node.GetImageData()
    scalars = image_data.GetPointData().GetScalars() if image_data is not None else None
    if scalars is None:
        raise InputError(f"{_name(node)}: volume node holds no image data")
    components = image_data.GetNumberOfScalarComponents()
    if components != 1:
        raise InputError(f"{_name(node)}: has {components} components per voxel (RGB or vector); "
                         "a scalar (grayscale) volume is needed")
    dimensions = image_data.GetDimensions()  # (i, j, k)
    array = numpy_support.vtk_to_numpy(scalars).reshape(tuple(reversed(dimensions)))
    image = sitk.GetImageFromArray(np.array(array, copy=True))  # own copy: the node's memory stays VTK's
    spacing, origin, direction = lps_geometry(node)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def update_node_from_image(node: Any, image: sitk.Image, window: Optional[Sequence[float]] = None) -> Any:
    """Replace `node`'s voxels and geometry by `image`'s and window its display; returns the node."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"a 3D scalar image is needed, not {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components")
    array = np.ascontiguousarray(_displayable(sitk.GetArrayFromImage(image)))
    image_data = vtkImageData()
    image_data.SetDimensions(*image.GetSize())
    vtk_array = numpy_support.numpy_to_vtk(array.reshape(-1), deep=True)
    image_data.GetPointData().SetScalars(vtk_array)
    was_modifying = node.StartModify()
    set_node_geometry(node, image)
    node.SetAndObserveImageData(image_data)
    node.EndModify(was_modifying)
    if node.GetScene() is not None:
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        set_window(node, window if window is not None else display_window(array))
    return node


def node_from_image(image: sitk.Image, name: str, scene: Any = None,
                    window: Optional[Sequence[float]] = None) -> Any:
    """A new vtkMRMLScalarVolumeNode in `scene` (default slicer.mrmlScene) holding a copy of `image`.

    The node gets the image's geometry (LPS -> RAS) and a display node windowed on the 1st..99th percentile
    of the voxels (or `window` = (low, high)).
    """
    scene = _scene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name or "Volume"))
    try:
        update_node_from_image(node, image, window)
    except Exception:
        scene.RemoveNode(node)
        raise
    return node


def display_window(values: np.ndarray) -> Tuple[float, float]:
    """A display window (low, high) for `values`: the 1st..99th percentile, widened if that is empty."""
    flat = np.asarray(values).reshape(-1)
    sample = flat[::max(1, flat.size // 1_000_000)].astype(np.float64)
    low, high = (float(v) for v in np.percentile(sample, [1, 99]))
    if not high > low:
        low, high = float(sample.min()), float(sample.max())
    if not high > low:
        low, high = low - 0.5, low + 0.5
    return low, high


def set_window(node: Any, window: Sequence[float]) -> None:
    display = node.GetDisplayNode()
    if display is None or not hasattr(display, "SetWindowLevelMinMax"):
        return
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(float(window[0]), float(window[1]))


# --- translation ------------------------------------------------------------------------------------------

def default_output_name(input_node: Any, target_modality: str) -> str:
    return f"{input_node.GetName() or 'Volume'} {target_modality}"


def store_result(input_node: Any, image: sitk.Image, output_node: Any = None, name: Optional[str] = None,
                 scene: Any = None) -> Any:
    """Put a translation result computed on `input_node`'s grid into the scene and return its node.

    Into `output_node` when given (it must not be the input), else a new node named `name`. The output gets
    the input's exact orientation (bit-identical IJKToRAS), its parent transform, and is placed next to the
    input in the subject hierarchy. Touches MRML: call on Slicer's main thread.
    """
    if output_node is not None and _same_node(output_node, input_node):
        raise InputError(f"{_name(input_node)}: the output volume must not be the input volume")
    if tuple(image.GetSize()) != tuple(input_node.GetImageData().GetDimensions()):
        raise InputError(f"result size {image.GetSize()} differs from the input's "
                         f"{input_node.GetImageData().GetDimensions()}")
    if output_node is None:
        scene = scene if scene is not None else input_node.GetScene()
        output_node = node_from_image(image, name or default_output_name(input_node, "translated"), scene)
    else:
        update_node_from_image(output_node, image)
    output_node.CopyOrientation(input_node)  # the input's own spacing/origin/directions: identical matrix
    output_node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
    place_next_to(output_node, input_node)
    return output_node


def translate_node(input_node: Any, model: ModelLike, name: Optional[str] = None, scene: Any = None,
                   output_node: Any = None, **translate_options: Any) -> Any:
    """Translate a scalar volume node; returns a NEW node (or fills `output_node`) on the input's exact grid.

    `translate_options` are translate_image's (device, batch_size, precision, tta, compile, progress, cancel).
    The input node's voxels are never modified. If the translation fails or is cancelled, no node is added.
    """
    if output_node is not None and _same_node(output_node, input_node):
        raise InputError(f"{_name(input_node)}: the output volume must not be the input volume")
    model = load_model(model)
    image = image_from_node(input_node)
    result = translate_image(image, model, **translate_options)
    name = name or default_output_name(input_node, model.card.target_modality)
    return store_result(input_node, result, output_node=output_node, name=name, scene=scene)


def place_next_to(node: Any, reference: Any) -> None:
    """Put `node`'s subject-hierarchy item under the parent of `reference`'s item (when it has one)."""
    scene = node.GetScene()
    hierarchy = scene.GetSubjectHierarchyNode() if scene is not None else None
    if hierarchy is None:
        return
    invalid = hierarchy.GetInvalidItemID()
    reference_item = hierarchy.GetItemByDataNode(reference)
    if reference_item == invalid:
        return
    parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item == invalid:
        hierarchy.CreateItem(parent, node)
    elif hierarchy.GetItemParent(item) != parent:
        hierarchy.SetItemParent(item, parent)


# --- helpers ----------------------------------------------------------------------------------------------

def _to_numpy(matrix: Any) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _displayable(array: np.ndarray) -> np.ndarray:
    """64-bit integers do not render in Slicer: narrow them to int32 when they fit, else to float64."""
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        if array.size == 0 or (array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max):
            return array.astype(np.int32)
        return array.astype(np.float64)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    return array


def _same_node(a: Any, b: Any) -> bool:
    if a is b:
        return True
    a_id, b_id = a.GetID(), b.GetID()
    return a_id is not None and a_id == b_id and a.GetScene() is b.GetScene()


def _scene(scene: Any) -> Any:
    if scene is not None:
        return scene
    import slicer

    scene = getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise InputError("no MRML scene: pass scene= or set slicer.mrmlScene")
    return scene


def _name(node: Any) -> str:
    try:
        return node.GetName() or node.GetID() or "volume node"
    except AttributeError:
        return "volume node"


__all__ = ["image_from_node", "node_from_image", "update_node_from_image", "translate_node", "store_result",
           "ijk_to_ras", "lps_geometry", "set_node_geometry", "place_next_to", "display_window",
           "default_output_name"]
