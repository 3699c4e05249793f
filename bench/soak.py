"""Soak: 200 spoken turns through one daemon runtime; does memory grow?

The whole runtime runs as ``heisenberg run`` would (the bus with its event logger, persistent
history in a temporary SQLite file, the real wake word, whisper, Piper and a real llama.cpp
server), on a spoken "Hey Jarvis, <question>" replayed from a WAV file. Each replay waits
until the previous turn is finished, so that every replay is a whole turn, not a barge-in.
RSS of this process is sampled after each turn. From turn 20 on (caches and arenas warmed
up) RSS goes up and down by ~20 MB as the allocators take and give back memory, so one sample
against another says little; growth is given three ways: last minus turn 20, the peak of the
second half of the turns minus the peak of the first half, and the least-squares slope.

    python bench/soak.py --turns 200 --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import free_port, run, summary

from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of, resample
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import AudioSource
from heisenberg.core.config import Config
from heisenberg.core.states import State
from heisenberg.main import Runtime, load_voice_engines
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.voice.tts import PiperTTS

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "What color is the sky?", "Name a large animal."]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class ReplaySource(AudioSource):
    """The recorded turns, one after another, each as soon as the previous turn is done."""

    name = "replay"

    def __init__(self, turns: list[np.ndarray], count: int) -> None:
        self.turns = turns
        self.count = count
        self.voice: VoiceLoop | None = None

    def _idle(self) -> bool:
        voice = self.voice
        assert voice is not None
        task = voice._turn_task
        return voice.state is State.IDLE and (task is None or task.done())

    async def _wait_idle(self) -> None:
        while True:
            if self._idle():
                return
            await asyncio.sleep(0.02)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        offset_ms = 0
        for i in range(self.count):
            await self._wait_idle()
            for chunk in chunks_of(self.turns[i % len(self.turns)]):
                yield AudioChunk(chunk.pcm, chunk.rate_hz, offset_ms + chunk.timestamp_ms)
                await asyncio.sleep(0)
            offset_ms += len(self.turns[i % len(self.turns)]) * 1000 // RATE_HZ
        await self._wait_idle()


async def measure(args: argparse.Namespace) -> dict[str, object]:
    config = Config()
    config = dataclasses.replace(
        config,
        llm=dataclasses.replace(config.llm, url=args.url, max_tokens=args.max_tokens,
                                temperature=0.0),
        server=dataclasses.replace(config.server, port=free_port(), threads=args.threads),
        camera=dataclasses.replace(config.camera, enabled=False),
        audio=dataclasses.replace(config.audio, earcons=False))
    with tempfile.TemporaryDirectory() as tmp:
        config = dataclasses.replace(config, history=dataclasses.replace(
            config.history, path=str(Path(tmp) / "history.sqlite3")))
        tts = PiperTTS(config.tts, deterministic=True)

        def spoken(text: str) -> np.ndarray:
            return resample(tts.synthesize(text).array(), tts.rate_hz, RATE_HZ)

        pause = np.zeros(RATE_HZ * 3 // 10, np.int16)
        tail = np.zeros(RATE_HZ * 2, np.int16)
        turns = [np.concatenate([pause, spoken("Hey Jarvis."), pause, spoken(q), tail])
                 for q in QUESTIONS]
        async with Runtime(config) as rt:
            engines = await load_voice_engines(config)
            source = ReplaySource(turns, args.turns)
            voice = rt.voice_loop(engines, source, NullSink())
            source.voice = voice
            samples: list[tuple[int, float]] = []
            done = 0
            started = time.monotonic()
            task = asyncio.create_task(voice.run())
            while not task.done():
                finished = voice._finished_turns()
                if finished > done:
                    done = finished
                    gc.collect()
                    samples.append((done, rss_mb()))
                await asyncio.sleep(0.05)
            turns_run = await task
            elapsed = time.monotonic() - started
            stored = rt.assistant.session.store.count() if rt.assistant.session.store else 0
    answered = sum(1 for t in turns_run if t.outcome is not None and t.outcome.answer)
    failed = sum(1 for t in turns_run if t.outcome is not None and t.outcome.error is not None)
    warm = next((rss for n, rss in samples if n >= args.warmup), samples[0][1])
    last = samples[-1][1]
    after = [(n, rss) for n, rss in samples if n >= args.warmup] or samples
    half = max(1, len(after) // 2)
    peaks = max(r for _, r in after[half:] or after) - max(r for _, r in after[:half])
    slope = (float(np.polyfit([n for n, _ in after], [r for _, r in after], 1)[0]) * 100
             if len(after) > 1 else 0.0)
    return {
        "benchmark": "soak", "turns_requested": args.turns, "turns_completed": len(turns_run),
        "answered": answered, "failed": failed, "history_rows": stored,
        "elapsed_s": round(elapsed, 1),
        "rss_mb": {"after_turn_1": round(samples[0][1], 1),
                   f"after_turn_{args.warmup}": round(warm, 1),
                   "last": round(last, 1), "max": round(max(r for _, r in samples), 1)},
        "rss_growth_after_warmup_mb": {
            f"last_minus_turn_{args.warmup}": round(last - warm, 1),
            "peak_second_half_minus_first_half": round(peaks, 1),
            "slope_per_100_turns": round(slope, 2)},
        "rss_samples": [(n, round(r, 1)) for n, r in samples[:: max(1, len(samples) // 20)]],
        "turn_total_s": summary([t.timings.seconds("total") for t in turns_run
                                 if t.timings.seconds("total")], 2),
        "config": {"max_tokens": args.max_tokens, "server_threads": args.threads,
                   "llm_url": args.url or "managed"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--url", default="", help="an already running server (default: managed)")
    parser.add_argument("--out", default="bench/results/soak.json")
    run(measure, parser)


if __name__ == "__main__":
    main()
