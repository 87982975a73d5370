"""The `medtranslate` command: translate, models, info, evaluate, train, export, demo.

Errors print one line on stderr: exit status 2 for bad input, 1 for failures; `--debug` shows tracebacks.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import __version__, progress_jsonl
from .card import printable
from .errors import InputError, MedTranslateError
from .library_messages import captured_library_messages
from .signals import Terminated, terminate_raises

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtranslate", description="Translate medical volumes between modalities.")
    parser.add_argument("--version", action="version", version=f"medtranslate {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    translate = commands.add_parser("translate", help="translate a volume (file or DICOM folder), or many into a "
                                                      "folder")
    translate.add_argument("input", nargs="+", help="input volume: .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd or a DICOM "
                                                    "folder; several, or folders of them, for a batch")
    translate.add_argument("output", help="output file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd), or a folder for a "
                                          "batch (outputs keep the inputs' names and formats; DICOM becomes .nii.gz)")
    translate.add_argument("--model", required=True, help="model id (see `medtranslate models`) or package path")
    translate.add_argument("--series", metavar="UID", help="the series to translate when a DICOM folder holds several")
    _add_run_options(translate)

    models = commands.add_parser("models", help="list the model packages found")
    models.add_argument("--json", action="store_true", help="print the cards as a JSON list")
    models.add_argument("--available", action="store_true",
                        help="list the catalogue's packages that `medtranslate pull` can download")
    models.add_argument("--catalogue", type=Path, default=None,
                        help="a catalogue JSON to list with --available (default: the library's)")

    pull = commands.add_parser("pull", help="download a catalogue package into the user's model folder, verified")
    pull.add_argument("model", help="model id (see `medtranslate models --available`)")
    pull.add_argument("--base-url", default=None,
                      help="where the packages are (default: $MEDTRANSLATE_MODEL_URL, else the catalogue's)")
    pull.add_argument("--catalogue", type=Path, default=None,
                      help="a catalogue JSON, e.g. a mirror's (default: the library's)")
    pull.add_argument("--progress", choices=["bar", "jsonl"], default="bar",
                      help="bar: a progress bar on terminals; jsonl: one JSON event per line on stdout")

    info = commands.add_parser("info", help="show a model's card")
    info.add_argument("model", help="model id or package path")

    evaluate = commands.add_parser("evaluate", help="MAE, MSE, PSNR, SSIM of a prediction against a reference")
    evaluate.add_argument("prediction")
    evaluate.add_argument("reference")
    evaluate.add_argument("--mask", help="mask volume on the same grid (nonzero = inside); default: head mask")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    train = commands.add_parser("train", help="train a model from a config (TOML or YAML); torchrun for multi-GPU")
    train.add_argument("config", help="training config: .toml, .yaml/.yml or .json (see Training/configs/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="override a config value, e.g. --set optim.lr=1e-4 (repeatable; paths relative to here)")
    train.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                       help="continue from CHECKPOINT, or from the newest one in train.out_dir")

    export = commands.add_parser("export", help="write a model package from a training checkpoint")
    export.add_argument("checkpoint", help="a checkpoint written by `medtranslate train` (.pt)")
    export.add_argument("outdir", help="package folder to write")
    export.add_argument("--id", default=None, help="model id (default: the config's model.id)")
    export.add_argument("--reverse", action="store_true",
                        help="CycleGAN: export the inverse generator (target -> source) as the model")
    export.add_argument("--no-inverse", dest="with_inverse", action="store_false",
                        help="CycleGAN: leave the other direction's generator out of the package")
    export.add_argument("--redact-data", nargs="?", const="<redacted>", default=None, metavar="TEXT",
                        help="name the training data in the card by TEXT (default '<redacted>') instead of its "
                             "folders (relative to the config file, or their own names)")

    demo = commands.add_parser("demo", help="translate the bundled sample with the bundled model")
    demo.add_argument("--out", default="demo_output", help="folder for the result and its preview")
    _add_run_options(demo)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per batch (default 8)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="autocast precision (auto: fp16 on CUDA, bf16 on CPUs with native bf16, fp32 "
                             "elsewhere; a card may require fp32)")
    parser.add_argument("--tta", action="store_true", help="average with the left-right mirrored prediction")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (falls back if unavailable)")
    parser.add_argument("--progress", choices=["bar", "jsonl"], default="bar",
                        help="bar: a progress bar on terminals; jsonl: one JSON event per line on stdout, for a "
                             "parent process (see README)")


def _run_options(args: argparse.Namespace) -> Dict[str, object]:
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {args.batch_size}")
    return {"device": args.device, "batch_size": args.batch_size, "precision": args.precision,
            "tta": args.tta, "compile": args.compile}


def _progress_bar():
    """A tqdm bar (shown on terminals only) driven by the library's Progress reports."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="slice", disable=None, file=sys.stderr, leave=False)

    def update(progress) -> None:
        bar.set_description(progress.stage)
        bar.total = progress.total
        bar.n = progress.done
        bar.refresh()

    return bar, update


