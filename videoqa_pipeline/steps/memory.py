"""Resident memory of the process while a stage runs, and giving freed memory back afterwards.

Most of a stage's memory is native (CTranslate2, ONNX Runtime, OpenCV, PyAV), which
``tracemalloc`` does not see, so the stage's peak is read from the kernel: ``VmRSS`` of
``/proc/self/status`` sampled on a thread every few milliseconds, and ``VmHWM`` (the process's
high-water mark) before and after, which catches a peak between two samples whenever the stage
raised the process's high-water mark. ``VmHWM`` is only read, never reset, so
``getrusage``'s ``ru_maxrss`` (the run's peak the CLI prints) stays true.

Outside Linux there is no ``/proc``: the fact is then left out.

What keeps a run worker's memory bounded (measured in ``python -m benchmarks.run_worker_memory``):

* each stage frees its model when it is done (:func:`release_model`): a run worker processes one
  video, so a model kept for the next stages only added to their peak;
* freed heap pages go back to the system after every stage and, while a stage runs, every
  quarter of a second (:func:`release_free_memory`): CTranslate2 and ONNX Runtime free large
  buffers on every call, and glibc's arenas kept them resident (a 5-minute transcription peaked
  about 120 MB higher without it);
* glibc maps large blocks on their own and keeps two arenas (:func:`bound_allocator`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ParamSpec

from videoqa_pipeline.steps.result import StageResult

logger = logging.getLogger(__name__)

P = ParamSpec("P")
STATUS = Path("/proc/self/status")
#: How often VmRSS is read while a stage runs. A read costs about 20 µs.
SAMPLE_SECONDS = 0.01
#: How often freed heap pages are handed back while a stage runs. A trim costs well under 1 ms.
TRIM_SECONDS = 0.25
#: The fact every stage reports: the process's peak resident memory while it ran, in MB.
PEAK_RSS_FACT = "peak_rss_mb"
#: Models released after their stage and heap trimmed during and after it. Only the memory
#: benchmark turns it off, to measure a worker without them in the same run.
BOUNDED = True


def status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB, or None without it."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class PeakRss:
    """Context manager measuring the peak resident memory of this process inside its block.

    ``peak_mb`` is None where ``/proc/self/status`` does not exist. With ``trim``, the sampling
    thread also hands freed heap pages back every :data:`TRIM_SECONDS`.
    """

    def __init__(self, interval: float = SAMPLE_SECONDS, *, trim: bool = False) -> None:
        self._interval = interval
        self._trim = trim
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0.0
        self._hwm_before: float | None = None
        self.peak_mb: float | None = None
        self.start_mb: float | None = None

    def _sample(self) -> None:
        every = max(1, round(TRIM_SECONDS / self._interval)) if self._trim else 0
        count = 0
        while True:
            rss = status_mb("VmRSS")
            if rss is not None:
                self._sampled = max(self._sampled, rss)
            count += 1
            if every and count % every == 0:
                release_free_memory()
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> PeakRss:
        self._hwm_before = status_mb("VmHWM")
        if self._hwm_before is not None:
            self.start_mb = self._sampled = status_mb("VmRSS") or 0.0
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._thread is None or self._hwm_before is None:
            return
        self._stop.set()
        self._thread.join()
        peak = max(self._sampled, status_mb("VmRSS") or 0.0)
        after = status_mb("VmHWM") or 0.0
        if after > self._hwm_before:  # this block set a new high-water mark: that is its peak
            peak = max(peak, after)
        self.peak_mb = peak


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


#: glibc's mallopt parameters (malloc.h) and the values a run worker uses.
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
MMAP_THRESHOLD_BYTES = 4 * 2**20
ARENA_MAX = 2
_allocator_bounded = False


def bound_allocator() -> None:
    """Set glibc's allocator for a run worker, once per process (nothing elsewhere).

    * Blocks of 4 MiB and more are mapped on their own and unmapped when freed. glibc's default
      threshold starts at 128 KiB and rises to 32 MiB as large blocks are freed, after which the
      native libraries' per-call buffers of a few MB come from the heap and stay resident.
    * At most two malloc arenas: every thread of CTranslate2, ONNX Runtime and OpenCV would
      otherwise get its own (up to 8 per core), each keeping its freed memory.

    Measured on the 5-minute benchmark video: the worker's peak went from 654-674 MB to 578 MB,
    with stage times within the machine's noise. These values replace glibc's
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_ARENA_MAX`` variables once the first stage runs.
    """
    global _allocator_bounded
    libc = _libc()
    if _allocator_bounded or libc is None or not hasattr(libc, "mallopt"):
        return
    _allocator_bounded = True
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; nothing elsewhere).

    Why: glibc keeps freed memory of its arenas for reuse, so after a model is dropped the
    process's resident size would stay where the model put it, and the next stage's allocations
    would only partly reuse it (different sizes, other threads' arenas). Trimming after a
    stage makes the next stage start from what is really in use.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def release_model(provider: object) -> None:
    """Free the model behind ``provider`` when it can load it again later (the offline models can;
    API clients hold no model and have no ``release``)."""
    release = getattr(provider, "release", None)
    if BOUNDED and callable(release):
        release()


def measured(stage: Callable[P, StageResult]) -> Callable[P, StageResult]:
    """Run ``stage`` under :class:`PeakRss` and add its peak as the ``peak_rss_mb`` fact.

    Freed memory is handed back to the system while the stage runs and after it
    (:func:`release_free_memory`), so each stage's figure is its own and not what an earlier stage
    left in the allocator.
    """

    @functools.wraps(stage)
    def run(*args: P.args, **kwargs: P.kwargs) -> StageResult:
        if BOUNDED:
            bound_allocator()
        with PeakRss(trim=BOUNDED) as peak:
            result = stage(*args, **kwargs)
        if BOUNDED:
            release_free_memory()
        logger.info(
            "%s: resident %.0f MB before, %.0f MB at most, %.0f MB after",
            stage.__name__,
            peak.start_mb or 0.0,
            peak.peak_mb or 0.0,
            status_mb("VmRSS") or 0.0,
        )
        if peak.peak_mb is None:
            return result
        facts = {**result.facts, PEAK_RSS_FACT: float(round(peak.peak_mb, 1))}
        return dataclasses.replace(result, facts=facts)

    return run
