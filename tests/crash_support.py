"""Test support for crash and race tests: CLI processes to kill, and what files hold.

Killing `python -m lookalike ...` twenty times would spend most of the time importing
torch. A `Launcher` imports lookalike once in a helper process, then forks one fresh
process per command, in its own process group, that runs the command line as
`python -m lookalike` would (and exits with its exit code). SIGKILL to the group ends
the command and the decode workers it started, as when a machine goes down.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

_LAUNCHER = r"""
import json, os, sys, traceback
sys.path.insert(0, {tests!r})
import crash_support
from lookalike.cli import app
import lookalike.scan, lookalike.embed, lookalike.report  # imported once, before any fork

print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if "wait" in command:
        _, status = os.waitpid(command["wait"], 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        quiet = os.open(os.devnull, os.O_RDWR)
        os.dup2(quiet, 0)
        os.dup2(quiet, 1)
        code = 0
        try:
            if command.get("setup"):
                getattr(crash_support, command["setup"])()
            app(command["args"], prog_name="lookalike")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 70
        os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child did it first
    print(pid, flush=True)
"""


class Launcher:
    """Runs lookalike commands as fresh processes that can be killed at any moment."""

    def __init__(self) -> None:
        script = _LAUNCHER.format(tests=str(Path(__file__).parent))
        self._process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._read() != "ready":
            raise RuntimeError("the launcher did not start")

    def _read(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the launcher died")
        return line.strip()

    def _send(self, command: dict[str, object]) -> str:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return self._read()

    def start(self, *args: str | os.PathLike[str], setup: str | None = None) -> int:
        """Start `lookalike ARGS...` (after `setup`, a function of this module); its pid."""
        return int(self._send({"args": [str(a) for a in args], "setup": setup}))

    def wait(self, pid: int) -> int:
        """Its exit code (negative: the signal that ended it)."""
        return int(self._send({"wait": pid}))

    def run(self, *args: str | os.PathLike[str], setup: str | None = None) -> int:
        return self.wait(self.start(*args, setup=setup))

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL the command and every process it started."""
        with contextlib.suppress(ProcessLookupError):  # it finished, its group is gone
            os.killpg(pid, signal.SIGKILL)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def cross_device() -> None:
    """Setup for a launched command: no hard link between two folders, as across devices."""
    real_link = os.link

    def link(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    os.link = link  # type: ignore[assignment]


def stop_mid_copy() -> None:
    """Setup: as `cross_device`, and the first copy stops itself (SIGSTOP) half written."""
    cross_device()

    def half_then_stop(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
        data = source.read()
        target.write(data[: len(data) // 2])
        target.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
        target.write(data[len(data) // 2 :])

    shutil.copyfileobj = half_then_stop  # type: ignore[assignment]


VERIFY_CHUNK = 25
"""Pairs per verification chunk in a command set up by `small_slow_verify_chunks`."""


def small_slow_verify_chunks() -> None:
    """Setup: verification stores every VERIFY_CHUNK pairs, and each chunk takes 50 ms
    more, so a kill can land between chunks on any machine."""
    import lookalike.candidates
    from lookalike.model import Model

    lookalike.candidates.CHUNK = VERIFY_CHUNK
    real = Model.match_counts

    def slow(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return real(self, *args, **kwargs)

    Model.match_counts = slow  # type: ignore[method-assign]


def count_rows(index: Path, table: str) -> int:
    """Rows of an index table, read while another process writes it (0 before it exists)."""
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def wait_stopped(pid: int, seconds: float = 60) -> None:
    """Wait until a process is stopped (by SIGSTOP); RuntimeError if it never is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        if state == "Z":
            raise RuntimeError("the command finished without stopping")
        time.sleep(0.01)
    raise RuntimeError("the command did not stop in time")


def digest(path: Path) -> str:
    """A file's SHA-256; a symbolic link's target."""
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> digest), hidden ones included."""
    return {
        str(path.relative_to(root)): digest(path)
        for path in sorted(root.rglob("*"))
        if path.is_symlink() or path.is_file()
    }
