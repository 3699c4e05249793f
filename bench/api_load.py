"""API responsiveness while the voice loop works: /api/v1/health latency during real turns.

Runs the daemon (``heisenberg run``) on a WAV of spoken turns fed in real time, with the API
on, and calls ``/api/v1/health`` from 4 loopback clients, each waiting 20 ms between calls
(bounded: about 150 requests/s at most). Only the calls made while a turn is being
transcribed, answered or spoken (state not idle) count for the figure.

    python bench/api_load.py --turns 5 --out bench/results/api_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import free_port, run, summary

from heisenberg.audio.format import RATE_HZ, resample, write_wav
from heisenberg.core.config import TTSConfig
from heisenberg.voice.tts import PiperTTS

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "What color is the sky?"]


def spoken_turns(path: Path, turns: int) -> float:
    tts = PiperTTS(TTSConfig(), deterministic=True)

    def spoken(text: str) -> np.ndarray:
        return resample(tts.synthesize(text).array(), tts.rate_hz, RATE_HZ)

    gap = np.zeros(RATE_HZ * 8, np.int16)  # room for the answer before the next turn
    pause = np.zeros(RATE_HZ * 3 // 10, np.int16)
    parts = []
    for i in range(turns):
        parts += [pause, spoken("Hey Jarvis."), pause, spoken(QUESTIONS[i % len(QUESTIONS)]),
                  gap]
    audio = np.concatenate(parts)
    write_wav(path, audio, RATE_HZ)
    return len(audio) / RATE_HZ


async def client(session: aiohttp.ClientSession, url: str, out: dict[str, list[float]],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(url + "/api/v1/health") as resp:
            body = await resp.json()
        ms = (time.perf_counter() - started) * 1000
        out["idle" if body["state"] == "idle" else "busy"].append(ms)
        await asyncio.sleep(0.02)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "turns.wav"
        audio_s = spoken_turns(wav, args.turns)
        port, llm_port = free_port(), free_port()
        env = {**os.environ, "HEISENBERG_CONFIG": "", "HEISENBERG_API_ENABLED": "true",
               "HEISENBERG_API_PORT": str(port), "HEISENBERG_LLM_URL": args.url,
               "HEISENBERG_SERVER_PORT": str(llm_port), "HEISENBERG_SERVER_THREADS": "1",
               "HEISENBERG_LLM_MAX_TOKENS": "32", "HEISENBERG_CAMERA_ENABLED": "false",
               "HEISENBERG_HISTORY_PATH": str(Path(tmp) / "h.sqlite3")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heisenberg", "run", "--input", str(wav), "--realtime",
            "--output", str(Path(tmp) / "reply.wav"), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        out: dict[str, list[float]] = {"busy": [], "idle": []}
        stop = asyncio.Event()
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8)) as session:
            async with asyncio.timeout(120):
                while True:
                    try:
                        async with session.get(url + "/api/v1/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
            clients = [asyncio.create_task(client(session, url, out, stop))
                       for _ in range(4)]
            await asyncio.wait_for(proc.wait(), audio_s + 120)
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
    busy_ms = sorted(out["busy"])
    p99 = busy_ms[min(len(busy_ms) - 1, int(len(busy_ms) * 0.99))] if busy_ms else 0.0
    return {"benchmark": "api_load", "turns": args.turns, "clients": 4,
            "health_during_turns_ms": {**summary(busy_ms, 2), "p99": round(p99, 2)},
            "health_idle_ms": summary(sorted(out["idle"]), 2) if out["idle"] else {},
            "daemon_exit_code": proc.returncode,
            "config": {"llm_url": args.url or "managed", "max_tokens": 32}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--url", default="", help="a running LLM server (default: managed)")
    parser.add_argument("--out", default="bench/results/api_load.json")
    run(measure, parser)


if __name__ == "__main__":
    main()
