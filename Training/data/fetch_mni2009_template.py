"""Fetch the MNI ICBM152 2009a T1 template (1 mm, skull-stripped) from nilearn's wheel on PyPI (BSD-3; the
template under MNI's permissive notice): the sharpest real brain anatomy installable here.

Only PyPI is contacted (pip download --no-deps); the NIfTI is read out of the wheel, nilearn is not installed.

    python Training/data/fetch_mni2009_template.py [--out .cache/data/mni2009]
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_spm_templates import download_wheel  # noqa: E402

WHEEL = "nilearn==0.14.1"
MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".cache" / "data" / "mni2009"


def fetch(out: Path = DEFAULT_OUT) -> Path:
    """Path of the T1 template under `out`, extracted from the wheel when missing."""
    target = out / Path(MEMBER).name
    if not target.is_file():
        wheel = download_wheel(WHEEL, WHEEL.replace("==", "-") + "-*.whl", out.parent / "wheels")
        out.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheel) as archive:
            temporary.write_bytes(archive.read(MEMBER))
        temporary.replace(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    print(fetch(parser.parse_args().out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
