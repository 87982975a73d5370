"""Fetch SPM's real template volumes from PyPI (spm-runtime wheel, GPL-2) into a local folder.

The wheel's `_spm.ctf` is a plain zip; the NIfTI files sit under `fsroot/_spm/cleaned/spm/`. Only PyPI is
contacted (pip download --no-deps: the wheel's own dependencies would fetch MATLAB and must not be resolved).

    python Training/data/fetch_spm_templates.py [--out .cache/data/spm]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterable, List, Sequence

WHEEL = "spm-runtime-R2025b==25.1.2.post4"
PREFIX = "fsroot/_spm/cleaned/spm/"
VOLUMES = (
    "canonical/avg152T1.nii", "canonical/avg152T2.nii", "canonical/avg152PD.nii", "canonical/single_subj_T1.nii",
    "toolbox/OldNorm/T1.nii", "toolbox/OldNorm/T2.nii", "toolbox/OldNorm/PD.nii", "toolbox/OldNorm/PET.nii",
    "toolbox/OldNorm/Transm.nii", "tpm/TPM.nii",
)
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".cache" / "data" / "spm"


def fetch(out: Path = DEFAULT_OUT, volumes: Iterable[str] = VOLUMES) -> List[Path]:
    """Make sure every named volume exists under `out` (same relative paths); returns their paths."""
    wanted = [out / name for name in volumes]
    missing = [name for name, path in zip(volumes, wanted) if not path.is_file()]
    if missing:
        _extract(download_wheel(WHEEL, "spm_runtime_r2025b-*.whl", out.parent / "wheels"), missing, out)
    return wanted


def download_wheel(requirement: str, pattern: str, folder: Path, options: Sequence[str] = ()) -> Path:
    """The file matching `pattern` in `folder`, downloaded from PyPI (`requirement`, no dependencies, pip's
    `options`: e.g. a source distribution's) if absent."""
    found = sorted(folder.glob(pattern))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, requirement,
                        "-d", str(folder)], check=True)
        found = sorted(folder.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download of {requirement} left no wheel in {folder}")
    return found[-1]


def _extract(wheel: Path, names: Iterable[str], out: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        ctf = next(n for n in outer.namelist() if n.endswith("_spm.ctf"))
        with zipfile.ZipFile(io.BytesIO(outer.read(ctf))) as inner:
            for name in names:
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_suffix(".partial")
                temporary.write_bytes(inner.read(PREFIX + name))
                temporary.replace(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in fetch(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
