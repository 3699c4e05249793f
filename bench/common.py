"""What the benchmarks share: a free port, summary statistics, the JSON output, and wake word
scoring."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np

from heisenberg.audio.format import chunks_of
from heisenberg.voice.wakeword import OpenWakeWordEngine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BUSY_LOOP = ("import numpy as np\n"
             "a = np.random.default_rng(0).standard_normal((256, 256))\n"
             "while True:\n"
             "    a = np.tanh(a @ a.T / 256)\n")
"""One core's worth of numeric work, as llama.cpp's threads do while an answer streams."""


@contextlib.contextmanager
def busy(processes: int, nice: int = 0) -> Iterator[None]:
    """``processes`` processes computing for the duration (0: none), at niceness ``nice``
    (the managed LLM server's ``server.nice``; 0: the bench's own priority)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env,
                              preexec_fn=(lambda: os.nice(nice)) if nice else None)
             for _ in range(processes)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def summary(values: list[float], digits: int = 1) -> dict[str, float]:
    """Median, p90, min, max and count of ``values`` (in their own unit)."""
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
    return {"median": round(statistics.median(values), digits), "p90": round(p90, digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "n": len(values)}


def run(measure: Callable[[argparse.Namespace], Awaitable[dict[str, object]]],
        parser: argparse.ArgumentParser) -> None:
    """Parse the arguments (``--out`` among them), measure, write and print the JSON."""
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


class WakeScores:
    """Audio through a wake word engine as one stream (its audio clock keeps running from one
    call to the next): ``scores, fired = wake_scores(pcm)``, a score per 80 ms frame."""

    def __init__(self, engine: OpenWakeWordEngine) -> None:
        self.engine = engine
        self.clock_ms = 0

    def __call__(self, pcm: np.ndarray) -> tuple[list[float], bool]:
        scores: list[float] = []
        fired = False
        for chunk in chunks_of(pcm, start_ms=self.clock_ms):
            fired = self.engine.process(chunk) is not None or fired
            scores.extend(self.engine.last_scores)
            self.clock_ms = chunk.timestamp_ms + int(chunk.duration_ms)
        return scores, fired


def longest_run(scores: list[float], threshold: float) -> int:
    """The most frames in a row at or above ``threshold`` (a detection needs ``patience``)."""
    best = current = 0
    for score in scores:
        current = current + 1 if score >= threshold else 0
        best = max(best, current)
    return best
