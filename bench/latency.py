"""Benchmark: the voice loop's latency per stage, idle CPU while listening, and memory.

    python bench/latency.py [--turns 20] [--server-threads 2] [--out bench/results/latency.json]
    python bench/latency.py --questions skills --out bench/results/latency_skills.json
    python bench/latency.py --model-path SmolLM2-135M-Instruct.Q4_1.gguf --prompt-format chatml \
        --out bench/results/latency_smollm2.json

Each turn is "Hey Jarvis. <question>" spoken by one of several voices (speech_sets: flite,
festival and pitch-shifted Piper voices the defaults were not tuned on, and Piper joe), fed in
real time through the file source (as a microphone would deliver it) into the whole pipeline
with the real models and a managed llama.cpp server; the answer goes to a null sink.
``voice_to_voice_ms``: from the last voiced sample of the question (known from the rendering)
to the first answer sample handed to the sink. Also measured from the end-of-speech decision:
transcript ready, first LLM token, first TTS audio sample handed to the sink, turn done; and
per turn, when the end of speech was decided after the last voiced sample (``per_turn``).
Idle CPU is the daemon process's CPU time over 20 s of real-time audio without the wake word.
``--questions skills`` asks what the skills answer without the LLM ("What time is it?").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import speech_sets as ss
from common import free_port, run, summary
from endpointing import voiced_bounds

from heisenberg.audio.format import RATE_HZ, AudioChunk, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.config import Config, LLMConfig, ServerConfig
from heisenberg.core.latency import STAGES
from heisenberg.main import Runtime, load_voice_engines

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "What colour is the sky?", "Name a big animal.", "What is two plus two?"]
SKILL_QUESTIONS = ["What time is it?", "What's the date today?", "What time is it now?"]


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; "colour"/"color" and "2"/"two" count as equal."""
    text = text.lower().replace("colour", "color").replace("2", "two")
    return re.sub(r"[^a-z ]", "", text).split()


