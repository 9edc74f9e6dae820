"""Wall time, CPU time and peak memory of one measured command.

Terms:

- usage: the three figures of one measurement (:class:`Usage`). Wall time runs
  from starting the command to its exit. CPU time is user plus system time of
  the command and of every process it started, as ``wait4`` reports them once
  they have been reaped. Peak memory is the largest maximum RSS of any single
  one of those processes, not their sum.
- orphan: a process of the measured tree whose parent exited before it, such
  as the forkserver of a Python ``multiprocessing`` pool. This process makes
  itself a child subreaper (``PR_SET_CHILD_SUBREAPER``) so that orphans become
  its children and their CPU time can be counted when it reaps them.
- watched process: a long-lived process, such as a containerd daemon, that does
  work on behalf of a measured command. :class:`ProcessWatch` reads its CPU
  time from ``/proc/PID/stat`` and resets its peak RSS (``VmHWM``) through
  ``/proc/PID/clear_refs`` before the command, then reads both after it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "CommandFailedError",
    "ProcessWatch",
    "Usage",
    "become_subreaper",
    "median_usage",
    "run_child",
]

_PR_SET_CHILD_SUBREAPER = 36
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Reset the peak RSS to the current RSS (proc(5), Linux 4.0 and later).
_CLEAR_PEAK_RSS = b"5"


class CommandFailedError(RuntimeError):
    """A measured command exited with a non-zero status.

    The message names the command, its exit status and the end of its
    standard error.
    """


@dataclass(frozen=True)
class Usage:
    """Wall seconds, CPU seconds (user plus system) and peak RSS in MiB."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    def to_json(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


def become_subreaper() -> None:
    """Make this process the subreaper of its descendants (Linux only).

    Raises OSError when ``prctl`` fails.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"failed to become a subreaper: {os.strerror(error)}")


def run_child(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
) -> Usage:
    """Run ``argv`` as a child process and return its usage.

    The child's standard output goes to ``stdout`` (default: ``/dev/null``)
    and its standard input is ``/dev/null``. Needs :func:`become_subreaper`
    first. Raises :class:`CommandFailedError` when the command exits with a
    non-zero status.
    """
    known = _child_pids()
    with (
        tempfile.TemporaryFile() as stderr,
        open(stdout or os.devnull, "wb") as output,
    ):
        started = time.perf_counter()
        command = _launch(argv, env, output, stderr, known)
        _, status, rusage = _wait_orphaned(command)
        wall = time.perf_counter() - started
        cpu, peak_kib = _orphans(known)
        if status != 0:
            stderr.seek(0)
            code = os.waitstatus_to_exitcode(status)
            raise CommandFailedError(_failure(argv, code, stderr.read()))
    cpu += rusage.ru_utime + rusage.ru_stime
    return Usage(wall, cpu, max(peak_kib, rusage.ru_maxrss) / 1024)


# A process started from this one shares its memory until it calls exec, and
# Linux then records that memory's peak RSS as the new program's own
# (exec_mmap). So ``setsid --fork`` (util-linux) starts the measured command
# from its own small memory and exits without waiting for it. The command,
# orphaned, becomes a child of this subreaper. Among its own orphans, it is
# the one that leads the new session.
_LAUNCHER = ("setsid", "--fork")


def _launch(
    argv: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str] | None,
    output: BinaryIO,
    stderr: BinaryIO,
    known: set[int],
) -> int:
    """Start ``argv`` through the launcher; return the command's pid.

    ``known`` are the children this process had before.
    """
    launcher = subprocess.Popen(
        [*_LAUNCHER, *map(str, argv)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=stderr,
    )
    if launcher.wait() != 0:
        raise CommandFailedError(
            f"failed to start {' '.join(map(str, argv))}: setsid exited with"
            f" status {launcher.returncode}"
        )
    started = _child_pids() - known
    # With more than one new child, the command has run past its setsid(),
    # and the others are processes it left.
    leaders = [pid for pid in started if len(started) == 1 or _session(pid) == pid]
    if len(leaders) != 1:
        raise CommandFailedError(
            f"failed to find the process of {' '.join(map(str, argv))}: the"
            " command did not become a child of this process; call"
            " become_subreaper() first"
        )
    return leaders[0]


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _wait_orphaned(pid: int) -> tuple[int, int, resource.struct_rusage]:
    """Wait for the command ``pid``; end its process group when interrupted."""
    try:
        return os.wait4(pid, 0)
    except BaseException:
        os.killpg(pid, signal.SIGTERM)
        raise


def _orphans(known: set[int]) -> tuple[float, int]:
    """Reap the orphans of a measured command; return their CPU and peak RSS."""
    cpu, peak_kib = 0.0, 0
    for orphan in _child_pids() - known:
        orphan_cpu, orphan_peak = _reap(orphan)
        cpu += orphan_cpu
        peak_kib = max(peak_kib, orphan_peak)
    return cpu, peak_kib


def _failure(argv: Sequence[object], status: int, stderr: bytes) -> str:
    tail = stderr.decode(errors="replace").strip()[-2000:]
    command = " ".join(map(str, argv))
    return f"failed to run {command}: exit status {status}: {tail}"


def _child_pids() -> set[int]:
    """Return the pids of this process's children, zombies included.

    Reads ``/proc/self/task/TID/children`` (Linux 3.5 and later), which is
    quicker than reading the parent of every process.
    """
    children: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            listing = Path(f"/proc/self/task/{task}/children").read_text()
        except FileNotFoundError:
            continue  # the thread has ended
        children.update(int(pid) for pid in listing.split())
    return children


def _reap(pid: int) -> tuple[float, int]:
    """Wait for ``pid``; return its CPU seconds and peak RSS in KiB."""
    try:
        _, _, rusage = os.wait4(pid, 0)
    except ChildProcessError:
        return 0.0, 0
    return rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss


class ProcessWatch:
    """CPU time and peak RSS of long-lived processes across one measurement.

    :meth:`start` resets each process's peak RSS and records its CPU time.
    :meth:`stop` returns, per pid, the CPU seconds used since then (its own
    and that of the children it reaped) and its peak RSS in MiB since then.
    The CPU time has the resolution of the kernel's clock tick (usually 10 ms).
    Needs permission to write ``/proc/PID/clear_refs`` (root, or the owner).
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = list(pids)
        self._cpu: dict[int, float] = {}

    def start(self) -> None:
        for pid in self._pids:
            Path(f"/proc/{pid}/clear_refs").write_bytes(_CLEAR_PEAK_RSS)
            self._cpu[pid] = _cpu_seconds(pid)

    def stop(self) -> dict[int, tuple[float, float]]:
        return {
            pid: (_cpu_seconds(pid) - self._cpu[pid], _peak_rss_mib(pid))
            for pid in self._pids
        }


def _cpu_seconds(pid: int) -> float:
    """Return utime, stime, cutime and cstime of ``pid``, summed, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")", field 14 of proc(5) (utime) is at index 11.
    return sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"failed to read the peak RSS of process {pid}: no VmHWM")


def median_usage(samples: Sequence[Usage]) -> Usage:
    """Return the median of each figure of ``samples``, taken one by one."""
    return Usage(
        statistics.median(sample.wall_seconds for sample in samples),
        statistics.median(sample.cpu_seconds for sample in samples),
        statistics.median(sample.peak_rss_mib for sample in samples),
    )
