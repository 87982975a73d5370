"""Translate every volume file in a folder inside 3D Slicer, without its main window:

    Slicer --no-main-window --python-script Training/slicer/batch_translate.py -- --model ID IN_DIR OUT_DIR

The cases are the library's folder batch (MedTranslateLib.batch, as `medtranslate translate IN_DIR OUT_DIR`):
every volume file under IN_DIR and every DICOM folder (saved as .nii.gz), under the same relative names in
OUT_DIR; an output already complete is skipped, so a re-run resumes. Each file is loaded with Slicer's own
reader (slicer.util.loadVolume; a DICOM folder with the library's checked series reader), translated with
MedTranslateLib.mrml.translate_node and saved with slicer.util.saveNode. One line per file on stdout (`OK`,
`SKIPPED` or `FAILED ...: reason`); Slicer exits with status 0 when every file was translated, 1 when any
failed, 2 for bad arguments or an unknown model. A file that fails leaves nothing in OUT_DIR: it is saved into
a staging folder there and moved into place only when complete.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence


Loader = Callable[[Path], Any]             # path -> volume node in a scene
Saver = Callable[[Any, Path], bool]        # (node, path) -> success


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Arguments after the script name; a leading `--` (Slicer's end of its own options) is dropped."""
    argv = list(argv)
    while argv and argv[0] == "--":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="batch_translate.py",
        description="Translate every volume file in IN_DIR with a MedTranslate model, inside Slicer.")
    parser.add_argument("--model", required=True, help="model id or package path (see `medtranslate models`)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per batch (default 8)")
    parser.add_argument("--tta", action="store_true", help="average with left-right flipped slices")
    parser.add_argument("in_dir", type=Path, help="folder of input volumes (.nii.gz .nii .nrrd .nhdr .mha .mhd)")
    parser.add_argument("out_dir", type=Path, help="folder for the translated volumes (created if missing)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def check_folders(in_dir: Path, out_dir: Path) -> Optional[str]:
    """A one-line problem with the folders, or None."""
    if not in_dir.is_dir():
        return f"{in_dir}: no such folder"
    if out_dir.exists() and not out_dir.is_dir():
        return f"{out_dir}: is a file, not a folder"
    if out_dir.exists() and out_dir.resolve() == in_dir.resolve():
        return f"{out_dir}: output folder is the input folder; outputs would overwrite the inputs"
    return None


def translate_folder(in_dir: Path, out_dir: Path, model: Any, load: Loader, save: Saver,
                     log: Callable[[str], None] = print, **options: Any) -> int:
    """Translate the volumes of `in_dir` into `out_dir`; returns the exit status (0 all done, 1 any failed).

    The cases are the library's (MedTranslateLib.batch, as `medtranslate translate IN_DIR OUT_DIR`): every
    volume file under `in_dir` and every DICOM folder (saved as .nii.gz), outputs with the inputs' relative
    names; an output already complete is skipped (a re-run resumes); under torchrun's environment this process
    takes its shard. `load` and `save` are Slicer's reader and writer (slicer.util.loadVolume / saveNode in
    Slicer); `options` go to translate_node (device, batch_size, tta, ...). Nodes are removed after each file.
    """
    from MedTranslateLib.batch import collect_cases, is_complete, shard, torchrun_world
    from MedTranslateLib.errors import InputError
    from MedTranslateLib.mrml import translate_node

    try:
        cases = collect_cases([in_dir], out_dir)
    except InputError as error:
        log(str(error))
        return 1
    rank, world, _ = torchrun_world()
    failures = 0
    for case in shard(cases, rank, world):
        if is_complete(case):
            log(f"SKIPPED {case.source} -> {case.output} (already complete)")
            continue
        case.output.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        nodes: List[Any] = []
        try:
            input_node = load(case.source)
            nodes.append(input_node)
            output_node = translate_node(input_node, model, name=f"{input_node.GetName()} translated", **options)
            nodes.append(output_node)
            _save_atomically(output_node, case.output, save)
            log(f"OK {case.source} -> {case.output} ({time.monotonic() - start:.1f} s)")
        except Exception as error:  # one bad file must not stop the batch
            failures += 1
            log(f"FAILED {case.source}: {_one_line(error)}")
        finally:
            for node in nodes:
                _remove_node(node)
    return 1 if failures else 0


def _save_atomically(node: Any, target: Path, save: Saver) -> None:
    """Save into a staging folder beside `target`, then move the file(s) into place (header last)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        if not save(node, staging / target.name) or not (staging / target.name).is_file():
            raise RuntimeError(f"saving {target.name} failed")
        for file in sorted(staging.iterdir(), key=lambda p: p.name == target.name):
            os.replace(file, target.parent / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_node(node: Any) -> None:
    scene = node.GetScene()
    if scene is None:
        return
    related = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    related += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    scene.RemoveNode(node)
    for other in related:
        if other is not None and other.GetScene() is not None:
            scene.RemoveNode(other)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# --- Slicer's reader, writer and exit -----------------------------------------------------------------------

def slicer_load(path: Path) -> Any:
    """A file through Slicer's reader; a DICOM folder through the library's checked series reader."""
    import slicer

    if path.is_dir():
        from MedTranslateLib.mrml import node_from_image
        from MedTranslateLib.volume import read_volume

        return node_from_image(read_volume(path), path.name, slicer.mrmlScene)
    return slicer.util.loadVolume(str(path), {"show": False, "singleFile": True})


def slicer_save(node: Any, path: Path) -> bool:
    import slicer

    return bool(slicer.util.saveNode(node, str(path), {"useCompression": 1}))


def _import_library() -> Any:
    """MedTranslateLib: installed with the extension, or from this source checkout."""
    try:
        import MedTranslateLib
    except ImportError:
        here = globals().get("__file__")
        if not here:
            raise
        sys.path.insert(0, str(Path(here).resolve().parents[2]))
        import MedTranslateLib
    return MedTranslateLib


def run(argv: Sequence[str], log: Callable[[str], None] = print,
        load: Loader = slicer_load, save: Saver = slicer_save) -> int:
    """Parse, load the model once, translate the folder; returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed the usage and the problem
        return 0 if exit_request.code == 0 else 2
    problem = check_folders(args.in_dir, args.out_dir)
    if problem:
        log(f"error: {problem}")
        return 2
    library = _import_library()
    try:
        model = library.load_model(args.model)
    except library.MedTranslateError as error:
        log(f"error: {_one_line(error)}")
        return error.exit_code
    log(f"model {model.card.id}: {model.card.source_modality} -> {model.card.target_modality}")
    return translate_folder(args.in_dir, args.out_dir, model, load, save, log,
                            device=args.device, batch_size=args.batch_size, tta=args.tta)


def main() -> None:
    import slicer

    status = 1
    try:
        status = run(sys.argv[1:])
    except Exception as error:  # keep the one-line contract even for the unexpected
        print(f"error: {_one_line(error)}")
    finally:
        sys.stdout.flush()
        slicer.util.exit(status)


if __name__ == "__main__":
    main()