def cmd_translate(args: argparse.Namespace) -> int:
    from .batch import is_batch
    from .translate import translate_file

    if is_batch(args.input, args.output):
        return _translate_batch(args)
    options = _run_options(args)
    if args.progress == "jsonl":
        translate_file(args.input[0], args.output, args.model, series=args.series,
                       progress=progress_jsonl.report_progress, **options)
        progress_jsonl.emit("done", output=args.output)
        return 0
    bar, update = _progress_bar()
    with bar:
        translate_file(args.input[0], args.output, args.model, series=args.series, progress=update, **options)
    print(f"wrote {args.output}")
    return 0


def _translate_batch(args: argparse.Namespace) -> int:
    """Many inputs into a folder: resumable, past bad files, sharded over torchrun's processes (batch.py)."""
    from tqdm import tqdm

    from .batch import collect_cases, gather_summaries, rank_device, shard, torchrun_world, translate_cases
    from .registry import load_model

    if args.series:
        raise InputError("--series picks a series of one DICOM folder; it does not apply to a batch")
    rank, world, local_rank = torchrun_world()
    options = _run_options(args)
    options["device"] = rank_device(str(options["device"]), local_rank, world)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file; a batch writes into a folder")
    cases = collect_cases([Path(name) for name in args.input], out_dir)
    model = load_model(args.model)
    mine = shard(cases, rank, world)
    with tqdm(total=len(mine), unit="file", disable=True if args.progress == "jsonl" else None, file=sys.stderr,
              leave=False) as bar:
        def on_file(done: int, total: int, name: str) -> None:
            bar.update(1)
            if args.progress == "jsonl":
                progress_jsonl.emit("progress", stage="files", done=done, total=total)
        summary = translate_cases(mine, model, on_file=on_file, **options)
    for name, reason in summary.failed:
        print(printable(f"medtranslate: failed: {reason}"), file=sys.stderr)
    everything = gather_summaries(summary, world)
    if rank == 0 and args.progress == "jsonl":
        progress_jsonl.emit("done", translated=len(everything.translated), skipped=len(everything.skipped),
                            failed=len(everything.failed))
    elif rank == 0:
        processes = f" by {world} processes" if world > 1 else ""
        print(f"{everything.line()} ({len(cases)} inputs{processes}; outputs in {out_dir})")
    return 1 if everything.failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from .registry import discover

    found, broken = discover()
    if args.available:
        return _available(found, args.json, args.catalogue)
    cards = [card for _, (card, _) in sorted(found.items())]
    for path, reason in broken:  # listed, never in the way of the others
        print(printable(f"broken model package {path}: {reason}"), file=sys.stderr)
    if args.json:
        print(json.dumps([card.to_dict() for card in cards], indent=2, allow_nan=False))
        return 0
    if not cards:
        print("no model packages found")
    for card in cards:
        print(card.summary())
    return 0


