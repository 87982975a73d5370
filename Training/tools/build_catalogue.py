"""Zip every bundled model package reproducibly and write the library's model catalogue.

    python Training/tools/build_catalogue.py [--out dist/models] [--base-url URL]

Each package folder MedTranslateLib/models/<id>/ becomes <out>/<id>-<version>.zip (entries sorted, fixed
timestamps and modes, so the same package always gives the same bytes and SHA-256); MedTranslateLib/catalogue.json
lists id, version, file, SHA-256, size and the card's one-line summary, with the base URL the files are to be
published under (upload <out>/*.zip there). `medtranslate pull ID` downloads from it and verifies.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from MedTranslateLib.download import CATALOGUE_FILE  # noqa: E402
from MedTranslateLib.package import read_card  # noqa: E402
from MedTranslateLib.registry import BUNDLED_DIR  # noqa: E402

DEFAULT_BASE_URL = "https://github.com/medtranslate/SlicerMedTranslate/releases/download/models"
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


def zip_package(package: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in package.iterdir() if p.is_file()):
            info = zipfile.ZipInfo(f"{package.name}/{file.name}", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "models")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE_FILE, help="where to write the catalogue")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    models = []
    for package in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "model.json").is_file()):
        card = read_card(package)
        target = args.out / f"{card.id}-{card.version}.zip"
        zip_package(package, target)
        data = target.read_bytes()
        models.append({"id": card.id, "version": card.version, "file": target.name,
                       "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "summary": card.summary()})
        print(f"{target.name}: {len(data) / 2**20:.1f} MiB")
    args.catalogue.write_text(json.dumps({"base_url": args.base_url, "models": models}, indent=2) + "\n",
                              encoding="utf-8")
    print(f"wrote {args.catalogue} ({len(models)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
