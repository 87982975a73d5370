"""`--progress jsonl`: what a parent process (the Slicer module's runner) reads from a translation in a child
process. Every stdout line is one JSON event; progress counts up to its total; warnings and errors arrive as
events; a batch reports its files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import SimpleITK as sitk

from geometry_fixtures import oblique_volume

REPO = Path(__file__).resolve().parents[1]


def run_jsonl(*arguments: str) -> "tuple[int, List[dict], str]":
    result = subprocess.run([sys.executable, "-m", "MedTranslateLib.cli", *arguments, "--progress", "jsonl"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON, or this fails
    return result.returncode, events, result.stderr


def test_a_translation_reports_its_stages_and_ends_with_done(tmp_path, tiny_model):
    sitk.WriteImage(oblique_volume(), str(tmp_path / "in.nii.gz"))
    code, events, _ = run_jsonl("translate", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"),
                                "--model", str(tiny_model), "--batch-size", "5")
    assert code == 0
    stages = [event["stage"] for event in events if event["event"] == "progress"]
    assert stages[0] == "reading" and stages[-1] == "writing" and "translating" in stages
    translating = [(e["done"], e["total"]) for e in events if e.get("stage") == "translating"]
    assert [done for done, _ in translating] == sorted(done for done, _ in translating)
    assert translating[-1][0] == translating[-1][1] == oblique_volume().GetSize()[2]
    assert events[-1] == {"event": "done", "output": str(tmp_path / "out.nii.gz")}


def test_warnings_and_errors_arrive_as_events(tmp_path, tiny_model):
    ct_like = sitk.GetImageFromArray(np.random.default_rng(0).uniform(-1000, 1500, (12, 32, 32)).astype(np.float32))
    sitk.WriteImage(ct_like, str(tmp_path / "ct.nii.gz"))
    code, events, _ = run_jsonl("translate", str(tmp_path / "ct.nii.gz"), str(tmp_path / "out.nii.gz"),
                                "--model", str(tiny_model))
    assert code == 0 and any(e["event"] == "warning" and "CT" in e["message"] for e in events)
    code, events, stderr = run_jsonl("translate", str(tmp_path / "missing.nii.gz"), str(tmp_path / "o.nii.gz"),
                                     "--model", str(tiny_model))
    assert code == 2 and events[-1]["event"] == "error" and events[-1]["exit_code"] == 2
    assert "no such file" in events[-1]["message"] and len(stderr.strip().splitlines()) == 1


def test_a_batch_reports_its_files(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        sitk.WriteImage(oblique_volume(), str(tmp_path / "in" / name))
    code, events, _ = run_jsonl("translate", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tiny_model))
    assert code == 0
    assert [(e["done"], e["total"]) for e in events if e.get("stage") == "files"] == [(1, 3), (2, 3), (3, 3)]
    assert events[-1] == {"event": "done", "translated": 3, "skipped": 0, "failed": 0}
