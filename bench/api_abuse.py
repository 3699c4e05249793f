"""What hostile requests cost the daemon: image bombs, foreign origins, rebinding hosts.

Runs the real API in this process (no LLM is reached: every request here is refused before),
sends each kind of request, concurrently where it matters, and records the time to the answer
and the growth of the process's peak memory (``ru_maxrss``). The 47 KB PNG that claims
20000x20000 pixels used to be decoded (about 1.2 GB for the pixels, ~2.3 GB peak per
request); now its header is read and it is refused.

    python bench/api_abuse.py --out bench/results/api_abuse.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import resource
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import free_port

from heisenberg.api.server import API
from heisenberg.core.config import APIConfig, Config, HistoryConfig, LLMConfig
from heisenberg.main import Runtime


def bomb_png(side: int) -> bytes:
    """A real, complete PNG of side x side black pixels at 1 bit per pixel: tiny on disk,
    3 bytes a pixel once decoded to BGR."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + the row's bits
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, float]:
    start = time.perf_counter()
    async with session.post(url, **kwargs) as resp:
        await resp.read()
        return resp.status, (time.perf_counter() - start) * 1000


async def main(rounds: int) -> dict[str, Any]:
    config = Config(llm=LLMConfig(url=f"http://127.0.0.1:{free_port()}"),
                    api=dataclasses.replace(APIConfig(enabled=True, port=free_port())),
                    history=HistoryConfig(enabled=False))
    results: dict[str, Any] = {"rounds": rounds}
    async with Runtime(config) as rt:
        api = API(config, rt.assistant)
        await api.start()
        try:
            async with aiohttp.ClientSession() as session:
                ask = api.url + "/api/v1/ask"
                for side in (20000, 33000):
                    png = bomb_png(side)
                    body = {"text": "What is this?", "image": base64.b64encode(png).decode()}
                    before = peak_mb()
                    got = await asyncio.gather(*(timed(session, ask, json=body)
                                                 for _ in range(6)))
                    results[f"png_{side}"] = {
                        "file_kb": round(len(png) / 1024, 1),
                        "claimed_pixels": side * side, "concurrent_requests": 6,
                        "statuses": sorted({s for s, _ in got}),
                        "refused_ms_median": round(statistics.median(t for _, t in got), 1),
                        "peak_rss_growth_mb": round(peak_mb() - before, 1)}
                for name, headers, data in (
                        ("foreign_origin", {"Origin": "http://evil.example",
                                            "Content-Type": "text/plain"}, b'{"text":"x"}'),
                        ("rebinding_host", {"Host": "evil.example"}, b'{"text":"x"}'),
                        ("form_body", {"Content-Type": "application/x-www-form-urlencoded"},
                         b"text=x")):
                    got = [await timed(session, ask, headers=headers, data=data)
                           for _ in range(rounds)]
                    times = sorted(t for _, t in got)
                    results[name] = {"statuses": sorted({s for s, _ in got}),
                                     "median_ms": round(statistics.median(times), 2),
                                     "p90_ms": round(times[int(len(times) * 0.9)], 2)}
        finally:
            await api.stop()
    results["peak_rss_mb"] = round(peak_mb(), 1)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/results/api_abuse.json"))
    args = ap.parse_args()
    figures = asyncio.run(main(args.rounds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
