"""Timing tools: load and run-queue conditions, interleaved A/B repeats, the matmul peak, the FLOP counter.

Every comparison the bench reports is a ratio taken in one run with the A/B repeats interleaved, because the
machine is usually shared: load that comes and goes then hits both sides alike. ``conditions`` records how
loaded the machine was while a section ran, so a reader can tell a quiet run from a noisy one.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch


def _schedstat() -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting on a run queue) summed over this process's threads (Linux), else None."""
    run = wait = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as fh:
                fields = fh.read().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    except (OSError, IndexError, ValueError):
        return None
    return run, wait


@contextmanager
def conditions(into: dict[str, Any]) -> Iterator[None]:
    """Record the load average, the run-queue wait and the wall time of the ``with`` body into ``into``.

    The run-queue wait is why numbers from a shared machine are noisy: a thread that waits for a core holds up
    every other OpenMP thread at the next barrier. Threads that end inside the body drop out of the sums.
    """
    load0, sched0, start = os.getloadavg()[0], _schedstat(), time.perf_counter()
    try:
        yield
    finally:
        sched1 = _schedstat()
        into["wall_s"] = round(time.perf_counter() - start, 2)
        into["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        if sched0 and sched1:
            run, wait = sched1[0] - sched0[0], sched1[1] - sched0[1]
            into["runqueue_wait"] = round(wait / (run + wait), 3) if run > 0 and wait >= 0 else None


def interleave(fns: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times, alternating between them (the order reversed
    every other round, so neither always runs right after the other): load that comes and goes hits all alike."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_overhead(on: Sequence[float], off: Sequence[float]) -> float:
    """Median over repeats of ``1 - off / on``: the share of the "on" time that the switch costs, each repeat
    compared with its neighbour in the interleaved loop."""
    return median([1 - b / a for a, b in zip(on, off)])


class MatmulPeak:
    """fp32 ``n x n`` matmuls on the configured threads; each call returns the median GFLOP/s of ``k`` of them."""

    def __init__(self, n: int, k: int = 5) -> None:
        self.n, self.k = n, k
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        self.out = torch.empty(n, n)
        torch.mm(self.a, self.b, out=self.out)  # warm up (MKL / oneDNN initialisation)

    def __call__(self) -> float:
        rates = []
        for _ in range(self.k):
            start = time.perf_counter()
            torch.mm(self.a, self.b, out=self.out)
            rates.append(2 * self.n**3 / (time.perf_counter() - start) / 1e9)
        return median(rates)


def section_peak(n: int, bursts: int) -> dict[str, Any]:
    """``peak``: the machine's fp32 matmul limit on the configured threads (median of ``bursts`` medians)."""
    out: dict[str, Any] = {"n": n, "threads": torch.get_num_threads()}
    with conditions(out):
        peak = MatmulPeak(n)
        samples = [peak() for _ in range(bursts)]
    out.update(gflops=round(median(samples), 1), samples=[round(s, 1) for s in samples])
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on: platform, versions, threads, and the CPU model / caches / SIMD."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
        if key in fields:
            info[key.lower().replace("(s)", "s").replace(" ", "_")] = fields[key]
    flags = fields.get("Flags", "").split()
    info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return info
