"""Model packages outside the repository: a catalogue shipped with the library, and a download that verifies.

`catalogue.json` (beside this file) lists, per model: id, version, file name, SHA-256, size and a one-line
summary. `pull(id)` fetches `<base URL>/<file>` into the user's model folder (`$MEDTRANSLATE_HOME/models`):
into a hidden `.part` file first, resuming with an HTTP Range request after a dropped connection (a few
attempts), checking the size and the SHA-256, and only then renaming it into place, where the registry finds
it like any package. A wrong hash, a short transfer or an unreachable server ends with one line and leaves
nothing behind. The base URL is the catalogue's, or `$MEDTRANSLATE_MODEL_URL`, or the caller's (a hospital's
mirror or proxy).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from .errors import InputError, MedTranslateError
from .registry import HOME_VARIABLE

CATALOGUE_FILE = Path(__file__).resolve().parent / "catalogue.json"
URL_VARIABLE = "MEDTRANSLATE_MODEL_URL"
ATTEMPTS = 4             # a transfer that drops is resumed this many times in all
CHUNK = 1 << 16
TIMEOUT_S = 30.0

DownloadProgress = Callable[[int, int], None]  # (bytes so far, total bytes)


class DownloadError(MedTranslateError):
    """A download that could not be completed or verified; nothing was installed."""


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    version: str
    file: str
    sha256: str
    size: int
    summary: str


def read_catalogue(path: Optional[Path] = None) -> List[CatalogueEntry]:
    """The catalogue's entries (default: the library's CATALOGUE_FILE); InputError when missing or malformed."""
    path = path or CATALOGUE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [CatalogueEntry(str(m["id"]), str(m["version"]), str(m["file"]), str(m["sha256"]), int(m["size"]),
                               str(m.get("summary", ""))) for m in data["models"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: model catalogue cannot be read ({error})") from None


def catalogue_base_url(path: Optional[Path] = None) -> str:
    """`$MEDTRANSLATE_MODEL_URL` when set, else the catalogue's `base_url`."""
    path = path or CATALOGUE_FILE
    if os.environ.get(URL_VARIABLE):
        return os.environ[URL_VARIABLE]
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["base_url"])
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: model catalogue has no base_url ({error})") from None


def user_model_folder() -> Path:
    return Path(os.environ.get(HOME_VARIABLE, "~/.medtranslate")).expanduser() / "models"


def pull(model_id: str, base_url: Optional[str] = None, folder: Optional[Path] = None,
         progress: Optional[DownloadProgress] = None, catalogue: Optional[Path] = None) -> Path:
    """Download, verify and install the catalogue's package `model_id`; returns its path."""
    entries = {entry.id: entry for entry in read_catalogue(catalogue)}
    if model_id not in entries:
        raise InputError(f"model '{model_id}' is not in the catalogue (available: {', '.join(sorted(entries))})")
    entry = entries[model_id]
    folder = folder or user_model_folder()
    folder.mkdir(parents=True, exist_ok=True)
    url = (base_url or catalogue_base_url(catalogue)).rstrip("/") + "/" + entry.file
    target = folder / entry.file
    partial = folder / f".{entry.file}.part"
    try:
        _fetch(url, partial, entry.size, progress)
        _verify(partial, entry)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return target


def _fetch(url: str, partial: Path, size: int, progress: Optional[DownloadProgress]) -> None:
    """Fill `partial` with `size` bytes from `url`, resuming with Range requests when a transfer drops."""
    partial.write_bytes(b"")
    last_error = "no attempt made"
    for attempt in range(ATTEMPTS):
        have = partial.stat().st_size
        if have >= size:
            return
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                if have and response.status != 206:  # the server ignored the range: start again
                    partial.write_bytes(b"")
                with open(partial, "ab") as sink:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        sink.write(chunk)
                        if sink.tell() > size:
                            raise DownloadError(f"{url}: the server sent more than the catalogue's {size} bytes")
                        if progress is not None:
                            progress(sink.tell(), size)
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url}: the server answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # refused, reset, cut
            # short (IncompleteRead), timed out: resume from what arrived
            last_error = str(getattr(error, "reason", error))
            time.sleep(min(0.2 * 2 ** attempt, 2.0))
    if partial.stat().st_size < size:
        raise DownloadError(f"{url}: the transfer stopped at {partial.stat().st_size} of {size} bytes after "
                            f"{ATTEMPTS} attempts ({last_error})")


def _verify(partial: Path, entry: CatalogueEntry) -> None:
    digest = hashlib.sha256()
    with open(partial, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    if partial.stat().st_size != entry.size or digest.hexdigest() != entry.sha256:
        raise DownloadError(f"{entry.file}: SHA-256 {digest.hexdigest()[:12]}… ({partial.stat().st_size} bytes) "
                            f"is not the catalogue's {entry.sha256[:12]}… ({entry.size} bytes); nothing was "
                            "installed")
