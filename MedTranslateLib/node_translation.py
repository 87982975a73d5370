"""Translating a scene's volume node in a child process: what the Slicer module's Apply starts and its timer
polls. No Qt here, so the whole path runs for real outside Slicer (slicer-core's MRML).

The input node's voxels and exact geometry go to a temporary NRRD (the node is never modified); the child
(`runner.TranslationProcess`: the library's CLI with JSON progress, in PythonSlicer inside Slicer) writes the
result beside it; once it succeeds, the result is loaded onto the input's exact grid and placed next to it in
the subject hierarchy. Cancel, a failure or a crash of the child leave the scene as it was. The temporary
folder is removed in every case.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .mrml import image_from_node, store_result
from .runner import TranslationProcess, translate_command
from .volume import read_volume, write_volume


def child_environment(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for the child: this library's folder first on PYTHONPATH (an extension's Lib folder
    is not on a fresh PythonSlicer's path)."""
    env = dict(os.environ if base is None else base)
    library_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([library_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p])
    return env


class NodeTranslation:
    """One running translation of `input_node` with `model` (an id or a package path)."""

    def __init__(self, input_node: Any, model: str, output_node: Any = None, name: Optional[str] = None,
                 options: Optional[Dict[str, Any]] = None, python: Optional[str] = None) -> None:
        self.input_node, self.output_node, self.name = input_node, output_node, name
        self.result_node: Any = None
        self.error: Optional[str] = None
        self.folder = Path(tempfile.mkdtemp(prefix="medtranslate-"))
        try:
            write_volume(image_from_node(input_node), self.folder / "input.nrrd")
            command = translate_command(self.folder / "input.nrrd", self.folder / "output.nrrd", model,
                                        options or {}, python)
            self.process = TranslationProcess(command, env=child_environment())
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    @property
    def finished(self) -> bool:
        return self.process.state.finished and not self.folder.exists()

    @property
    def warnings(self) -> List[str]:
        return list(dict.fromkeys(str(e.get("message")) for e in self.process.state.events
                                  if e.get("event") == "warning"))

    def poll(self) -> List[Dict[str, Any]]:
        """New events of the child (call from a timer; never blocks). When the child has ended: the result
        goes into the scene (success), or `error` says why not; the temporary folder is removed."""
        events = self.process.poll()
        if self.process.state.finished and self.folder.exists():
            try:
                self._finish()
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)
        return events

    def cancel(self) -> None:
        """End the child now (and its children); the scene stays as it was."""
        self.process.cancel()

    def _finish(self) -> None:
        state = self.process.state
        if not state.succeeded:
            self.error = state.failure()
            return
        if self.input_node.GetScene() is None:
            self.error = "the input volume was removed while translating; the result was discarded"
            return
        output = self.output_node if self.output_node is not None and self.output_node.GetScene() is not None \
            else None
        self.result_node = store_result(self.input_node, read_volume(self.folder / "output.nrrd"),
                                        output_node=output, name=self.name)
