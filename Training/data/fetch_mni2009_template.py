"""Fetch the MNI ICBM152 2009a T1 template (1 mm, skull-stripped) and its grey- and white-matter probability
maps (same grid) from nilearn's wheel on PyPI (BSD-3; the template under MNI's permissive notice): the sharpest
real brain anatomy installable here.

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
MAPS = ("t1", "gm", "wm")
MEMBERS = {kind: f"nilearn/datasets/data/mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz" for kind in MAPS}
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".cache" / "data" / "mni2009"


def fetch(out: Path = DEFAULT_OUT, kind: str = "t1") -> Path:
    """Path of the template `kind` (t1, gm or wm) under `out`; every map is extracted from the wheel when one
    is missing."""
    targets = {k: out / Path(member).name for k, member in MEMBERS.items()}
    if not all(target.is_file() for target in targets.values()):
        wheel = download_wheel(WHEEL, WHEEL.replace("==", "-") + "-*.whl", out.parent / "wheels")
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for k, target in targets.items():
                temporary = target.with_name(target.name + ".partial")
                temporary.write_bytes(archive.read(MEMBERS[k]))
                temporary.replace(target)
    return targets[kind]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    out = parser.parse_args().out
    for kind in MAPS:
        print(fetch(out, kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
