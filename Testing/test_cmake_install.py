"""What the Extensions Index builds: CMake configure -> build -> install of this extension against a stand-in
Slicer_DIR (Testing/slicer_stand_in: Slicer's extension macros reduced to installing the files they are given),
then the installed tree alone must hold every module the library imports and every file it reads at run time
(the classic "missing Lib file" bug: a .py in the source that CMake does not list works from the checkout and
fails in every installed Slicer). The icon and screenshot the extension's metadata names must exist."""
from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAND_IN = Path(__file__).resolve().parent / "slicer_stand_in"
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cmake")
    for step in (["cmake", "-S", str(REPO), "-B", str(work / "build"), f"-DSlicer_DIR={STAND_IN}"],
                 ["cmake", "--build", str(work / "build")],
                 ["cmake", "--install", str(work / "build"), "--prefix", str(work / "install")]):
        result = subprocess.run(step, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (folder,) = (work / "install").glob("lib/*/qt-scripted-modules")
    return folder


def test_the_installed_library_imports_every_module_of_the_source_from_itself(installed, tmp_path):
    names = ["MedTranslateLib"] + [name for _, name, _ in pkgutil.walk_packages([str(REPO / "MedTranslateLib")],
                                                                                  prefix="MedTranslateLib.")]
    script = ("import importlib, sys\n"
              f"for name in {names!r}:\n"
              "    module = importlib.import_module(name)\n"
              f"    assert module.__file__.startswith({str(installed)!r}), (name, module.__file__)\n"
              "print(len(sys.modules))\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_installed_tree_holds_the_files_read_at_run_time(installed):
    library = installed / "MedTranslateLib"
    for source in sorted((REPO / "MedTranslateLib" / "models").glob("*/*")) + \
            sorted((REPO / "MedTranslateLib" / "samples").glob("*")) + [REPO / "MedTranslateLib" / "catalogue.json"]:
        assert (library / source.relative_to(REPO / "MedTranslateLib")).is_file(), source
    for name in ("MedTranslate.py", "MedTranslateDependencies.py", "Resources/UI/MedTranslate.ui",
                 "Resources/Icons/MedTranslate.png"):
        assert (installed / name).is_file(), name


def test_the_icon_and_screenshots_the_metadata_names_exist():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    urls = re.findall(r'set\(EXTENSION_(?:ICONURL|SCREENSHOTURLS)\s+"([^"]+)"', text)
    assert len(urls) == 2
    for url in urls:
        path = url.split("/main/", 1)[1]  # raw.githubusercontent.com/<owner>/<repo>/main/<path>
        assert (REPO / path).is_file(), url
