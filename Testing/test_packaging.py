"""The Slicer extension's packaging: every file listed in CMake, metadata and catalog entry complete, the icon
and .ui sound, and the module file importable on Slicer's Python without pulling torch in at start-up."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "MedTranslateLib"
MODULE = REPO / "MedTranslate"
MODULE_FILE = MODULE / "MedTranslate.py"
UI_FILE = MODULE / "Resources" / "UI" / "MedTranslate.ui"
ICON_FILE = MODULE / "Resources" / "Icons" / "MedTranslate.png"
CATALOG_FILE = REPO / "MedTranslate.json"
SLICER_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"

# Files written by the Slicer-side and headless code that must parse as Python 3.9 (Slicer 5.6's Python).
PYTHON39_FILES = [MODULE_FILE, MODULE / "MedTranslateDependencies.py", REPO / "Training" / "slicer" / "batch_translate.py",
                  LIB / "mrml.py"]
HEAVY_MODULES = ("torch", "SimpleITK", "MedTranslateLib")


# --- a small CMake reader ---------------------------------------------------------------------------------

def _cmake_code(path: Path) -> str:
    """The file without comments (a `#` starting a line or after a space; not the one in a URL)."""
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in path.read_text(encoding="utf-8").splitlines())


def cmake_set(path: Path, variable: str, substitutions: Dict[str, str] = None) -> List[str]:
    """The values of `set(variable ...)` in a CMakeLists.txt, with ${VAR} substituted from `substitutions`."""
    match = re.search(rf"\bset\(\s*{re.escape(variable)}\b(.*?)\)", _cmake_code(path), re.S)
    assert match, f"{path.relative_to(REPO)}: no set({variable} ...)"
    values = [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', match.group(1))]  # "a b" is one
    for name, replacement in (substitutions or {}).items():
        values = [value.replace("${" + name + "}", replacement) for value in values]
    return values


def cmake_call_text(path: Path, command: str) -> str:
    match = re.search(rf"\b{re.escape(command)}\((.*?)\)\s*$", _cmake_code(path), re.S | re.M)
    assert match, f"{path.relative_to(REPO)}: no {command}(...)"
    return match.group(1)


def _files_under(folder: Path) -> Set[str]:
    if not folder.is_dir():
        return set()
    return {p.relative_to(LIB).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".") and p.suffix != ".pyc"}


# --- MedTranslateLib/CMakeLists.txt -----------------------------------------------------------------------

def test_every_library_python_file_is_listed() -> None:
    listed = set(cmake_set(LIB / "CMakeLists.txt", "LIB_SCRIPTS"))
    present = {p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py") if "__pycache__" not in p.parts}
    assert not sorted(present - listed), f"add to LIB_SCRIPTS in MedTranslateLib/CMakeLists.txt: {sorted(present - listed)}"
    assert not sorted(listed - present), f"listed but missing: {sorted(listed - present)}"


def test_every_bundled_model_and_sample_file_is_listed() -> None:
    listed = set(cmake_set(LIB / "CMakeLists.txt", "LIB_RESOURCES"))
    data = {p.name for p in LIB.iterdir()  # the catalogue
            if p.is_file() and p.suffix not in (".py", ".pyc") and p.name != "CMakeLists.txt"}
    present = _files_under(LIB / "models") | _files_under(LIB / "samples") | data
    present = {p for p in present if not p.endswith(".py")}  # .py files are scripts
    assert not sorted(present - listed), f"add to LIB_RESOURCES in MedTranslateLib/CMakeLists.txt: {sorted(present - listed)}"
    assert not sorted(listed - present), f"listed but missing: {sorted(listed - present)}"


def test_library_is_installed_as_a_package_beside_the_module() -> None:
    call = cmake_call_text(LIB / "CMakeLists.txt", "ctkMacroCompilePythonScript")
    assert "SCRIPTS ${LIB_SCRIPTS}" in call and "RESOURCES ${LIB_RESOURCES}" in call
    assert re.search(r"DESTINATION_DIR \$\{CMAKE_BINARY_DIR\}/\$\{Slicer_QTSCRIPTEDMODULES_LIB_DIR\}/(\$\{LIB_NAME\}|MedTranslateLib)(\s|$)", call)
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in call
    # NO_INSTALL_SUBDIR would install the package's files loose in qt-scripted-modules/
    assert "NO_INSTALL_SUBDIR" not in call


# --- MedTranslate/CMakeLists.txt --------------------------------------------------------------------------

def test_every_module_script_and_resource_is_listed() -> None:
    cmake = MODULE / "CMakeLists.txt"
    names = {"MODULE_NAME": cmake_set(cmake, "MODULE_NAME")[0]}
    assert names["MODULE_NAME"] == "MedTranslate"
    scripts = set(cmake_set(cmake, "MODULE_PYTHON_SCRIPTS", names))
    resources = set(cmake_set(cmake, "MODULE_PYTHON_RESOURCES", names))
    present_scripts = {p.name for p in MODULE.glob("*.py")}
    present_resources = {p.relative_to(MODULE).as_posix() for p in (MODULE / "Resources").rglob("*")
                         if p.is_file() and not p.name.startswith(".")}
    assert scripts == present_scripts, f"MODULE_PYTHON_SCRIPTS {sorted(scripts)} vs files {sorted(present_scripts)}"
    assert resources == present_resources, f"MODULE_PYTHON_RESOURCES {sorted(resources)} vs files {sorted(present_resources)}"
    assert {"MedTranslate.py", "MedTranslateDependencies.py"} <= scripts
    assert {"Resources/Icons/MedTranslate.png", "Resources/UI/MedTranslate.ui"} <= resources
    call = cmake_call_text(cmake, "slicerMacroBuildScriptedModule")
    for part in ("NAME ${MODULE_NAME}", "SCRIPTS ${MODULE_PYTHON_SCRIPTS}", "RESOURCES ${MODULE_PYTHON_RESOURCES}",
                 "WITH_GENERIC_TESTS"):
        assert part in call
    code = _cmake_code(cmake)
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\).*endif\(\)", code, re.S)


# --- root CMakeLists.txt and the catalog entry ------------------------------------------------------------

METADATA = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
            "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")


def test_root_cmakelists_is_a_slicer_extension() -> None:
    root = REPO / "CMakeLists.txt"
    code = _cmake_code(root)
    assert re.search(r"cmake_minimum_required\(VERSION [0-9.]+", code)
    assert re.search(r"project\(MedTranslate\)", code)
    for variable in METADATA:
        values = cmake_set(root, variable)
        assert values and values[0], f"{variable} is empty"
    assert cmake_set(root, "EXTENSION_DEPENDS") == ["PyTorch"]
    assert cmake_set(root, "EXTENSION_CATEGORY")[0] == "Image Synthesis"  # as the other synthesis extensions
    for url_variable in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert all(url.startswith("https://") for url in cmake_set(root, url_variable)), url_variable
    icon_url = cmake_set(root, "EXTENSION_ICONURL")[0]
    assert icon_url.endswith("MedTranslate/Resources/Icons/MedTranslate.png")
    order = [m.start() for m in (re.search(p, code) for p in (
        r"find_package\(Slicer REQUIRED\)", r"include\(\$\{Slicer_USE_FILE\}\)", r"add_subdirectory\(MedTranslate\)",
        r"add_subdirectory\(MedTranslateLib\)", r"include\(\$\{Slicer_EXTENSION_GENERATE_CONFIG\}\)",
        r"include\(\$\{Slicer_EXTENSION_CPACK\}\)")) if m]
    assert len(order) == 6 and order == sorted(order)


def test_catalog_entry_has_the_required_keys() -> None:
    entry = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    assert entry["$schema"].rstrip("#") == SLICER_SCHEMA
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["build_subdirectory"] == "."
    assert entry["category"] == cmake_set(REPO / "CMakeLists.txt", "EXTENSION_CATEGORY")[0]
    assert entry["scm_revision"] == "main"
    assert entry["scm_url"].startswith("https://")
    assert entry["tier"] == 1
    # the schema allows no other keys: description, icon and so on live in CMakeLists.txt
    assert set(entry) <= {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision",
                          "scm_url", "tier"}
    assert not (REPO / "MedTranslate.s4ext").exists(), "the .s4ext format is obsolete; MedTranslate.json replaces it"


def test_icon_is_128_by_128() -> None:
    sitk = pytest.importorskip("SimpleITK")
    icon = sitk.ReadImage(str(ICON_FILE))
    assert icon.GetSize() == (128, 128)
    assert icon.GetNumberOfComponentsPerPixel() in (3, 4)
    values = sitk.GetArrayViewFromImage(icon)
    assert values.std() > 10  # a drawing, not a blank square


# --- the .ui file and the module's Python -----------------------------------------------------------------

def _ui_widgets() -> Dict[str, ElementTree.Element]:
    tree = ElementTree.parse(UI_FILE)  # raises on malformed XML
    return {w.get("name"): w for w in tree.iter("widget")}


def _parameter_fields() -> Dict[str, str]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "MedTranslateParameterNode":
            return {item.target.id: ast.unparse(item.annotation) for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise AssertionError("MedTranslateParameterNode not found")


def test_every_widget_the_code_uses_is_in_the_ui() -> None:
    widgets = _ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert used, "the module uses no self.ui widgets?"
    assert not sorted(used - set(widgets)), f"missing from MedTranslate.ui: {sorted(used - set(widgets))}"


def test_ui_parameter_bindings_match_the_parameter_node() -> None:
    widgets = _ui_widgets()
    fields = _parameter_fields()
    expected = {"inputVolume", "outputVolume", "modelId", "device", "batchSize", "halfPrecision", "testTimeFlips",
                "contextSlices"}
    assert expected <= set(fields)
    assert "WithinRange(1, 512)" in fields["batchSize"]  # a Minimum alone lets the spin box reach 2^31-1
    bound: Dict[str, str] = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    assert set(bound) <= set(fields), f"bound to unknown parameters: {sorted(set(bound) - set(fields))}"
    # the widget classes the parameter-node wrapper can bind to each type
    assert bound["inputVolume"] == bound["outputVolume"] == "qMRMLNodeComboBox"
    assert bound["batchSize"] == "QSpinBox" and bound["contextSlices"] == "QSpinBox"
    assert bound["halfPrecision"] == bound["testTimeFlips"] == "QCheckBox"
    if "outputOpacity" in bound:
        assert bound["outputOpacity"] == "ctkSliderWidget" and "WithinRange" in fields["outputOpacity"]
    # the output selector offers "Create new volume"; the card is shown read-only
    output = widgets["outputSelector"]
    props = {p.get("name"): p for p in output.findall("property")}
    assert props["addEnabled"].find("bool").text == "true" and props["noneEnabled"].find("bool").text == "true"
    assert "new" in props["noneDisplay"].find("string").text.lower()
    assert widgets["modelCardBrowser"].get("class") == "QTextBrowser"
    sections = {name for name, w in widgets.items() if w.get("class") == "ctkCollapsibleButton"}
    assert {"inputsCollapsibleButton", "advancedCollapsibleButton", "outputsCollapsibleButton"} <= sections


@pytest.mark.parametrize("path", PYTHON39_FILES, ids=lambda p: p.name)
def test_slicer_side_code_parses_as_python39(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
    if path == MODULE_FILE:  # no `from __future__ import annotations` there: annotations are evaluated on 3.9
        for node in ast.walk(tree):
            annotation = getattr(node, "annotation", None) or getattr(node, "returns", None)
            if annotation is not None:
                for inner in ast.walk(annotation):
                    assert not (isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.BitOr)), \
                        f"line {inner.lineno}: `X | Y` annotations fail on Python 3.9; use Optional/Union"


@pytest.mark.parametrize("path", [MODULE_FILE, MODULE / "MedTranslateDependencies.py"], ids=lambda p: p.name)
def test_module_files_import_nothing_heavy_at_top_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            names = []
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.module:
                names = [inner.module]
            for name in names:
                assert name.split(".")[0] not in HEAVY_MODULES, f"line {inner.lineno}: top-level import of {name}"


# Stand-ins for Slicer's Python modules, enough to execute the module file's top level outside Slicer.
_STUB_IMPORT = textwrap.dedent('''
    import importlib.util, json, sys, types

    def module(name, **attributes):
        m = types.ModuleType(name)
        m.__dict__.update(attributes)
        sys.modules[name] = m
        return m

    class Base:
        def __init__(self, *args, **kwargs):
            self.parent = args[0] if args else None

    class Validator:
        def __init__(self, *args):
            self.args = args

    qt = module("qt")
    vtk = module("vtk")
    slicer = module("slicer", vtkMRMLScalarVolumeNode=type("vtkMRMLScalarVolumeNode", (), {}))
    slicer.ScriptedLoadableModule = module("slicer.ScriptedLoadableModule",
        **{name: type(name, (Base,), {}) for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic",
                                                     "ScriptedLoadableModuleTest", "ScriptedLoadableModuleWidget")})
    slicer.parameterNodeWrapper = module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
        Minimum=Validator, WithinRange=Validator)
    slicer.util = module("slicer.util", VTKObservationMixin=type("VTKObservationMixin", (), {}))
    slicer.i18n = module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)

    def load(path, name):
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        return loaded
''')


def _run_with_stubs(body: str) -> dict:
    script = _STUB_IMPORT + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], cwd=str(REPO), capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{REPO}{__import__('os').pathsep}{REPO / 'Testing'}",
                               "PATH": __import__("os").environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_module_loads_no_torch_and_renders_the_card() -> None:
    """Execute the module file's top level (Slicer start-up) with stand-in Slicer modules: no torch, no
    SimpleITK, no MedTranslateLib get imported; then the card view shows what a user must read."""
    result = _run_with_stubs(f'''
        module_file = load({str(MODULE_FILE)!r}, "MedTranslate")
        dependencies = load({str(MODULE / "MedTranslateDependencies.py")!r}, "MedTranslateDependencies")
        heavy = sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules)
        classes = [name for name in ("MedTranslate", "MedTranslateParameterNode", "MedTranslateWidget",
                                     "MedTranslateLogic", "MedTranslateTest") if hasattr(module_file, name)]

        from MedTranslateLib.card import ModelCard
        from tiny_model import card_fields
        card = ModelCard.from_dict(dict(card_fields(
            description="A tiny test model.", warnings=["Not for diagnosis."],
            training={{"recipe": "unet-l2", "data": "SPM avg152 T1/T2 pair"}},
            metrics={{"held_out": "slices 40..49", "model": {{"mae": 0.071, "psnr": 24.5, "ssim": 0.81}},
                      "baseline_identity": {{"mae": 0.2, "psnr": 15.0, "ssim": 0.5}}}}),
            weights_sha256="0" * 64))
        print(json.dumps({{"heavy": heavy, "classes": classes, "html": module_file.cardHtml(card),
                           "missing": dependencies.missingPackages(), "pins": [r for r, _ in dependencies.REQUIREMENTS]}}))
    ''')
    assert result["heavy"] == [], f"imported at module import time: {result['heavy']}"
    assert result["classes"] == ["MedTranslate", "MedTranslateParameterNode", "MedTranslateWidget",
                                 "MedTranslateLogic", "MedTranslateTest"]
    html = result["html"]
    for text in ("tiny-test-model", "MR-T1 \u2192 MR-T2", "unet", "SPM avg152 T1/T2 pair", "Apache-2.0", "tests only",
                 "Not for diagnosis.", "baseline: identity", "0.071", "24.5", "slices 40..49"):
        assert text in html, f"card view lacks {text!r}"
    assert html.index("<b>model</b>") < html.index("baseline: identity")  # the model's row comes first
    assert result["missing"] == []  # this venv has every dependency
    assert all(re.match(r"^[A-Za-z0-9_.-]+(==|>=)[0-9.]+$", pin) for pin in result["pins"])


def test_the_module_loads_in_real_slicer_python() -> None:
    """Only where Slicer's Qt bindings exist (inside Slicer's Python); skipped with slicer-core."""
    pytest.importorskip("qt", reason="needs Slicer's PythonQt (run the module's own test inside Slicer)")
    pytest.importorskip("slicer.ScriptedLoadableModule", reason="needs Slicer's application Python")
    import importlib.util

    spec = importlib.util.spec_from_file_location("MedTranslate", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "MedTranslateWidget")


def test_the_licence_the_index_asks_for_is_at_the_root_and_matches_pyproject():
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_every_url_names_the_one_repository_set_in_cmake():
    """The repository URL is set once, as EXTENSION_HOMEPAGE in CMakeLists.txt; the icon and screenshot URLs,
    the Extensions Index entry, the module's help link and the model catalogue must name the same repository."""
    import json

    homepage = cmake_set(REPO / "CMakeLists.txt", "EXTENSION_HOMEPAGE")[0]
    repository = homepage.split("#")[0].rstrip("/")
    owner_and_name = repository.split("github.com/", 1)[1]
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmake_set(REPO / "CMakeLists.txt", variable):
            assert f"raw.githubusercontent.com/{owner_and_name}/" in url, url
    assert json.loads((REPO / "MedTranslate.json").read_text())["scm_url"] == repository + ".git"
    assert f'HOMEPAGE = "{repository}"' in MODULE_FILE.read_text(encoding="utf-8")
    catalogue = json.loads((REPO / "MedTranslateLib" / "catalogue.json").read_text())
    assert catalogue["base_url"].startswith(repository + "/releases/download/")
