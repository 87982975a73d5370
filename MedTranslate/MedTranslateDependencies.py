"""Installs what MedTranslateLib needs into Slicer's Python, on first use and only after asking.

PyTorch comes through the PyTorch extension (PyTorchUtils picks the build that matches the GPU driver);
the other packages come from PyPI with slicer.util.pip_install (minimum versions). SimpleITK, numpy and scipy ship
with Slicer. The library itself knows nothing of this: it simply imports its dependencies.

Slicer loads every .py file in a module folder as a module, so this file also defines a hidden module
class of its own name; it has no GUI.
"""
import importlib
import importlib.util
import logging
import sys
from typing import Dict, List, Optional, Tuple

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

# (pip requirement, import name): minimum versions, not exact pins, so that pip picks the release with wheels
# for whichever Python the Slicer has (3.9 to 3.12 today, newer later); installed only when the import is missing.
REQUIREMENTS: Tuple[Tuple[str, str], ...] = (
    ("safetensors>=0.4.5", "safetensors"),
    ("scikit-image>=0.21", "skimage"),
    ("tqdm>=4.66", "tqdm"),
    ("scipy>=1.8", "scipy"),  # ships with Slicer; listed so a stripped-down Python is caught too
)
TORCH_REQUIREMENT = ">=1.13"
TORCH_MINIMUM = (1, 13)
_restartRequired = False  # set once an upgrade of an already-imported package needs a restart; never cleared


class MedTranslateDependencies(ScriptedLoadableModule):
    """Hidden helper module: keeps Slicer's module scanner content with this file."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedTranslate dependencies"
        self.parent.categories = ["Image Synthesis"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedTranslate contributors (SlicerMedTranslate project)"]
        self.parent.helpText = "Installs the Python packages the MedTranslate module needs."
        self.parent.acknowledgementText = ""
        self.parent.hidden = True


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _torchTooOld() -> bool:
    """True when the installed torch is older than TORCH_MINIMUM (read from its metadata, without importing)."""
    import importlib.metadata

    try:
        parts = importlib.metadata.version("torch").split("+")[0].split(".")[:2]
        return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in parts) < TORCH_MINIMUM
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def missingPackages() -> List[str]:
    """Import names of the missing dependencies ("torch" first, also when older than TORCH_MINIMUM); empty
    when everything is there."""
    missing = [] if _importable("torch") and not _torchTooOld() else ["torch"]
    return missing + [module for _, module in REQUIREMENTS if not _importable(module)]


def _testing() -> bool:
    app = getattr(slicer, "app", None)
    try:
        return bool(app is not None and app.testingEnabled())
    except AttributeError:
        return False


def _installedVersions() -> Dict[str, str]:
    import importlib.metadata

    versions: Dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = (distribution.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            versions[name] = distribution.version
    return versions


def _installTorch(askConfirmation: bool) -> Optional[str]:
    """Install PyTorch through the PyTorch extension; its version, or None when not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            "MedTranslate needs PyTorch, which it installs through the 'PyTorch' extension. Install that "
            "extension with the Extensions Manager, restart Slicer, and try again.")
        return None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                        torchVersionRequirement=TORCH_REQUIREMENT)
    return None if torch is None else f"torch {torch.__version__}"


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Make sure torch and the required packages import; ask before installing anything. True when ready.

    In Slicer's testing mode nothing is installed (False when something is missing). A message says what was
    installed and whether Slicer must be restarted (only when an already-imported package was upgraded on the
    way); until then every later call says so again and returns False.
    """
    global _restartRequired
    if _restartRequired:
        slicer.util.errorDisplay("MedTranslate: restart Slicer first; a package it had loaded was upgraded, and "
                                 "running on the old one in memory would mix versions.")
        return False
    if not missingPackages():
        return True
    if _testing():  # Slicer's testing mode never installs anything: the test environment must provide it
        logging.error("MedTranslate: missing " + ", ".join(missingPackages()) + " (not installed in testing mode)")
        return False
    ask = askConfirmation
    before = _installedVersions()
    installed: List[str] = []

    if not _importable("torch") or _torchTooOld():  # PyTorchUtils checks the requirement and upgrades
        version = _installTorch(ask)
        if version is None:
            logging.warning("MedTranslate: PyTorch was not installed")
            return False
        installed.append(version)

    missing = [requirement for requirement, module in REQUIREMENTS if not _importable(module)]
    if missing:
        if ask and not slicer.util.confirmOkCancelDisplay(
                "MedTranslate needs these Python packages, which are not installed in Slicer yet:\n\n  "
                + "\n  ".join(missing) + "\n\nInstall them now from PyPI? This downloads a few tens of MB.",
                windowTitle="MedTranslate: install Python packages"):
            logging.warning("MedTranslate: the user declined installing " + ", ".join(missing))
            return False
        with slicer.util.WaitCursor():
            slicer.util.pip_install(" ".join(missing))
        importlib.invalidate_caches()
        still = [module for requirement, module in REQUIREMENTS if requirement in missing and not _importable(module)]
        if still:
            slicer.util.errorDisplay("MedTranslate: installing " + ", ".join(still) + " failed; see the Python "
                                     "console for pip's output.")
            return False
        installed += missing

    after = _installedVersions()
    changed = sorted(name for name, version in before.items() if after.get(name, version) != version)
    restart = any(name.replace("-", "_") in sys.modules or name in sys.modules for name in changed)
    message = "MedTranslate installed: " + ", ".join(installed) + "."
    if changed:
        message += " Upgraded on the way: " + ", ".join(f"{n} {before[n]} -> {after[n]}" for n in changed) + "."
    message += (" Restart Slicer before translating (an upgraded package was already loaded)." if restart
                else " No restart is needed.")
    logging.info(message)
    if ask:
        slicer.util.infoDisplay(message, windowTitle="MedTranslate")
    _restartRequired = restart
    return not restart
