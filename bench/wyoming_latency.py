"""Benchmark: what a Wyoming round trip costs against the same engine in-process, per stage,
and a whole voice turn with remote speech-to-text and text-to-speech.

    python bench/wyoming_latency.py [--runs 10] [--turns 6] [--out bench/results/wyoming.json]

The remote side is Heisenberg's own server (``heisenberg wyoming``) in another process on
loopback, so the difference is the protocol and the process hop, not another machine's speed.
Speech is Piper's other voice settings (slower, pitch-shifted) plus the turn questions.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import free_port, run, summary

from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of, resample, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.config import (
    Config,
    LLMConfig,
    ServerConfig,
    STTConfig,
    TTSConfig,
)
from heisenberg.main import Runtime, load_voice_engines
from heisenberg.voice.remote import WyomingSTT, WyomingTTS, WyomingWake
from heisenberg.voice.wakeword import OpenWakeWordEngine

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "What colour is the sky?"]


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def feed_real_time(engine: object, chunks: list[AudioChunk]) -> tuple[list[float], int | None]:
    """Per-chunk cost (ms) and the audio time of the first detection (None: not heard)."""
    costs, heard_at = [], None
    start = time.monotonic()
    for i, chunk in enumerate(chunks):
        time.sleep(max(0.0, start + i * 0.08 - time.monotonic()))
        began = time.perf_counter()
        found = engine.process(chunk)  # type: ignore[attr-defined]
        costs.append((time.perf_counter() - began) * 1000)
        if found is not None and heard_at is None:
            heard_at = (i + 1) * 80
    return costs, heard_at


def start_server(uri: str, llm_url: str) -> subprocess.Popen[str]:
    """``heisenberg wyoming`` in another process; returns once it serves."""
    env = {**os.environ, "HEISENBERG_CONFIG": "", "HEISENBERG_LLM_URL": llm_url,
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "heisenberg", "wyoming", "--uri", uri],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("Wyoming")
    return proc


async def measure(args: argparse.Namespace) -> dict[str, object]:
    config = Config(llm=LLMConfig(max_tokens=32, temperature=0.0),
                    server=ServerConfig(port=free_port(), threads=2))
    config = dataclasses.replace(
        config, audio=dataclasses.replace(config.audio, earcons=False),
        history=dataclasses.replace(config.history, enabled=False),
        camera=dataclasses.replace(config.camera, enabled=False))
    uri = f"tcp://127.0.0.1:{free_port()}"
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count()}, "uri": "loopback"}
    async with Runtime(config) as rt:
        assert rt.server is not None
        proc = await asyncio.to_thread(start_server, uri, rt.server.url)
        try:
            local = await load_voice_engines(config)
            remote_stt, remote_tts = WyomingSTT(uri), WyomingTTS(uri)
            tts = local.tts

            def spoken(text: str) -> np.ndarray:
                audio = resample(tts.synthesize(text).array(), tts.rate_hz, RATE_HZ)
                return resample(audio, RATE_HZ, int(RATE_HZ * 1.06))  # slower, lower

            clip = spoken(QUESTIONS[0])
            stages: dict[str, dict[str, dict[str, float]]] = {}
            for name, fn, arg in (("transcribe_3s", (local.stt.transcribe,
                                                     remote_stt.transcribe), clip),
                                  ("synthesize_sentence", (tts.synthesize,
                                                           remote_tts.synthesize),
                                   "The capital of France is Paris.")):
                here = [await asyncio.to_thread(timed, fn[0], arg) for _ in range(args.runs)]
                there = [await asyncio.to_thread(timed, fn[1], arg) for _ in range(args.runs)]
                stages[name] = {"in_process_ms": summary(here), "wyoming_ms": summary(there)}
            # The wake word, fed in real time (80 ms a chunk) as a microphone would: where in
            # the audio each engine says it heard it, and what a chunk costs the caller.
            audio = np.concatenate([np.zeros(RATE_HZ, np.int16), spoken("Hey Jarvis."),
                                    np.zeros(RATE_HZ * 2, np.int16)])
            chunks: list[AudioChunk] = list(chunks_of(audio))
            wake_stage: dict[str, object] = {}
            for label, engine in (("in_process", OpenWakeWordEngine(config.wakeword)),
                                  ("wyoming", WyomingWake(uri, "hey_jarvis"))):
                costs, heard_at = await asyncio.to_thread(feed_real_time, engine, chunks)
                engine.close()
                wake_stage[label] = {"per_chunk_ms": summary(costs, 2),
                                     "heard_at_audio_ms": heard_at}
            stages["wake"] = wake_stage  # type: ignore[assignment]
            results["stages"] = stages

            # Whole voice turns: local engines, then remote STT and TTS (the wake word local).
            remote_cfg = dataclasses.replace(config, stt=STTConfig(engine="wyoming", uri=uri),
                                             tts=TTSConfig(engine="wyoming", uri=uri))
            remote = await load_voice_engines(remote_cfg)
            turns: dict[str, dict[str, object]] = {}
            with tempfile.TemporaryDirectory() as tmp:
                per: dict[str, tuple[list[float], list[float], list[int]]] = {
                    "local": ([], [], [0]), "remote_stt_tts": ([], [], [0])}
                for i in range(args.turns):  # alternated, so that neither gets the warm-up
                    for label, engines in (("local", local), ("remote_stt_tts", remote)):
                        first_audio, total, answered = per[label]
                        wav = Path(tmp) / f"{label}{i}.wav"
                        write_wav(wav, np.concatenate([
                            np.zeros(RATE_HZ // 4, np.int16), spoken("Hey Jarvis."),
                            np.zeros(RATE_HZ // 4, np.int16),
                            spoken(QUESTIONS[i % len(QUESTIONS)])]), RATE_HZ)
                        rt.assistant.session.reset()
                        loop = rt.voice_loop(engines, FileSource(wav, realtime=True),
                                             NullSink())
                        for turn in await loop.run():
                            if turn.outcome is not None and turn.outcome.spoken:
                                answered[0] += 1
                                first_audio.append(turn.timings.seconds("first_audio") * 1000)
                                total.append(turn.timings.seconds("total") * 1000)
                for label, (first_audio, total, answered) in per.items():
                    turns[label] = {"answered": answered[0], "of": args.turns,
                                    "end_of_speech_to_first_audio_ms": summary(first_audio)
                                    if first_audio else None,
                                    "end_of_speech_to_done_ms": summary(total)
                                    if total else None}
            results["voice_turns"] = turns
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "wyoming.json"))
    run(measure, ap)


if __name__ == "__main__":
    main()
