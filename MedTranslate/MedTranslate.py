"""MedTranslate: translate a volume into another modality or contrast, in 3D Slicer.

A thin shell over MedTranslateLib (shipped beside this module): the widget collects the choices; Apply writes
the input volume to a temporary file and translates it in a separate PythonSlicer process
(MedTranslateLib.node_translation), which a timer polls for progress, so the GUI never waits and a crash of
the child is reported, not felt; the result goes into the scene, on the input's exact grid, when (and only
when) it succeeded. Slicer's main thread holds the GIL while Qt waits for events, so a Python thread would
crawl; the child process does not.

Nothing here imports torch, SimpleITK or MedTranslateLib at import time: Slicer imports every module on
start-up, and PyTorch may not even be installed yet (MedTranslateDependencies installs it on first use).
"""
import logging
import shutil
import sys
import threading
import time
from typing import Annotated, Any, Callable, Dict, List, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4
    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


HOMEPAGE = "https://github.com/medtranslate/SlicerMedTranslate"


#
# MedTranslate
#


class MedTranslate(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedTranslate")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []  # the PyTorch extension is an extension dependency, imported on first use
        self.parent.contributors = ["MedTranslate contributors (SlicerMedTranslate project)"]
        self.parent.helpText = _(
            "Translate a volume into another modality or contrast (MRI T1 \u2194 T2, T1 \u2192 PD, CT \u2194 MRI, "
            "PET \u2192 CT), or denoise it, with a deep-learning model. Choose the input volume and a model; the "
            "model card shows what the model was trained on, how well it does compared with simple baselines, "
            "and its limits. The result is a new volume on exactly the input's grid, in the target modality's "
            "units (Hounsfield units for CT). Synthetic images are for research: they are not a substitute for "
            "an acquired scan. "
        ) + f'<a href="{HOMEPAGE}">{_("Documentation")}</a>.'
        self.parent.acknowledgementText = _(
            "MedTranslate builds on PyTorch, SimpleITK and the published CycleGAN, pix2pix, U-Net and MedGAN "
            "methods. Bundled models name their training data and licenses in their model cards. The module "
            "layout follows 3D Slicer's scripted-module template."
        )


#
# MedTranslateParameterNode
#


@parameterNodeWrapper
class MedTranslateParameterNode:
    """The module's state, saved with the scene.

    inputVolume - the volume to translate (never modified).
    outputVolume - where the result goes; None creates a new volume when the translation succeeds.
    modelId - the model package id (MedTranslateLib.list_models()).
    device - "auto", "cpu", "cuda:N" or "mps".
    batchSize - slices per batch.
    halfPrecision - bf16/fp16 autocast where the device has it (CUDA; CPUs with native bf16); off: fp32.
    testTimeFlips - average with left-right flipped slices.
    contextSlices - neighbouring slices on each side the selected model sees (read-only, from its card).
    outputOpacity - foreground opacity of the output over the input in the slice views.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: str = "auto"
    batchSize: Annotated[int, WithinRange(1, 512)] = 8  # a range, not a Minimum: the wrapper would set the spin
    # box's maximum to 2^31-1 otherwise
    halfPrecision: bool = True
    testTimeFlips: bool = False
    contextSlices: int = 0
    outputOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


#
# Model card as HTML (plain Python: no Qt, no torch)
#


def _escape(value: Any) -> str:
    import html

    return html.escape(str(value))


def _formatNumber(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _escape(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def metricsHtml(metrics: Dict[str, Any]) -> str:
    """The card's held-out metrics as a table: the model's row first, then its baselines."""
    rows = {name: values for name, values in metrics.items() if isinstance(values, dict)}
    notes = [f"{_escape(name)}: {_escape(value)}" for name, value in metrics.items() if not isinstance(value, dict)]
    if not rows:
        return "<p><i>No held-out metrics in the card.</i></p>" + "".join(f"<p>{n}</p>" for n in notes)
    order = sorted(rows, key=lambda name: (name.startswith("baseline"), name != "model", name))
    columns: List[str] = []
    for name in order:
        columns += [key for key, value in rows[name].items()
                    if key not in columns and isinstance(value, (int, float)) and not isinstance(value, bool)]
    header = "".join(f"<th>{_escape(column.upper() if len(column) <= 4 else column)}</th>" for column in columns)
    body = ""
    for name in order:
        label = _escape(name.replace("baseline_", "baseline: ").replace("_", " "))
        if not name.startswith("baseline"):
            label = f"<b>{label}</b>"
        cells = "".join(f"<td align='right'>{_formatNumber(rows[name].get(column, ''))}</td>" for column in columns)
        body += f"<tr><td>{label}</td>{cells}</tr>"
    table = f"<table border='0' cellspacing='0' cellpadding='3'><tr><th></th>{header}</tr>{body}</table>"
    return table + "".join(f"<p><small>{n}</small></p>" for n in notes)


def cardHtml(card: Any) -> str:
    """Everything a user should read before trusting a model, from its ModelCard."""
    architecture = dict(card.architecture)
    name = architecture.pop("name", "?")
    arguments = ", ".join(f"{key}={value}" for key, value in architecture.items())
    training = card.training or {}
    parts = [
        f"<h3>{_escape(card.id)} <small>v{_escape(card.version)}</small></h3>",
        f"<p><b>{_escape(card.source_modality)} \u2192 {_escape(card.target_modality)}</b> ({_escape(card.task)})</p>",
    ]
    if card.description:
        parts.append(f"<p>{_escape(card.description)}</p>")
    parts.append(f"<p><b>Architecture:</b> {_escape(name)}" + (f" ({_escape(arguments)})" if arguments else "")
                 + f"; {_escape(card.slice_axis)} slices, {card.context_slices} context slice(s) each side"
                 + (f"; trained at {card.spacing_mm[0]:g}\u00d7{card.spacing_mm[1]:g} mm" if card.spacing_mm else "")
                 + "</p>")
    for key, label in (("recipe", "Recipe"), ("data", "Training data"), ("simulation", "Simulation"),
                       ("split", "Held-out split"), ("steps", "Steps"), ("hardware", "Hardware")):
        if key in training:
            parts.append(f"<p><b>{label}:</b> {_escape(training[key])}</p>")
    parts.append("<p><b>Held-out metrics</b> (with baselines):</p>" + metricsHtml(card.metrics or {}))
    parts.append(f"<p><b>License:</b> {_escape(card.license)}</p>")
    parts.append(f"<p><b>Intended use:</b> {_escape(card.intended_use)}</p>")
    if card.warnings:
        items = "".join(f"<li>{_escape(w)}</li>" for w in card.warnings)
        parts.append(f"<p><b><font color='#b35900'>Warnings:</font></b></p><ul>{items}</ul>")
    return "".join(parts)


#
# MedTranslateWidget
#


class MedTranslateWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: binds Resources/UI/MedTranslate.ui to the parameter node and runs translations in a child
    process, polled from a timer."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cards: Dict[str, Any] = {}
        self._updatingGui = False
        # the running job (both None when idle): a MedTranslateLib.node_translation.NodeTranslation
        self._translation: Any = None
        self._job: Optional[Dict[str, Any]] = None
        self._shownOutput: Any = None  # the last result shown as foreground (the opacity slider's target)
        self._timer = None
        # a running model download (MedTranslateLib.runner.TranslationProcess) and its model id, or None
        self._download: Any = None
        self._downloadId = ""
        self._downloadTimer = None

    # --- set-up and tear-down ---

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedTranslate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedTranslateLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollWorker)
        self._downloadTimer = qt.QTimer()
        self._downloadTimer.setInterval(self.POLL_INTERVAL_MS)
        self._downloadTimer.connect("timeout()", self._pollDownload)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.onDeviceSelected)
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.downloadButton.connect("clicked(bool)", self.onDownloadButton)
        self.ui.progressBar.hide()
        self.ui.downloadProgressBar.hide()
        self._fillDevices([("auto", _("Auto")), ("cpu", _("CPU"))])

        self.initializeParameterNode()
        # Listing models imports torch (seconds): after the panel is shown, not while it is built.
        qt.QTimer.singleShot(0, self.refreshModelsAndDevices)

    def cleanup(self) -> None:
        self._abandonJob()  # reloading the module ends a running child and removes its temporary folder
        if self._timer is not None:
            self._timer.stop()
        if self._download is not None:  # the child removes its partial file when it is terminated
            self._download.cancel()
            self._download.wait(timeout=2.0)
            self._download = None
        if self._downloadTimer is not None:
            self._downloadTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._abandonJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[MedTranslateParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a SlicerParameterName property in the .ui are bound here; the model and device
            # combo boxes are filled at run time, so they are kept in step by hand (_syncSelectors).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._syncSelectors()
        self._checkCanApply()

    # --- models and devices ---

    def refreshModelsAndDevices(self) -> bool:
        """Fill the model and device selectors; False (with a status line) while dependencies are missing."""
        import MedTranslateDependencies

        missing = MedTranslateDependencies.missingPackages()
        if missing:
            self._setStatus(_("Python packages {names} are not installed yet. Press Apply to install them "
                              "(you will be asked first).").format(names=", ".join(missing)))
            self._checkCanApply()
            return False
        try:
            import MedTranslateLib
            from MedTranslateLib.device import describe_devices

            cards = MedTranslateLib.list_models()
            devices = describe_devices()
        except Exception as error:
            logging.exception("MedTranslate: listing models failed")
            self._setStatus(_("Cannot list models: {error}").format(error=error))
            return False
        self._cards = {card.id: card for card in cards}
        self._updatingGui = True
        try:
            self.ui.modelSelector.clear()
            for card in cards:
                self.ui.modelSelector.addItem(f"{card.id}  ({card.source_modality} \u2192 {card.target_modality})",
                                              card.id)
                self.ui.modelSelector.setItemData(self.ui.modelSelector.count - 1, card.description or card.id,
                                                  qt.Qt.ToolTipRole)
        finally:
            self._updatingGui = False
        self._fillDevices(devices)
        self._fillAvailable()
        if not cards:
            self._setStatus(_("No models found. Add model packages to ~/.medtranslate/models or a folder named "
                              "in MEDTRANSLATE_MODEL_PATH."))
        if self._parameterNode and (not self._parameterNode.modelId or self._parameterNode.modelId not in self._cards):
            if cards:
                self._parameterNode.modelId = cards[0].id
        self._syncSelectors()
        self._checkCanApply()
        return True

    def _fillAvailable(self) -> None:
        """The catalogue's models that are not installed, in the download section."""
        if self._download is not None:
            return
        try:
            entries = self.logic.availableDownloads()
        except Exception as error:  # an unreadable catalogue must not stop the rest of the panel
            logging.exception("MedTranslate: reading the model catalogue failed")
            entries, message = [], _("The model catalogue cannot be read: {error}").format(error=error)
        else:
            message = "" if entries else _("Every model of the catalogue is installed.")
        self.ui.availableSelector.clear()
        for entry in entries:
            self.ui.availableSelector.addItem(f"{entry.id} {entry.version}  ({entry.size / 2**20:.1f} MiB)", entry.id)
            self.ui.availableSelector.setItemData(self.ui.availableSelector.count - 1, entry.summary,
                                                  qt.Qt.ToolTipRole)
        self.ui.downloadButton.enabled = bool(entries)
        self.ui.downloadStatusLabel.text = message

    def onDownloadButton(self) -> None:
        """Download the selected catalogue model in a child process, or cancel the running download."""
        if self._download is not None:
            self._download.cancel()
            self.ui.downloadButton.enabled = False
            self.ui.downloadStatusLabel.text = _("Cancelling\u2026")
            return
        modelId = self.ui.availableSelector.itemData(self.ui.availableSelector.currentIndex)
        if not modelId:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the download."), waitCursor=True):
            self._download, self._downloadId = self.logic.startDownload(modelId), modelId
            self.ui.downloadButton.text = _("Cancel download")
            self.ui.availableSelector.enabled = False
            self.ui.downloadProgressBar.maximum = 0
            self.ui.downloadProgressBar.show()
            self.ui.downloadStatusLabel.text = _("Downloading {model}\u2026").format(model=modelId)
            self._downloadTimer.start()

    def _pollDownload(self) -> None:
        """Main thread, every POLL_INTERVAL_MS: the download's progress; at its end, the model list refreshed."""
        if self._download is None:
            return
        progress = [e for e in self._download.poll() if e.get("event") == "progress"]
        if progress and progress[-1].get("total"):
            done, total = int(progress[-1]["done"]), int(progress[-1]["total"])
            self.ui.downloadProgressBar.maximum = 1000
            self.ui.downloadProgressBar.value = int(1000 * done / total)
            self.ui.downloadProgressBar.format = f"{done / 2**20:.1f} / {total / 2**20:.1f} MiB (%p%)"
        if not self._download.state.finished:
            return
        self._downloadTimer.stop()
        state, modelId = self._download.state, self._downloadId
        self._download, self._downloadId = None, ""
        self.ui.downloadProgressBar.hide()
        self.ui.downloadButton.text = _("Download")
        self.ui.availableSelector.enabled = True
        if state.succeeded:
            self.refreshModelsAndDevices()
            if self._parameterNode is not None and modelId in self._cards:
                self._parameterNode.modelId = modelId
            self.ui.downloadStatusLabel.text = _("Installed {model} (SHA-256 verified).").format(model=modelId)
        else:
            self._fillAvailable()
            self.ui.downloadStatusLabel.text = (_("Download cancelled; nothing was installed.") if state.cancelled
                                                else _("Download failed: {error}").format(error=state.failure()))
            if not state.cancelled:
                logging.error("MedTranslate: the download process said:\n" + state.stderr)

    def _fillDevices(self, devices: List[Any]) -> None:
        self._updatingGui = True
        try:
            self.ui.deviceSelector.clear()
            for name, label in devices:
                self.ui.deviceSelector.addItem(label, name)
        finally:
            self._updatingGui = False
        self._syncSelectors()

    def _syncSelectors(self) -> None:
        """Show the parameter node's model and device in the combo boxes, and the model's card."""
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            for selector, value in ((self.ui.modelSelector, self._parameterNode.modelId),
                                    (self.ui.deviceSelector, self._parameterNode.device or "auto")):
                index = selector.findData(value)
                if index >= 0 and selector.currentIndex != index:
                    selector.currentIndex = index
            card = self._cards.get(self._parameterNode.modelId)
            if card is not None:
                self.ui.modelCardBrowser.setHtml(cardHtml(card))
                if self._parameterNode.contextSlices != card.context_slices:
                    self._parameterNode.contextSlices = card.context_slices
            elif not self._cards:
                self.ui.modelCardBrowser.setHtml("")
        finally:
            self._updatingGui = False

    def onModelSelected(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        self._parameterNode.modelId = self.ui.modelSelector.itemData(index) or ""

    def onDeviceSelected(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        self._parameterNode.device = self.ui.deviceSelector.itemData(index) or "auto"

    def onOpacityChanged(self, value: float) -> None:
        """Only the slice views that still show the last result as foreground change."""
        shown = self._shownOutput
        if shown is None or shown.GetScene() is None:
            return
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            if composite.GetForegroundVolumeID() == shown.GetID():
                composite.SetForegroundOpacity(value)

    # --- Apply / Cancel ---

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._translation is not None:  # running: the button is Cancel
            self.ui.applyButton.enabled = not self._translation.process.state.cancelled
            return
        p = self._parameterNode
        problem = None
        if p is None:
            problem = _("No parameter node.")
        elif not p.inputVolume:
            problem = _("Select an input volume.")
        elif p.outputVolume and p.outputVolume == p.inputVolume:
            problem = _("The output volume must not be the input volume: choose another or 'Create new volume'.")
        elif self._cards and p.modelId not in self._cards:
            problem = _("Select a model.")
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or _("Translate the input volume with the selected model.")

    def onApplyButton(self) -> None:
        if self._translation is not None:
            self._cancelRunningJob()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the translation."), waitCursor=True):
            self._startJob()

    def _startJob(self) -> None:
        p = self._parameterNode
        if not self.logic.ensureDependencies(askConfirmation=True):
            self._setStatus(_("MedTranslate's Python packages are not ready: they were not installed, or Slicer "
                              "must be restarted first (see the message shown)."))
            return
        if not self._cards and not self.refreshModelsAndDevices():
            return
        inputNode, outputNode = p.inputVolume, p.outputVolume
        if inputNode is None:
            raise ValueError(_("Select an input volume."))
        if outputNode is not None and outputNode == inputNode:
            slicer.util.errorDisplay(_("The output volume must not be the input volume. Choose another volume "
                                       "or 'Create new volume'."))
            return
        card = self._cards.get(p.modelId)
        if card is None:
            raise ValueError(_("Select a model."))

        from MedTranslateLib.node_translation import NodeTranslation

        options = {
            "device": p.device or "auto",
            "batch_size": max(1, int(p.batchSize)),
            "precision": "auto" if p.halfPrecision else "fp32",
            "tta": bool(p.testTimeFlips),
        }
        self._job = {"card": card, "started": time.monotonic()}
        # the input's voxels and geometry are written to a temporary file here; the child never sees the scene
        self._translation = NodeTranslation(inputNode, card.id, output_node=outputNode,
                                            name=f"{inputNode.GetName()} {card.target_modality}", options=options,
                                            python=self.logic.pythonExecutable())
        self._setRunning(True)
        self._setStatus(_("Translating {name} with {model}\u2026").format(name=inputNode.GetName(), model=card.id))
        self._timer.start()

    def _cancelRunningJob(self) -> None:
        if self._translation is None:
            return
        self._translation.cancel()
        self.ui.applyButton.enabled = False
        self._setStatus(_("Cancelling\u2026"))

    def _abandonJob(self) -> None:
        """End a running child at once and forget it (scene closing, module reloading); nothing is added."""
        if self._translation is None:
            return
        self._translation.cancel()
        self._translation.process.wait(timeout=2.0)
        self._translation.poll()  # removes the temporary folder
        self._translation, self._job = None, None
        if self._timer is not None:
            self._timer.stop()

    def _pollWorker(self) -> None:
        """Main thread, every POLL_INTERVAL_MS: show the child's progress; when it has ended, finish the job."""
        if self._translation is None:
            return
        progress = [e for e in self._translation.poll() if e.get("event") == "progress"]
        if progress:
            self._showProgress(progress[-1])
        if self._translation.finished:
            self._finishJob()

    def _showProgress(self, event: Dict[str, Any]) -> None:
        bar, done, total = self.ui.progressBar, int(event.get("done", 0)), int(event.get("total", 0))
        stage = str(event.get("stage", ""))
        if total:
            bar.maximum = 1000
            bar.value = int(1000 * done / total)
            bar.format = f"{stage} {done}/{total} (%p%)"
        else:
            bar.maximum = 0  # busy indicator
            bar.format = stage

    def _finishJob(self) -> None:
        self._timer.stop()
        translation, job = self._translation, self._job
        self._translation, self._job = None, None
        self._setRunning(False)
        seconds = time.monotonic() - job["started"]
        warningTexts = translation.warnings
        if translation.process.state.cancelled:
            self._setStatus(_("Cancelled after {s:.1f} s; the scene is unchanged.").format(s=seconds), warningTexts)
            return
        if translation.error is not None:
            self._setStatus(_("Failed: {error}").format(error=translation.error), warningTexts)
            logging.error("MedTranslate: the translation process said:\n" + translation.process.state.stderr)
            slicer.util.errorDisplay(_("Translation failed: {error}").format(error=translation.error),
                                     detailedText=translation.process.state.stderr)
            return
        outputNode = translation.result_node
        # the output selector is left as the user set it: the next Apply makes a new volume unless one is chosen
        opacity = self._parameterNode.outputOpacity if self._parameterNode is not None else 0.5
        self.logic.showResult(translation.input_node, outputNode, opacity)
        self._shownOutput = outputNode
        self._setStatus(_("Done in {s:.1f} s: {name} ({source} \u2192 {target}).").format(
            s=seconds, name=outputNode.GetName(), source=job["card"].source_modality,
            target=job["card"].target_modality), warningTexts)

    def _setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.toolTip = (_("Stop the translation; the scene stays as it was before Apply.") if running
                                       else _("Translate the input volume with the selected model."))
        self.ui.applyButton.enabled = True
        for section in (self.ui.inputsCollapsibleButton, self.ui.advancedCollapsibleButton):
            section.enabled = not running
        self.ui.outputSelector.enabled = not running
        self.ui.progressBar.visible = running
        if running:
            self.ui.progressBar.maximum = 0
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = _("loading the model")
        else:
            self._checkCanApply()

    def _setStatus(self, text: str, warningTexts: Optional[List[str]] = None) -> None:
        if warningTexts:
            text += "\n" + _("Warnings:") + "\n" + "\n".join(f"\u2022 {w}" for w in warningTexts)
        self.ui.statusLabel.text = text
        logging.info(f"MedTranslate: {text}")


#
# MedTranslateLogic
#


class MedTranslateLogic(ScriptedLoadableModuleLogic):
    """Thin: everything it does is MedTranslateLib's. Usable without the widget (scripts, tests):

        logic = MedTranslateLogic()
        output = logic.translate(slicer.util.getNode("T1"), "mr-t1-to-t2-pix2pix")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._dependenciesReady = False

    def getParameterNode(self):
        return MedTranslateParameterNode(super().getParameterNode())

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """On first use: PyTorch (through the PyTorch extension) and the other Python packages, asking first."""
        if not self._dependenciesReady:
            import MedTranslateDependencies

            self._dependenciesReady = MedTranslateDependencies.ensureDependencies(askConfirmation=askConfirmation)
        return self._dependenciesReady

    @staticmethod
    def models() -> List[Any]:
        """Cards of every model found (MedTranslateLib.list_models())."""
        import MedTranslateLib

        return MedTranslateLib.list_models()

    def translate(self, inputNode, modelId: str, outputNode=None, device: str = "auto", batchSize: int = 8,
                  precision: str = "auto", tta: bool = False, progress: Optional[Callable[[Any], None]] = None,
                  cancel: Optional[threading.Event] = None):
        """Translate `inputNode` with model `modelId` (an id or a package path) on the calling thread.

        Returns the output node: `outputNode` filled, or a new volume node. The input is never modified and
        can never be the output. `progress` receives MedTranslateLib.Progress; setting `cancel` (a
        threading.Event) raises MedTranslateLib.TranslationCancelled and leaves the scene unchanged.
        """
        if inputNode is None:
            raise ValueError("inputNode is required")
        if outputNode is not None and outputNode == inputNode:
            raise ValueError("the output volume must not be the input volume")
        if not self.ensureDependencies(askConfirmation=True):
            raise RuntimeError("MedTranslate needs PyTorch and a few Python packages; they were not installed")
        from MedTranslateLib import mrml

        started = time.monotonic()
        outputNode = mrml.translate_node(inputNode, modelId, output_node=outputNode, device=device,
                                         batch_size=batchSize, precision=precision, tta=tta, progress=progress,
                                         cancel=cancel)
        logging.info(f"MedTranslate: {inputNode.GetName()} -> {outputNode.GetName()} "
                     f"in {time.monotonic() - started:.1f} s")
        return outputNode

    @staticmethod
    def availableDownloads() -> List[Any]:
        """The catalogue's entries (MedTranslateLib.download.CatalogueEntry) whose model is not installed."""
        import MedTranslateLib
        from MedTranslateLib.download import read_catalogue

        installed = {card.id for card in MedTranslateLib.list_models()}
        return [entry for entry in read_catalogue() if entry.id not in installed]

    def startDownload(self, modelId: str):
        """Download catalogue model `modelId` into the user's model folder in a child process (PythonSlicer),
        verified against the catalogue's SHA-256: a MedTranslateLib.runner.TranslationProcess to poll."""
        from MedTranslateLib.node_translation import child_environment
        from MedTranslateLib.runner import TranslationProcess, pull_command

        return TranslationProcess(pull_command(modelId, python=self.pythonExecutable()), env=child_environment(),
                                  task="download")

    @staticmethod
    def pythonExecutable() -> str:
        """The interpreter for the child process: Slicer's PythonSlicer (its Python, its packages), else this
        Python (outside Slicer)."""
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def showResult(inputNode, outputNode, opacity: float = 0.5) -> None:
        """Input as background, output as foreground at `opacity`, in every slice view."""
        slicer.util.setSliceViewerLayers(background=inputNode, foreground=outputNode, foregroundOpacity=opacity)


#
# MedTranslateTest
#


class MedTranslateTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): the first bundled model on an oblique volume."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TranslateInChildProcess()
        self.setUp()
        self.test_TranslateObliqueVolume()
        self.setUp()
        self.test_RefusesInputAsOutputAndCancels()

    @staticmethod
    def _firstBundledModel():
        from pathlib import Path

        from MedTranslateLib import registry

        bundled = sorted((card for card, path in registry.discover().found.values()
                          if Path(path).resolve().parent == registry.BUNDLED_DIR),
                         key=lambda card: card.id)
        if not bundled:
            raise AssertionError(f"no bundled model package in {registry.BUNDLED_DIR}")
        return bundled[0]

    @staticmethod
    def _obliqueVolume(modality: str, name: str = "MedTranslateTest input"):
        """A head-like phantom (24 slices of 64×56) in `modality`'s units, with a rotated, anisotropic grid."""
        import math

        import numpy as np

        k, j, i = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 56), np.linspace(-1, 1, 64), indexing="ij")
        radius = np.sqrt((i / 0.9) ** 2 + (j / 0.85) ** 2 + (k / 0.95) ** 2)
        skull, brain = radius < 1.0, radius < 0.8
        ventricles = ((np.abs(i) - 0.2) / 0.12) ** 2 + (j / 0.35) ** 2 + (k / 0.4) ** 2 < 1.0
        if modality == "CT":
            values = np.full(radius.shape, -1000.0)
            values[skull] = 1200.0
            values[brain] = 35.0 + 8.0 * i[brain]
            values[ventricles & brain] = 5.0
            dtype = np.int16
        else:
            values = np.zeros(radius.shape)
            values[skull] = 300.0
            values[brain] = 600.0 + 150.0 * (0.5 * i + 0.3 * j)[brain]
            values[ventricles & brain] = 150.0
            dtype = np.float32
        a, b = math.radians(25.0), math.radians(-10.0)
        rotation = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]) @ \
            np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
        ijkToRas = np.eye(4)
        ijkToRas[:3, :3] = rotation * [1.7, 1.9, 3.5]
        ijkToRas[:3, 3] = [41.5, -27.25, -30.0]
        return slicer.util.addVolumeFromArray(values.astype(dtype), ijkToRas, name=name)

    def _prepareCase(self):
        """(logic, the first bundled model's card, an oblique input volume in its source modality, a copy of
        the input's voxels)."""
        logic = MedTranslateLogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False))
        card = self._firstBundledModel()
        inputNode = self._obliqueVolume(card.source_modality)
        return logic, card, inputNode, slicer.util.arrayFromVolume(inputNode).copy()

    @staticmethod
    def _ijkToRas(node):
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        return slicer.util.arrayFromVTKMatrix(matrix)

    def test_TranslateInChildProcess(self):
        """Apply's path: the input to a temporary file, the translation in a PythonSlicer process on the CPU,
        the result next to the input on its exact grid."""
        import numpy as np

        from MedTranslateLib.node_translation import NodeTranslation

        self.delayDisplay("Starting the child-process translation test")
        logic, card, inputNode, inputBefore = self._prepareCase()
        translation = NodeTranslation(inputNode, card.id, name="MedTranslateTest output",
                                      options={"device": "cpu", "batch_size": 4}, python=logic.pythonExecutable())
        stages, deadline = [], time.monotonic() + 300
        while not translation.finished and time.monotonic() < deadline:
            stages += [e.get("stage") for e in translation.poll()]
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertTrue(translation.finished, "the child did not end within 5 minutes")
        self.assertIsNone(translation.error, translation.error)
        outputNode = translation.result_node
        self.assertTrue(np.array_equal(self._ijkToRas(outputNode), self._ijkToRas(inputNode)), "IJKToRAS differs")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(inputNode), inputBefore), "input changed")
        self.assertIn("translating", stages)
        self.assertFalse(translation.folder.exists(), "the temporary folder was left behind")
        self.delayDisplay("Child-process translation test passed")

    def test_TranslateObliqueVolume(self):
        import numpy as np

        self.delayDisplay("Starting the oblique-volume translation test")
        logic, card, inputNode, inputBefore = self._prepareCase()
        matrixBefore = self._ijkToRas(inputNode)
        stages = []

        outputNode = logic.translate(inputNode, card.id, device="cpu", batchSize=4,
                                     progress=lambda p: stages.append(p.stage))

        self.assertIsNotNone(outputNode)
        self.assertNotEqual(outputNode.GetID(), inputNode.GetID())
        self.assertTrue(np.array_equal(self._ijkToRas(outputNode), matrixBefore), "IJKToRAS differs")
        self.assertEqual(outputNode.GetImageData().GetDimensions(), inputNode.GetImageData().GetDimensions())
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(inputNode), inputBefore), "input changed")
        values = slicer.util.arrayFromVolume(outputNode).astype(np.float64)
        self.assertTrue(np.all(np.isfinite(values)))
        self.assertGreater(values.std(), 0.0)
        if card.target_modality == "CT":
            self.assertGreaterEqual(values.min(), -1100.0)
            self.assertLessEqual(values.max(), 3100.0)
        else:
            self.assertLess(np.abs(values).max(), 1e6)
        self.assertIn("translating", stages)
        MedTranslateLogic.showResult(inputNode, outputNode, 0.5)
        self.delayDisplay("Oblique-volume translation test passed")

    def test_RefusesInputAsOutputAndCancels(self):
        import numpy as np

        from MedTranslateLib import TranslationCancelled

        logic, card, inputNode, inputBefore = self._prepareCase()
        with self.assertRaises(ValueError):
            logic.translate(inputNode, card.id, outputNode=inputNode)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        cancel = threading.Event()
        cancel.set()
        with self.assertRaises(TranslationCancelled):
            logic.translate(inputNode, card.id, device="cpu", cancel=cancel)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore, "a cancelled run changed the scene")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(inputNode), inputBefore))
        self.delayDisplay("Refusal and cancellation test passed")
