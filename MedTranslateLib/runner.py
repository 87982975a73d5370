"""A translation in a child process, driven by polling: what the Slicer module runs instead of a thread.

Slicer's main thread holds the GIL while Qt waits for events, so Python threads crawl there; a crash inside
ITK or torch would also take Slicer down. The work therefore runs in `python -m MedTranslateLib.cli translate
... --progress jsonl` (Slicer's PythonSlicer, or `sys.executable` elsewhere), and the caller polls this object
from a timer: `poll()` never blocks (the pipes are non-blocking), returns the new events, and notices the end.
`cancel()` ends the child and everything it started (its own process group) at once. The module's model
downloads (`medtranslate pull ID --progress jsonl`, `pull_command`) run the same way.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

KILL_AFTER_S = 1.0  # a cancelled child that has not ended after SIGTERM gets SIGKILL this much later


@dataclass
class RunnerState:
    """What the child has said so far: its events, stray lines (not JSON), its stderr, and how it ended."""

    events: List[Dict[str, Any]] = field(default_factory=list)
    stray: List[str] = field(default_factory=list)
    stderr: str = ""
    exit_code: Optional[int] = None
    cancelled: bool = False
    task: str = "translation"  # what the child does, in messages: "translation", "download"

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.cancelled and any(e.get("event") == "done" for e in self.events)

    def failure(self) -> str:
        """One line for the user: the child's error event, else its last stderr line, else how it died."""
        errors = [e for e in self.events if e.get("event") == "error"]
        if errors:
            return str(errors[-1].get("message", f"the {self.task} failed"))
        if self.cancelled:
            return "cancelled"
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if self.exit_code is not None and self.exit_code < 0:
            name = signal.Signals(-self.exit_code).name if -self.exit_code in signal.valid_signals() else "a signal"
            return f"the {self.task} process crashed ({name})" + (f": {lines[-1]}" if lines else "")
        if lines:
            return lines[-1].replace("medtranslate: error: ", "").replace("medtranslate: failed: ", "")
        return f"the {self.task} process ended with status {self.exit_code} without a result"


def translate_command(input_path: Path, output_path: Path, model: str, options: Dict[str, Any],
                      python: Optional[str] = None) -> List[str]:
    """The child's command line: the library's CLI with JSON progress; `options` are device, batch_size,
    precision, tta (translate_image's)."""
    command = [python or sys.executable, "-m", "MedTranslateLib.cli", "translate", str(input_path),
               str(output_path), "--model", str(model), "--progress", "jsonl"]
    for key in ("device", "batch_size", "precision"):
        if options.get(key) is not None:
            command += [f"--{key.replace('_', '-')}", str(options[key])]
    if options.get("tta"):
        command.append("--tta")
    return command


def pull_command(model_id: str, base_url: Optional[str] = None, catalogue: Optional[Path] = None,
                 python: Optional[str] = None) -> List[str]:
    """The child's command line for downloading a catalogue package, with JSON progress ("downloading" events)."""
    command = [python or sys.executable, "-m", "MedTranslateLib.cli", "pull", model_id, "--progress", "jsonl"]
    if base_url:
        command += ["--base-url", base_url]
    if catalogue:
        command += ["--catalogue", str(catalogue)]
    return command


class TranslationProcess:
    """One child process of the library's CLI (a translation, or a download with `task="download"`): start it,
    `poll()` it from a timer, `cancel()` it; `state` holds what it said."""

    def __init__(self, command: Sequence[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[Path] = None, task: str = "translation") -> None:
        self.state = RunnerState(task=task)
        self._buffers = {"stdout": b"", "stderr": b""}
        self._kill_at: Optional[float] = None
        self.process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                        start_new_session=os.name == "posix")
        self._pumped: Optional[Dict[str, "queue.Queue[bytes]"]] = None
        try:
            for stream in (self.process.stdout, self.process.stderr):
                os.set_blocking(stream.fileno(), False)
        except OSError:  # Windows pipes before Python 3.12: a thread per pipe, blocked in read (GIL released)
            self._pumped = {"stdout": queue.Queue(), "stderr": queue.Queue()}
            for name in self._pumped:
                threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def poll(self) -> List[Dict[str, Any]]:
        """New events since the last call; never blocks. Once the child has ended, reads what is left and sets
        `state.exit_code`."""
        if self._kill_at is not None and time.monotonic() >= self._kill_at and self.process.poll() is None:
            self._signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            self._kill_at = None
        ended = self.process.poll() is not None
        new = self._read("stdout", final=ended)
        self._read("stderr", final=ended)
        if ended and self.state.exit_code is None:
            self.state.exit_code = self.process.returncode
            if self._pumped is None:
                self.process.stdout.close()
                self.process.stderr.close()
        return new

    def cancel(self) -> None:
        """End the child and its children: SIGTERM to its process group now, SIGKILL after KILL_AFTER_S (done
        by `poll`, or by `wait`)."""
        if self.process.poll() is not None:
            return
        self.state.cancelled = True
        self._signal(signal.SIGTERM)
        self._kill_at = time.monotonic() + KILL_AFTER_S

    def wait(self, timeout: float) -> RunnerState:
        """Poll until the child ends or `timeout` seconds pass (for scripts and tests; a GUI polls from a timer)."""
        deadline = time.monotonic() + timeout
        while not self.state.finished and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        return self.state

    def _signal(self, signum: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.process.pid, signum)
            else:
                self.process.terminate()
        except (ProcessLookupError, PermissionError):
            pass

    def _pump(self, name: str) -> None:
        stream = getattr(self.process, name)
        for line in iter(stream.readline, b""):
            self._pumped[name].put(line)

    def _available(self, name: str, final: bool) -> bytes:
        """What the pipe holds now, without waiting."""
        if self._pumped is not None:
            if final:
                time.sleep(0.05)  # let the pump threads reach the end of the pipes
            parts = []
            while not self._pumped[name].empty():
                parts.append(self._pumped[name].get_nowait())
            return b"".join(parts)
        stream = getattr(self.process, name)
        if stream.closed:
            return b""
        try:
            return stream.read() or b""
        except (BlockingIOError, OSError):
            return b""

    def _read(self, name: str, final: bool) -> List[Dict[str, Any]]:
        buffer = self._buffers[name] + self._available(name, final)
        *lines, rest = buffer.split(b"\n")
        if final and rest:
            lines, rest = lines + [rest], b""
        self._buffers[name] = rest
        text = [line.decode("utf-8", "replace") for line in lines]
        if name == "stderr":
            self.state.stderr += "".join(line + "\n" for line in text)
            return []
        new = []
        for line in text:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                new.append(event)
            elif line.strip():
                self.state.stray.append(line)
        self.state.events += new
        return new
