"""The child-process runner the Slicer module polls from a timer (MedTranslateLib/runner.py), run for real:
progress, success onto the exact grid of a real MRML node (slicer-core), cancel (the child gone within a
second, nothing written), a failing child, a crashing child, and a child that prints garbage."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_fixtures import oblique_volume
from MedTranslateLib.runner import TranslationProcess, translate_command
from MedTranslateLib.volume import read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]


def child(command) -> TranslationProcess:
    return TranslationProcess(command, cwd=REPO)


def test_a_translation_of_a_scene_node_in_a_child_lands_on_the_nodes_exact_grid(tmp_path, tiny_model):
    slicer = pytest.importorskip("slicer")
    from MedTranslateLib import mrml

    scene = slicer.vtkMRMLScene()
    node = mrml.node_from_image(oblique_volume(), "T1", scene)
    before = mrml.ijk_to_ras(node).copy(), mrml.image_from_node(node)
    write_volume(mrml.image_from_node(node), tmp_path / "input.nrrd")  # exact IJK-to-RAS, node untouched
    process = child(translate_command(tmp_path / "input.nrrd", tmp_path / "output.nrrd", str(tiny_model),
                                      {"device": "cpu", "batch_size": 4}))
    seen = []
    while not process.state.finished:  # what a QTimer does: poll, never wait
        seen += process.poll()
        time.sleep(0.01)
    assert process.state.succeeded, process.state.failure()
    assert {"reading", "translating", "writing"} <= {e.get("stage") for e in seen}
    output = mrml.store_result(node, read_volume(tmp_path / "output.nrrd"), name="T1 T2", scene=scene)
    np.testing.assert_array_equal(mrml.ijk_to_ras(output), before[0])  # bit-identical grid
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mrml.image_from_node(node)),
                                  sitk.GetArrayFromImage(before[1]))  # the input is unchanged
    scene.Clear(1)


def test_cancel_ends_the_child_within_a_second_and_writes_nothing(tmp_path, tiny_model):
    values = np.random.default_rng(0).random((160, 192, 192), dtype=np.float32) * 1000
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "big.nii"), False)
    process = child(translate_command(tmp_path / "big.nii", tmp_path / "out.nii.gz", str(tiny_model),
                                      {"device": "cpu", "batch_size": 1}))
    deadline = time.monotonic() + 120
    while not any(e.get("stage") == "translating" for e in process.state.events):
        process.poll()
        assert not process.state.finished and time.monotonic() < deadline
        time.sleep(0.01)
    cancelled_at = time.monotonic()
    process.cancel()
    state = process.wait(timeout=10)
    assert state.finished and time.monotonic() - cancelled_at < 1.0 + 0.5  # SIGTERM, SIGKILL after 1 s at most
    assert state.cancelled and not state.succeeded and state.failure() == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.nii"]


def test_a_failing_child_gives_its_one_line(tmp_path, tiny_model):
    process = child(translate_command(tmp_path / "missing.nii.gz", tmp_path / "out.nii.gz", str(tiny_model), {}))
    state = process.wait(timeout=60)
    assert state.exit_code == 2 and not state.succeeded
    assert state.failure().endswith("missing.nii.gz: no such file or folder")


def test_a_crashing_child_is_reported_not_felt():
    crash = [sys.executable, "-c", "import os, signal, sys; print('{\"event\": \"progress\", \"stage\": \"reading\", "
             "\"done\": 0, \"total\": 1}', flush=True); sys.stderr.write('about to crash\\n'); sys.stderr.flush(); "
             "os.kill(os.getpid(), signal.SIGSEGV)"]
    state = child(crash).wait(timeout=30)
    assert state.exit_code is not None and state.exit_code < 0 and not state.succeeded
    assert state.failure() == "the translation process crashed (SIGSEGV): about to crash"
    assert state.events[0]["stage"] == "reading"


def test_garbage_from_a_child_is_kept_apart_from_its_events():
    noisy = [sys.executable, "-c", "import json; print('garbage'); print('{not json'); print('[1, 2]'); "
             "print(json.dumps({'event': 'done', 'output': 'x'})); print('tail without newline', end='')"]
    state = child(noisy).wait(timeout=30)
    assert state.succeeded and state.events == [{"event": "done", "output": "x"}]
    assert state.stray == ["garbage", "{not json", "[1, 2]", "tail without newline"]


# --- a scene's node, translated in a child (the module's Apply, without Qt) -----------------------------------

def run_to_end(translation, on_event=None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not translation.finished:
        for event in translation.poll():
            if on_event is not None:
                on_event(event)
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_apply_in_a_child_puts_the_result_next_to_the_input_on_its_exact_grid(tiny_model):
    slicer = pytest.importorskip("slicer")
    from MedTranslateLib import mrml
    from MedTranslateLib.node_translation import NodeTranslation

    scene = slicer.vtkMRMLScene()
    node = mrml.node_from_image(oblique_volume(), "T1", scene)
    voxels = sitk.GetArrayFromImage(mrml.image_from_node(node))
    translation = NodeTranslation(node, str(tiny_model), name="T1 T2", options={"device": "cpu"})
    folder = translation.folder
    run_to_end(translation)
    assert translation.error is None and translation.result_node.GetName() == "T1 T2"
    assert translation.result_node.GetScene() is scene and not folder.exists()
    np.testing.assert_array_equal(mrml.ijk_to_ras(translation.result_node), mrml.ijk_to_ras(node))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mrml.image_from_node(node)), voxels)
    scene.Clear(1)


def test_cancel_and_failure_leave_the_scene_as_it_was(tmp_path, tiny_model):
    slicer = pytest.importorskip("slicer")
    from MedTranslateLib import mrml
    from MedTranslateLib.node_translation import NodeTranslation

    scene = slicer.vtkMRMLScene()
    values = np.random.default_rng(0).random((160, 192, 192), dtype=np.float32) * 1000
    node = mrml.node_from_image(sitk.GetImageFromArray(values), "big", scene)
    nodes = scene.GetNumberOfNodes()
    translation = NodeTranslation(node, str(tiny_model), options={"device": "cpu", "batch_size": 1})
    cancelled_at = []

    def cancel_when_translating(event):
        if event.get("stage") == "translating" and not cancelled_at:
            cancelled_at.append(time.monotonic())
            translation.cancel()

    run_to_end(translation, cancel_when_translating)
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 1.5
    assert translation.error == "cancelled" and translation.result_node is None
    assert scene.GetNumberOfNodes() == nodes and not translation.folder.exists()

    broken = NodeTranslation(node, str(tmp_path / "no-such-model"), options={"device": "cpu"})
    run_to_end(broken)
    assert "no-such-model" in broken.error and len(broken.error.splitlines()) == 1
    assert scene.GetNumberOfNodes() == nodes and not broken.folder.exists()
    scene.Clear(1)
