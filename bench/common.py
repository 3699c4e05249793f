"""What the benchmarks share: a free port, summary statistics, the JSON output."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
