"""Commands of the GPU acceptance run: each with a time limit, logged to a file of its own, and
stopped together with every process it started (data workers, torchrun's workers) when the
limit passes or when the run kills it on purpose.

torchrun starts each worker in a session of its own and nnU-Net's data workers are children
of the trainer, so a process group does not hold a run's processes; they are found as the
descendants of the command's process in ``/proc`` (Linux) and killed by their ids.
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PartFailed(Exception):
    """A part of the acceptance run cannot go on; the message is its one-line reason."""


class PartTimedOut(PartFailed):
    """A part ran out of its time."""


class Deadline:
    """The end of a part's time: ``seconds`` from now, but not past ``end`` (the run's own end)."""

    def __init__(self, seconds: float, end: float | None = None) -> None:
        self.end = time.monotonic() + seconds if end is None else min(end, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.end - time.monotonic()


def _children() -> dict[int, list[int]]:
    """Parent id -> ids of its child processes, from ``/proc/PID/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        children.setdefault(parent, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children, tree, queue = _children(), [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def kill_tree(process: subprocess.Popen) -> int:
    """SIGKILL ``process`` and every descendant (collected first, so none is orphaned in
    between); returns the number of processes killed."""
    tree = process_tree(process.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    return len(tree)


@dataclass(frozen=True)
class Finished:
    """A command that ended with exit code 0."""

    seconds: float
    output: str


class Commands:
    """Runs commands in ``env``, each logged to ``log_folder/NAME.log`` and echoed as one line."""

    def __init__(self, env: dict[str, str], log_folder: Path) -> None:
        self.env = env
        self.log_folder = log_folder
        self.seconds: dict[str, float] = {}
        """Wall time of every command that ended (killed ones too), by name."""
        log_folder.mkdir(parents=True, exist_ok=True)

    def log(self, name: str) -> Path:
        return self.log_folder / f"{name}.log"

    def start(self, name: str, args: list, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen, tempfile.TemporaryDirectory]:
        """Start a command (output to its log) in ``self.env`` updated with ``env``. A private
        temporary folder per command: the folders of data workers that a kill leaves behind go
        with it."""
        args = [str(a) for a in args]
        print(f"  $ {' '.join(args)}  (log: {self.log(name)})", flush=True)
        tmp = tempfile.TemporaryDirectory(prefix="vox2vec-acceptance-")
        with open(self.log(name), "w") as log:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            process = subprocess.Popen(args, env={**self.env, **(env or {}), "TMPDIR": tmp.name}, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return process, tmp

    def wait(self, name: str, process: subprocess.Popen, tmp: tempfile.TemporaryDirectory, deadline: Deadline,
             began: float) -> Finished:
        """Wait for a started command until ``deadline``; kill it and raise when it passes."""
        try:
            process.wait(timeout=max(0.0, deadline.remaining()))
        except subprocess.TimeoutExpired:
            killed = kill_tree(process)
            tmp.cleanup()
            self.seconds[name] = time.monotonic() - began
            raise PartTimedOut(f"`{name}` was still running at the part's time limit after "
                               f"{time.monotonic() - began:.0f} s; killed it ({killed} processes); see "
                               f"{self.log(name)}") from None
        tmp.cleanup()
        self.seconds[name] = time.monotonic() - began
        output = self.log(name).read_text(errors="replace")
        if process.returncode != 0:
            last = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
            raise PartFailed(f"`{name}` exited with {process.returncode}: {last[0].strip()[:300]} (see "
                             f"{self.log(name)})")
        return Finished(time.monotonic() - began, output)

    def run(self, name: str, args: list, deadline: Deadline, env: dict[str, str] | None = None) -> Finished:
        began = time.monotonic()
        if deadline.remaining() <= 0:
            raise PartTimedOut(f"no time left for `{name}`")
        process, tmp = self.start(name, args, env)
        return self.wait(name, process, tmp, deadline, began)