def _available(found: Dict[str, object], as_json: bool, catalogue: Optional[Path]) -> int:
    from .download import catalogue_base_url, read_catalogue

    entries = read_catalogue(catalogue)
    if as_json:
        print(json.dumps([dict(vars(entry), installed=entry.id in found) for entry in entries], indent=2))
        return 0
    print(f"from {catalogue_base_url(catalogue)}:")
    for entry in entries:
        mark = "installed" if entry.id in found else f"{entry.size / 2**20:.1f} MiB"
        print(printable(f"{entry.id} {entry.version}  ({mark})  {entry.summary}"))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .download import pull

    if args.progress == "jsonl":
        path = pull(args.model, base_url=args.base_url, catalogue=args.catalogue,
                    progress=progress_jsonl.download_reporter())
        progress_jsonl.emit("done", output=str(path))
        return 0
    with tqdm(total=0, unit="B", unit_scale=True, disable=None, file=sys.stderr, leave=False) as bar:
        def update(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()
        path = pull(args.model, base_url=args.base_url, catalogue=args.catalogue, progress=update)
    print(f"installed {path} (SHA-256 verified)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .package import read_card
    from .registry import resolve

    print(read_card(resolve(args.model)).to_json())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from .metrics import compare
    from .volume import describe_grid, read_mask, read_volume, same_grid

    prediction, reference = read_volume(args.prediction), read_volume(args.reference)
    if not same_grid(prediction, reference, tolerance=1e-3):
        raise InputError(f"{args.prediction} ({describe_grid(prediction)}) and {args.reference} "
                         f"({describe_grid(reference)}) are not on the same grid")
    mask = None
    if args.mask:
        mask_image = read_mask(args.mask)
        if not same_grid(mask_image, reference, tolerance=1e-3):
            raise InputError(f"{args.mask}: mask is not on the reference's grid ({describe_grid(reference)})")
        mask = sitk.GetArrayViewFromImage(mask_image) != 0
    reference_array = sitk.GetArrayViewFromImage(reference)
    try:
        metrics: Dict[str, object] = dict(compare(sitk.GetArrayViewFromImage(prediction), reference_array, mask))
    except ValueError as error:
        raise InputError(str(error)) from None
    metrics["units"] = "HU" if float(reference_array.min()) < -500 else "image units"
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"MAE  {metrics['mae']:.4g} {metrics['units']}\nMSE  {metrics['mse']:.4g}\n"
              f"PSNR {metrics['psnr']:.2f} dB\nSSIM {metrics['ssim']:.4f}\n(inside {metrics['voxels']} voxels)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.progress == "jsonl":
        result = run_demo(Path(args.out), progress=progress_jsonl.report_progress, **_run_options(args))
        progress_jsonl.emit("done", output=str(result.output_path), preview=str(result.preview_path))
        return 0
    bar, update = _progress_bar()
    with bar:
        result = run_demo(Path(args.out), progress=update, **_run_options(args))
    print(f"model:   {result.model_id}")
    print(f"input:   {result.input_path}")
    print(f"output:  {result.output_path}")
    print(f"preview: {result.preview_path} (input | output; axial and coronal middle slices)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.trainer import run_train_command

    return run_train_command(args.config, args.overrides, args.resume)


def cmd_export(args: argparse.Namespace) -> int:
    from .training.export import run_export_command

    return run_export_command(args.checkpoint, args.outdir, args.id, args.reverse, args.with_inverse,
                              args.redact_data)


COMMANDS: Dict[str, Command] = {"translate": cmd_translate, "models": cmd_models, "pull": cmd_pull,
                                "info": cmd_info, "evaluate": cmd_evaluate, "demo": cmd_demo, "train": cmd_train,
                                "export": cmd_export}


CAPTURED = frozenset(("translate", "models", "info", "evaluate", "demo"))  # train and export keep their logs


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    messages: List[str] = []
    jsonl = getattr(args, "progress", "bar") == "jsonl"
    with warnings.catch_warnings():  # restores the caller's warning display when main() returns
        warnings.showwarning = progress_jsonl.show_warning if jsonl else _show_warning
        try:
            with terminate_raises():
                if args.command not in CAPTURED:
                    return _run(args)
                with captured_library_messages(messages):
                    return _run(args)
        finally:
            if args.debug and messages:
                print("medtranslate: debug: the libraries printed:\n" + "\n".join(messages), file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except MedTranslateError as error:
        if args.debug:
            raise
        print(printable(f"medtranslate: error: {error}"), file=sys.stderr)
        if getattr(args, "progress", "bar") == "jsonl":
            progress_jsonl.emit("error", message=str(error), exit_code=error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        print("medtranslate: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Terminated as stop:
        print("medtranslate: terminated; nothing was written", file=sys.stderr)
        return stop.exit_code
    except Exception as error:  # a failure, not bad input: one line unless --debug
        if args.debug:
            raise
        print(printable(f"medtranslate: failed: {type(error).__name__}: {error} (rerun with --debug for details)"),
              file=sys.stderr)
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"medtranslate: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
