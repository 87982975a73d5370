"""Render MedTranslate/Resources/UI/MedTranslate.ui to a PNG for the README, outside Slicer.

Slicer's own widgets cannot exist without Slicer, so they are drawn as their closest Qt relatives:
ctkCollapsibleButton -> QGroupBox, qMRMLNodeComboBox -> QComboBox, ctkSliderWidget -> QSlider. The model list,
device list and card text are the real ones (the card through the module's own `cardHtml`, loaded with
stand-ins for Slicer's Python modules). Needs PySide6 (not a project dependency):

    python -m venv /tmp/qt && /tmp/qt/bin/pip install PySide6-Essentials numpy SimpleITK torch==2.13.0 ...
    QT_QPA_PLATFORM=offscreen PYTHONPATH=. /tmp/qt/bin/python Training/tools/render_panel.py Screenshots/MedTranslate-1.png
"""
from __future__ import annotations

import importlib.util
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UI_FILE = REPO / "MedTranslate" / "Resources" / "UI" / "MedTranslate.ui"
STAND_INS = {"ctkCollapsibleButton": "QGroupBox", "qMRMLNodeComboBox": "QComboBox", "ctkSliderWidget": "QSlider",
             "qMRMLWidget": "QWidget"}


def plain_qt_ui() -> bytes:
    """The .ui with Slicer's widget classes replaced by plain Qt ones (a collapsible button's text -> title)."""
    tree = ElementTree.parse(UI_FILE)
    for widget in tree.iter("widget"):
        cls = widget.get("class")
        if cls in STAND_INS:
            widget.set("class", STAND_INS[cls])
            for prop in widget.findall("property"):
                if cls == "ctkCollapsibleButton" and prop.get("name") == "text":
                    prop.set("name", "title")
                elif cls != "ctkCollapsibleButton" and prop.get("name") not in ("toolTip", "enabled"):
                    widget.remove(prop)
            if cls == "ctkSliderWidget":
                orientation = ElementTree.SubElement(widget, "property", name="orientation")
                ElementTree.SubElement(orientation, "enum").text = "Qt::Horizontal"
    custom = tree.getroot().find("customwidgets")
    if custom is not None:
        tree.getroot().remove(custom)
    return ElementTree.tostring(tree.getroot())


def module_card_html(card) -> str:
    """The module's own `cardHtml`, with stand-ins for the Slicer modules it imports at its top level."""
    class AnyClass:
        def __init__(self, *args, **kwargs) -> None:
            pass

    class Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if name[0].isupper():  # a class: a fresh one per name, so two can be bases of one class
                return type(name, (AnyClass,), {})
            return lambda *a, **k: (a[0] if a and callable(a[0]) else None)

    for name in ("qt", "vtk", "slicer", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
                 "slicer.util", "slicer.i18n"):
        sys.modules.setdefault(name, Anything(name))
    spec = importlib.util.spec_from_file_location("MedTranslateModule", REPO / "MedTranslate" / "MedTranslate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cardHtml(card)


def main(out: Path) -> int:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication

    from MedTranslateLib import list_models
    from MedTranslateLib.device import describe_devices

    app = QApplication.instance() or QApplication([])
    data = QByteArray(plain_qt_ui())  # kept alive: QBuffer does not own it
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()  # must outlive load(): PySide crashes when it is collected mid-call
    panel = loader.load(buffer)
    cards = list_models()
    panel.findChild(object, "inputSelector").addItem("colin27_t1_2mm")
    panel.findChild(object, "modelSelector").addItems([card.id for card in cards])
    panel.findChild(object, "deviceSelector").addItems([label for _, label in describe_devices()])
    panel.findChild(object, "outputSelector").addItem("Create new volume")
    panel.findChild(object, "modelCardBrowser").setHtml(module_card_html(cards[0]))
    panel.findChild(object, "statusLabel").setText("Ready.")
    panel.resize(460, 660)
    app.processEvents()  # settle the layout before grabbing
    panel.grab().save(str(out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "Screenshots" / "MedTranslate-1.png"))