class FirstSampleSink(NullSink):
    """A null sink that notes when the first chunk reached it (time.monotonic())."""

    first_at: float | None = None

    async def play(self, chunk: AudioChunk) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        await super().play(chunk)


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(args: argparse.Namespace) -> dict[str, object]:
    config = Config(llm=LLMConfig(max_tokens=args.max_tokens, temperature=args.temperature,
                                  prompt_format=args.prompt_format),
                    server=ServerConfig(port=free_port(), threads=args.server_threads,
                                        engine=args.engine, model_path=args.model_path,
                                        pause_for_first_audio=args.pause_for_first_audio))
    config = dataclasses.replace(
        config, audio=dataclasses.replace(config.audio, earcons=False),
        stt=dataclasses.replace(config.stt, early_start_ms=(config.stt.early_start_ms
                                                           if args.early_start_ms < 0
                                                           else args.early_start_ms),
                                early_answer=args.early_answer, vad=args.vad,
                                end_of_turn=args.end_of_turn,
                                end_silence_ms=args.end_silence_ms or config.stt.end_silence_ms,
                                ready_wait_ms=(config.stt.ready_wait_ms if args.ready_wait_ms < 0
                                               else args.ready_wait_ms),
                                preroll_ms=args.preroll_ms or config.stt.preroll_ms,
                                resume_window_ms=(config.stt.resume_window_ms
                                                  if args.resume_window_ms < 0
                                                  else args.resume_window_ms)),
        tts=dataclasses.replace(config.tts, first_phrase=args.first_phrase),
        history=dataclasses.replace(config.history, enabled=False),
        camera=dataclasses.replace(config.camera, enabled=False))
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "models": {"wake": "hey_jarvis", "stt": "tiny.en int8", "tts": "en_US-joe-medium",
                   "llm": Path(args.model_path).name if args.model_path else "gemma3-270m q4_k_m",
                   "prompt_format": args.prompt_format},
        "stt": dataclasses.asdict(config.stt),
        "server_threads": args.server_threads, "engine": args.engine,
        "max_tokens": args.max_tokens, "stt_early_start_ms": config.stt.early_start_ms,
        "early_answer": args.early_answer, "questions": args.questions, "voices": args.voices,
        "gap_ms": args.gap_ms, "temperature": args.temperature,
        "first_phrase": args.first_phrase,
        "pause_for_first_audio": args.pause_for_first_audio,
    }
    questions = SKILL_QUESTIONS if args.questions == "skills" else QUESTIONS
    async with Runtime(config) as rt:
        engines = await load_voice_engines(config)

        # The test voices and Piper joe; or (for tuning) the dev voices alone.
        voices = ([v for v in ss.voices() if v.split == "dev"] if args.voices == "dev" else
                  [v for v in ss.voices() if v.split == "test"] + ss.voices()[:1])
        rng = np.random.default_rng(args.seed)

        with tempfile.TemporaryDirectory() as tmp:
            # Idle: 20 s of speech-free audio in real time, only the wake word engine works.
            idle_wav = Path(tmp) / "idle.wav"
            write_wav(idle_wav, np.zeros(RATE_HZ * 20, np.int16), RATE_HZ)
            loop = rt.voice_loop(engines, FileSource(idle_wav, realtime=True, tail_silence_s=0),
                                 NullSink())
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await loop.run()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            results["idle_cpu_percent_of_one_core"] = round(100 * cpu / wall, 1)

            timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
            transcripts: list[str] = []
            early_answers = 0
            # Why a spoken question gave no timed answer (each should stay at 0).
            missed = {"not_woken": 0, "failed": 0, "empty_answer": 0}
            voice_to_voice: list[float] = []
            by_voice: dict[str, list[float]] = {}
            by_skill: list[float] = []  # first audio of the turns a skill answered
            # Per turn: voice to voice, and the end-of-speech decision after the last voiced
            # sample (voice to voice less the first audio's time after the decision).
            per_turn: list[dict[str, object]] = []
            for i in range(args.turns):
                wav = Path(tmp) / f"turn{i}.wav"
                question = questions[i % len(questions)]
                voice = voices[i % len(voices)]
                asked = voice.render(question, rng)
                audio = np.concatenate([np.zeros(RATE_HZ // 4, np.int16),
                                        voice.render("Hey Jarvis.", rng),
                                        np.zeros(RATE_HZ * args.gap_ms // 1000, np.int16),
                                        asked])
                last_voiced_s = (len(audio) - len(asked) + voiced_bounds(asked)[1]) / RATE_HZ
                write_wav(wav, audio, RATE_HZ)
                rt.assistant.session.reset()
                source, sink = FileSource(wav, realtime=True), FirstSampleSink()
                loop = rt.voice_loop(engines, source, sink)
                turns = await loop.run()
                missed["not_woken"] += not turns
                if turns and sink.first_at is not None and source.started_at is not None:
                    ms = (sink.first_at - source.started_at - last_voiced_s) * 1000
                    voice_to_voice.append(ms)
                    by_voice.setdefault(voice.name, []).append(round(ms))
                    first = next((t.timings.stages_ms["first_audio"] for t in turns
                                  if "first_audio" in t.timings.stages_ms), None)
                    per_turn.append({"voice": voice.name, "question": question,
                                     "voice_to_voice_ms": round(ms),
                                     "decision_ms": None if first is None else round(ms - first)})
                for turn in turns:
                    if turn.outcome is None or turn.outcome.error is not None:
                        missed["failed"] += 1
                        continue
                    if not turn.outcome.answer.strip():
                        missed["empty_answer"] += 1
                        continue
                    for stage, ms in turn.timings.stages_ms.items():
                        timings[stage].append(ms / 1000)
                    result = turn.outcome.result
                    if result is not None and result.stop_reason.startswith("skill:"):
                        by_skill.append(turn.timings.stages_ms.get("first_audio", 0.0))
                    transcripts.append(turn.transcript)
                    early_answers += turn.early_answer
            results["end_of_speech_to_ms"] = {k: summary([x * 1000 for x in v])
                                               for k, v in timings.items() if v}
            results["voice_to_voice_ms"] = summary(voice_to_voice) if voice_to_voice else {}
            results["voice_to_voice_ms_by_voice"] = by_voice
            decided = [float(t["decision_ms"]) for t in per_turn if t["decision_ms"] is not None]
            results["end_decision_after_last_voiced_ms"] = summary(decided) if decided else {}
            results["per_turn"] = per_turn
            results["turns_answered"] = len(timings["total"])
            results["answered_by_skill"] = len(by_skill)
            results["skill_first_audio_ms"] = summary(by_skill) if by_skill else {}
            results["turns_without_answer"] = missed
            results["answers_started_early"] = early_answers
            results["transcripts_correct"] = sum(
                any(words(q) == words(t) for q in questions) for t in transcripts)
            results["transcripts"] = sorted(set(transcripts))
        results["rss_mb"] = {
            "daemon": round(rss_mb(), 1),
            "daemon_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "llm_server": round(rss_mb(rt.server.pid), 1) if rt.server and rt.server.pid else None,
        }
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--server-threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--engine", default="xllamacpp", choices=("auto", "xllamacpp", "binary"))
    ap.add_argument("--early-start-ms", type=int, default=-1,
                    help="stt.early_start_ms: silence before whisper starts early; "
                         "-1: the default")
    ap.add_argument("--early-answer", action=argparse.BooleanOptionalAction, default=True,
                    help="stt.early_answer: start the LLM on the early transcript")
    ap.add_argument("--vad", default="silero", choices=("silero", "webrtc"), help="stt.vad")
    ap.add_argument("--end-of-turn", action=argparse.BooleanOptionalAction, default=True,
                    help="stt.end_of_turn: the end-of-turn rule on the early transcript")
    ap.add_argument("--end-silence-ms", type=int, default=0, help="stt.end_silence_ms; 0: default")
    ap.add_argument("--ready-wait-ms", type=int, default=-1,
                    help="stt.ready_wait_ms; -1: the default")
    ap.add_argument("--resume-window-ms", type=int, default=-1,
                    help="stt.resume_window_ms; -1: the default, 0: off")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.7,
                    help="llm.temperature (0: the same answer to the same transcript, for A/B)")
    ap.add_argument("--first-phrase", action=argparse.BooleanOptionalAction, default=True,
                    help="tts.first_phrase")
    ap.add_argument("--pause-for-first-audio", action=argparse.BooleanOptionalAction,
                    default=True, help="server.pause_for_first_audio")
    ap.add_argument("--questions", default="llm", choices=("llm", "skills"),
                    help="llm: questions for the model; skills: the time and the date")
    ap.add_argument("--preroll-ms", type=int, default=0, help="stt.preroll_ms; 0: default")
    ap.add_argument("--gap-ms", type=int, default=250,
                    help="silence between the wake phrase and the question")
    ap.add_argument("--voices", default="test", choices=("test", "dev"),
                    help="test: the seven test voices and Piper joe; dev: the tuning voices")
    ap.add_argument("--model-path", default="", help="server.model_path; '': the bundled model")
    ap.add_argument("--prompt-format", default="plain", help="llm.prompt_format")
    ap.add_argument("--out", default="bench/results/latency.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
