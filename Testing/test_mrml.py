"""The MRML bridge with the real slicer-core wheel: geometry round trips, Slicer's own readers, translate_node,
and the headless batch script's loop (with Slicer's storage node standing in for slicer.util.loadVolume,
which needs the Qt application that slicer-core lacks)."""
from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from geometry_fixtures import FIXTURES, head_phantom  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

from MedTranslateLib import InputError, TranslationCancelled, load_model, mrml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --- fixtures and helpers ---------------------------------------------------------------------------------

@pytest.fixture()
def scene() -> Any:
    """A fresh scene, also set as slicer.mrmlScene (slicer.util helpers read it)."""
    new_scene = slicer.vtkMRMLScene()
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = new_scene
    yield new_scene
    new_scene.Clear(1)
    slicer.mrmlScene = previous


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_model(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


def matrix(node: Any) -> np.ndarray:
    return mrml.ijk_to_ras(node)


def rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in (ax_deg, ay_deg, az_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# Nodes built the way Slicer builds them: a voxel array and an IJKToRAS matrix (columns = spacing × direction).
NODE_GEOMETRIES = {
    "oblique": (rotation(17.0, -11.0, 31.0) * [0.9, 1.3, 2.5], [12.25, -40.5, 7.75]),
    "flipped": (np.array([[0, -1.1, 0], [0.8, 0, 0], [0, 0, -2.0]]), [-3.0, 55.5, 60.0]),  # axes permuted + flipped
    "anisotropic": (np.diag([0.55, 0.7, 5.0]), [-90.0, -110.0, -60.0]),
}


def add_volume(scene: Any, geometry: str, dtype: type = np.int16, name: str = "input") -> Any:
    linear, origin = NODE_GEOMETRIES[geometry]
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = linear
    ijk_to_ras[:3, 3] = origin
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, head_phantom(dtype=dtype))
    node.CreateDefaultDisplayNodes()
    return node


def read_with_slicer(scene: Any, path: Path) -> Any:
    """Load a file into a new volume node through Slicer's own reader (vtkMRMLVolumeArchetypeStorageNode)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetSingleFile(1)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):  # like slicer.util.loadVolume: nothing left in the scene, an exception
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise RuntimeError(f"Failed to load node from file: {path}")
    node.CreateDefaultDisplayNodes()
    return node


def write_with_slicer(node: Any, path: Path) -> bool:
    """Save a volume node through Slicer's own writer."""
    storage = node.GetScene().AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetUseCompression(1)
    return bool(storage.WriteData(node))


def assert_same_physical_geometry(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tolerance)


# --- node -> image -> node --------------------------------------------------------------------------------

@pytest.mark.parametrize("geometry", sorted(NODE_GEOMETRIES))
def test_node_image_node_round_trip_is_exact(scene: Any, geometry: str) -> None:
    node = add_volume(scene, geometry)
    voxels_before = slicer.util.arrayFromVolume(node).copy()
    image = mrml.image_from_node(node)
    back = mrml.node_from_image(image, "back", scene)
    assert np.array_equal(matrix(back), matrix(node))  # all 16 elements, bit for bit
    assert back.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    back_voxels = slicer.util.arrayFromVolume(back)
    assert back_voxels.dtype == voxels_before.dtype
    assert np.array_equal(back_voxels, voxels_before)
    assert np.array_equal(slicer.util.arrayFromVolume(node), voxels_before)
    assert back.GetID() != node.GetID() and back.GetScene() is scene


@pytest.mark.parametrize("geometry", sorted(NODE_GEOMETRIES))
def test_image_from_node_maps_voxels_to_the_same_physical_points(scene: Any, geometry: str) -> None:
    """RAS (Slicer) vs LPS (ITK): the same voxel lands on the same point, with x and y negated."""
    node = add_volume(scene, geometry)
    image = mrml.image_from_node(node)
    ijk_to_ras = matrix(node)
    for index in [(0, 0, 0), (23, 0, 0), (0, 19, 0), (0, 0, 11), (5, 7, 3), (23, 19, 11)]:
        ras = ijk_to_ras @ np.array(index + (1,), dtype=float)
        lps = image.TransformIndexToPhysicalPoint(index)
        np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], rtol=0, atol=1e-9)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), slicer.util.arrayFromVolume(node))


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_image_node_image_round_trip_is_exact(scene: Any, fixture: str) -> None:
    image = FIXTURES[fixture]()
    node = mrml.node_from_image(image, fixture, scene)
    back = mrml.image_from_node(node)
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    assert node.GetDisplayNode() is not None


