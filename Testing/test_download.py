"""Model downloads against a real HTTP server on 127.0.0.1: a good download, a wrong hash, a transfer cut short
(resumed with a Range request), one that keeps failing, a server that is gone; nothing partial is ever left in
the model folder, and a pulled package is found and loads like any other."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from MedTranslateLib.cli import main
from MedTranslateLib.download import DownloadError, pull, read_catalogue
from MedTranslateLib.registry import load_model
from tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]


class Server:
    """Serves `files` (name -> bytes) with Range support; `cut` makes the first N responses stop half-way."""

    def __init__(self, files: dict) -> None:
        self.files, self.cut, self.requests = files, 0, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut > 0:
                    server.cut -= 1
                    body = body[:len(body) // 2]  # the connection ends early
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def published(tmp_path):
    """A tiny package zipped, a catalogue naming it, and a server holding it."""
    import zipfile

    package = build_tiny_model(tmp_path / "build" / "tiny-test-model")
    archive = tmp_path / "tiny-test-model-1.0.0.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(package.iterdir()):
            zipped.write(file, f"tiny-test-model/{file.name}")
    data = archive.read_bytes()
    catalogue = tmp_path / "catalogue.json"
    entry = {"id": "tiny-test-model", "version": "1.0.0", "file": archive.name,
             "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "summary": "tiny"}
    catalogue.write_text(json.dumps({"base_url": "http://127.0.0.1:9/unused", "models": [entry]}))
    server = Server({archive.name: data})
    yield server, catalogue, tmp_path / "home" / "models"
    server.close()


def test_a_good_download_is_verified_installed_and_found(published, monkeypatch):
    server, catalogue, folder = published
    seen = []
    path = pull("tiny-test-model", base_url=server.url, folder=folder, catalogue=catalogue,
                progress=lambda done, total: seen.append((done, total)))
    assert path == folder / "tiny-test-model-1.0.0.zip" and sorted(p.name for p in folder.iterdir()) == [path.name]
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    monkeypatch.setenv("MEDTRANSLATE_MODEL_PATH", str(folder))
    assert load_model("tiny-test-model").card.id == "tiny-test-model"


def test_a_cut_transfer_resumes_with_a_range_request(published):
    server, catalogue, folder = published
    server.cut = 2
    path = pull("tiny-test-model", base_url=server.url, folder=folder, catalogue=catalogue)
    assert [r for _, r in server.requests][0] is None and all(r and r.startswith("bytes=") for _, r in
                                                               server.requests[1:])
    assert len(server.requests) == 3 and hashlib.sha256(path.read_bytes()).hexdigest() in catalogue.read_text()


def test_a_wrong_hash_a_lasting_failure_and_a_gone_server_leave_nothing(published):
    server, catalogue, folder = published
    data = json.loads(catalogue.read_text())
    data["models"][0]["sha256"] = "0" * 64
    wrong = catalogue.with_name("wrong.json")
    wrong.write_text(json.dumps(data))
    with pytest.raises(DownloadError, match="is not the catalogue's"):
        pull("tiny-test-model", base_url=server.url, folder=folder, catalogue=wrong)
    assert list(folder.iterdir()) == []
    server.cut = 100
    with pytest.raises(DownloadError, match="the transfer stopped at"):
        pull("tiny-test-model", base_url=server.url, folder=folder, catalogue=catalogue)
    assert list(folder.iterdir()) == []
    gone = server.url
    server.close()
    with pytest.raises(DownloadError, match="after 4 attempts"):
        pull("tiny-test-model", base_url=gone, folder=folder, catalogue=catalogue)
    assert list(folder.iterdir()) == []


def test_the_cli_lists_the_catalogue_and_pulls_from_a_configured_mirror(published, monkeypatch, capsys):
    server, catalogue, folder = published
    monkeypatch.setattr("MedTranslateLib.download.CATALOGUE_FILE", catalogue)
    monkeypatch.setenv("MEDTRANSLATE_HOME", str(folder.parent))
    monkeypatch.setenv("MEDTRANSLATE_MODEL_URL", server.url)
    assert main(["models", "--available", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["installed"] is False
    assert main(["pull", "tiny-test-model"]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out
    assert main(["models", "--available", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["installed"] is True
    assert main(["pull", "no-such-model"]) == 2
    assert "not in the catalogue" in capsys.readouterr().err


def test_the_shipped_catalogue_matches_the_bundled_packages_zipped():
    """Training/tools/build_catalogue.py zips reproducibly: the catalogue's hashes are those of today's packages."""
    import subprocess
    import sys
    import tempfile

    entries = {entry.id: entry for entry in read_catalogue()}
    with tempfile.TemporaryDirectory() as out:
        rebuilt = Path(out) / "catalogue.json"
        subprocess.run([sys.executable, str(REPO / "Training" / "tools" / "build_catalogue.py"), "--out", out,
                        "--catalogue", str(rebuilt)], check=True, capture_output=True, cwd=REPO)
        shipped = (REPO / "MedTranslateLib" / "catalogue.json").read_text()
        assert rebuilt.read_text() == shipped, "catalogue.json is stale: run Training/tools/build_catalogue.py"
        for entry in entries.values():
            assert hashlib.sha256((Path(out) / entry.file).read_bytes()).hexdigest() == entry.sha256


def test_a_download_in_a_child_process_reports_progress_and_fails_in_one_line(published, tmp_path):
    """The module's Download button: `medtranslate pull --progress jsonl` in a child, polled like a translation."""
    from MedTranslateLib.node_translation import child_environment
    from MedTranslateLib.runner import TranslationProcess, pull_command

    server, catalogue, folder = published
    env = child_environment()
    env["MEDTRANSLATE_HOME"] = str(folder.parent)
    child = TranslationProcess(pull_command("tiny-test-model", server.url, catalogue), env=env, task="download")
    state = child.wait(timeout=60)
    assert state.succeeded, state.stderr
    progress = [e for e in state.events if e["event"] == "progress"]
    assert progress and {e["stage"] for e in progress} == {"downloading"}
    assert progress[-1]["done"] == progress[-1]["total"] == (folder / "tiny-test-model-1.0.0.zip").stat().st_size
    assert state.events[-1] == {"event": "done", "output": str(folder / "tiny-test-model-1.0.0.zip")}

    data = json.loads(catalogue.read_text())
    data["models"][0]["sha256"] = "0" * 64
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    other = tmp_path / "other"
    env["MEDTRANSLATE_HOME"] = str(other)
    failed = TranslationProcess(pull_command("tiny-test-model", server.url, wrong), env=env, task="download")
    state = failed.wait(timeout=60)
    assert state.exit_code != 0 and not state.succeeded
    assert "is not the catalogue's" in state.failure() and "\n" not in state.failure()
    assert not (other / "models").exists() or list((other / "models").iterdir()) == []
