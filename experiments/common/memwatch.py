"""Memory of this process and of the machine (Linux ``/proc``), what autograd saves for backward, and a child
process run under a memory guard: ``make real-width``'s instruments."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GIB = 2**30


class SavedBytes:
    """Bytes of the storages autograd keeps for backward (parameters excluded, each storage once) between start and
    stop. Inside activation-checkpointed layers torch's own hooks take over: those are not seen here."""

    def __init__(self, torch: Any, params: set[int]) -> None:
        self.seen: dict[int, int] = {}

        def pack(t: Any) -> Any:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                self.seen[storage.data_ptr()] = storage.nbytes()
            return t

        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)

    def start(self) -> None:
        self.hooks.__enter__()

    def stop(self) -> None:
        self.hooks.__exit__(None, None, None)

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def rss() -> int:
    return status()["VmRSS"]


def peak_rss() -> int:
    return status()["VmHWM"]


def reset_peak_rss() -> None:
    """VmHWM back to the current RSS (Linux: "5" to /proc/self/clear_refs), so it is the peak since this call."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def run_child(
    cmd: list[str], log: Path, stdout: Path | None = None, *, guard_gib: float = 1.0
) -> dict[str, Any]:
    """Run one phase (output to ``log``; stdout to ``stdout`` if given), watching its memory and the machine's;
    stop it when MemAvailable falls below the guard."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "MALLOC_MMAP_THRESHOLD_": str(2**20)}  # fmt: skip
    start, peak, low = time.perf_counter(), 0, mem_available()
    with log.open("w") as err, (stdout or log).open("a") as out:
        proc = subprocess.Popen([sys.executable, *cmd], stdout=out, stderr=err, env=env)
        while proc.poll() is None:
            with contextlib.suppress(OSError):  # exited between poll() and the read
                peak = max(peak, status(proc.pid).get("VmHWM", 0))
            low = min(low, mem_available())
            if low < guard_gib * GIB:
                proc.terminate()
                proc.wait(timeout=60)
                return {"stopped": f"MemAvailable fell to {low / GIB:.2f} GiB (guard {guard_gib} GiB) with this "
                                   f"phase at {peak / GIB:.2f} GiB RSS", "peak_rss_gib": round(peak / GIB, 2)}  # fmt: skip
            time.sleep(0.2)
    return {"returncode": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gib": round(peak / GIB, 2), "min_mem_available_gib": round(low / GIB, 2)}  # fmt: skip