def test_image_from_node_does_not_share_memory_with_the_node(scene: Any) -> None:
    node = add_volume(scene, "oblique", np.float32)
    image = mrml.image_from_node(node)
    slicer.util.arrayFromVolume(node)[:] = -5.0
    assert sitk.GetArrayViewFromImage(image).max() > 0


def test_geometry_from_the_matrix_when_stored_directions_are_not_unit(scene: Any) -> None:
    """The matrix is the truth: spacing = column norms, direction = normalised columns."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "scaled")
    directions = slicer.util.vtkMatrixFromArray(np.diag([2.0, 2.0, 2.0, 1.0]))
    node.SetIJKToRASDirectionMatrix(directions)
    node.SetSpacing(0.5, 0.75, 1.5)
    slicer.util.updateVolumeFromArray(node, head_phantom())
    spacing, _, direction = mrml.lps_geometry(node)
    np.testing.assert_allclose(spacing, [1.0, 1.5, 3.0])
    np.testing.assert_allclose(direction, [-1, 0, 0, 0, -1, 0, 0, 0, 1])


def test_node_from_image_windows_the_display(scene: Any) -> None:
    node = mrml.node_from_image(FIXTURES["anisotropic"](), "windowed", scene)
    display = node.GetDisplayNode()
    assert display.GetAutoWindowLevel() == 0
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    assert 0 <= low < high <= 1000


def test_image_from_node_refuses_a_node_without_voxels(scene: Any) -> None:
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        mrml.image_from_node(node)


# --- Slicer's own readers agree with SimpleITK (RAS <-> LPS) -----------------------------------------------

@pytest.mark.parametrize("extension", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_slicer_reader_geometry_matches_simpleitk(scene: Any, tmp_path: Path, fixture: str, extension: str) -> None:
    path = tmp_path / f"{fixture}{extension}"
    sitk.WriteImage(FIXTURES[fixture](np.int16), str(path), True)
    reference = sitk.ReadImage(str(path))
    node = read_with_slicer(scene, path)
    image = mrml.image_from_node(node)
    assert_same_physical_geometry(image, reference)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))
    # and Slicer's writer, fed a node made by node_from_image, writes what SimpleITK reads back the same
    written = tmp_path / f"written_{fixture}{extension}"
    assert write_with_slicer(mrml.node_from_image(reference, "copy", scene), written)
    assert_same_physical_geometry(sitk.ReadImage(str(written)), reference)


# --- translate_node ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("geometry", sorted(NODE_GEOMETRIES))
def test_translate_node_returns_a_new_node_on_the_input_grid(scene: Any, tiny_model: Any, geometry: str) -> None:
    node = add_volume(scene, geometry)
    voxels_before = slicer.util.arrayFromVolume(node).copy()
    matrix_before = matrix(node)
    nodes_before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    stages: List[str] = []
    output = mrml.translate_node(node, tiny_model, progress=lambda p: stages.append(p.stage), batch_size=4)
    assert output.GetID() != node.GetID()
    assert output.IsA("vtkMRMLScalarVolumeNode")
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == nodes_before + 1
    assert np.array_equal(matrix(output), matrix_before)  # all 16 elements
    assert np.array_equal(matrix(node), matrix_before)
    assert output.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    assert np.array_equal(slicer.util.arrayFromVolume(node), voxels_before)  # input untouched
    values = slicer.util.arrayFromVolume(output)
    assert values.dtype == np.float32 and np.all(np.isfinite(values))
    # MR -> MR with output_range "source": target units are the input's intensity range
    assert values.min() >= voxels_before.min() - 1 and values.max() <= voxels_before.max() + 1
    assert "translating" in stages
    assert output.GetName() == "input MR-T2"
    assert output.GetDisplayNode() is not None


def test_translate_node_matches_translate_image(scene: Any, tiny_model: Any) -> None:
    from MedTranslateLib import translate_image

    node = add_volume(scene, "oblique")
    expected = translate_image(mrml.image_from_node(node), tiny_model, device="cpu")
    output = mrml.translate_node(node, tiny_model, device="cpu")
    assert np.array_equal(slicer.util.arrayFromVolume(output), sitk.GetArrayViewFromImage(expected))


def test_translate_node_follows_the_input_transform_and_hierarchy(scene: Any, tiny_model: Any) -> None:
    node = add_volume(scene, "anisotropic")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    node.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy = scene.GetSubjectHierarchyNode()
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Study")
    hierarchy.CreateItem(study, node)
    output = mrml.translate_node(node, tiny_model, name="T2 guess")
    assert output.GetName() == "T2 guess"
    assert output.GetTransformNodeID() == transform.GetID()
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(output)) == study


def test_translate_node_fills_a_given_output_node(scene: Any, tiny_model: Any) -> None:
    node = add_volume(scene, "flipped")
    existing = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "previous result")
    output = mrml.translate_node(node, tiny_model, output_node=existing)
    assert output is existing
    assert np.array_equal(matrix(existing), matrix(node))
    assert existing.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()


def test_translate_node_refuses_the_input_as_output(scene: Any, tiny_model: Any) -> None:
    node = add_volume(scene, "oblique")
    voxels_before = slicer.util.arrayFromVolume(node).copy()
    with pytest.raises(InputError, match="must not be the input"):
        mrml.translate_node(node, tiny_model, output_node=node)
    assert np.array_equal(slicer.util.arrayFromVolume(node), voxels_before)


def test_cancelled_translation_adds_no_node(scene: Any, tiny_model: Any) -> None:
    node = add_volume(scene, "oblique")
    count = scene.GetNumberOfNodes()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TranslationCancelled):
        mrml.translate_node(node, tiny_model, cancel=cancel)
    assert scene.GetNumberOfNodes() == count


def test_translate_node_uses_slicer_mrmlscene_only_as_a_fallback(scene: Any, tiny_model: Any) -> None:
    """A node of another scene gets its output in that scene, not in slicer.mrmlScene."""
    other = slicer.vtkMRMLScene()
    node = add_volume(other, "anisotropic")
    output = mrml.translate_node(node, tiny_model)
    assert output.GetScene() is other
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
    other.Clear(1)


# --- the headless batch script's loop ---------------------------------------------------------------------

def _batch_module() -> Any:
    spec = importlib.util.spec_from_file_location("batch_translate", REPO / "Training" / "slicer" / "batch_translate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_parse_args_drops_slicers_separator() -> None:
    batch = _batch_module()
    args = batch.parse_args(["--", "--model", "m", "--batch-size", "2", "in", "out"])
    assert (args.model, args.batch_size, args.in_dir, args.out_dir, args.tta) == ("m", 2, Path("in"), Path("out"), False)
    with pytest.raises(SystemExit):
        batch.parse_args(["in", "out"])  # --model is required


def test_batch_loop_translates_every_file(scene: Any, tmp_path: Path, tiny_model: Any) -> None:
    batch = _batch_module()
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = {"oblique": "a_oblique.nrrd", "flipped": "b_flipped.nii.gz", "anisotropic": "c_aniso.mha"}
    for fixture, name in names.items():
        sitk.WriteImage(FIXTURES[fixture](np.int16), str(in_dir / name), True)
    (in_dir / "notes.txt").write_text("not a volume")
    (in_dir / "d_broken.nii.gz").write_bytes(b"not a nifti file")
    lines: List[str] = []
    status = batch.translate_folder(in_dir, out_dir, tiny_model, lambda p: read_with_slicer(scene, p),
                                    write_with_slicer, log=lines.append, device="cpu", batch_size=4)
    assert status == 1  # the broken file failed ...
    assert len(lines) == 4
    assert [line.split()[0] for line in lines] == ["OK", "OK", "OK", "FAILED"]
    assert "d_broken.nii.gz" in lines[3]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names.values())  # ... and left nothing behind
    for name in names.values():
        assert_same_physical_geometry(sitk.ReadImage(str(out_dir / name)), sitk.ReadImage(str(in_dir / name)))
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # nodes removed after each file


def test_batch_run_reports_bad_arguments(tmp_path: Path) -> None:
    batch = _batch_module()
    lines: List[str] = []
    assert batch.run(["--model", "x", str(tmp_path / "missing"), str(tmp_path / "out")], log=lines.append) == 2
    assert "no such folder" in lines[0]
    assert batch.run(["--model", "x", str(tmp_path), str(tmp_path)], log=lines.append) == 2
    assert "would overwrite" in lines[1]
    assert batch.run(["--model", "no-such-model", str(tmp_path), str(tmp_path / "out")], log=lines.append) == 2
    assert "not found" in lines[2]
