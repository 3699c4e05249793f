"""The voice commands of ``heisenberg``: run, demo, say, devices."""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from heisenberg.audio.format import RATE_HZ, resample, write_wav
from heisenberg.audio.portaudio import sounddevice
from heisenberg.core.config import Config
from heisenberg.core.errors import AudioDeviceError
from heisenberg.main import Runtime, load_voice_engines, make_sink, make_source
from heisenberg.orchestrator.voice import VoiceTurn
from heisenberg.voice.tts import PiperTTS, sentences_of

DEMO_WAKE = "Hey Jarvis."
DEMO_QUESTION = "What is the capital of France?"


def _report(turns: list[VoiceTurn]) -> None:
    for turn in turns:
        if turn.transcript:
            print(f"you: {turn.transcript}", flush=True)
        if turn.interrupted:
            print(f"heisenberg (interrupted): {turn.transcript}", flush=True)
        elif turn.outcome is not None and turn.outcome.error is not None:
            print(f"heisenberg: error: {turn.outcome.error}", file=sys.stderr, flush=True)
        elif turn.outcome is not None and turn.outcome.answer:
            print(f"heisenberg: {turn.outcome.answer.strip()}", flush=True)
            print(f"latency: {turn.timings.line()}", flush=True)


async def cmd_run(config: Config, input_path: str | None, output_path: str | None,
                  realtime: bool, config_path: str | None = None, verbosity: int = 0,
                  resume: bool | None = None) -> int:
    """``resume``: continue the saved conversation; default: yes for the daemon, no for a
    WAV file run."""
    from heisenberg.service.daemon import Daemon

    if not under_systemd():  # there, a missing device is waited for (no restart loop)
        check_devices(input_path, output_path)
    daemon = Daemon(config, config_path, input_path=input_path, output_path=output_path,
                    realtime=realtime, verbosity=verbosity,
                    resume=not input_path if resume is None else resume,
                    on_listening=None if input_path else lambda: print(
                        f"listening for {', '.join(config.wakeword.models)} (Ctrl-C to stop)",
                        flush=True))
    turns = await daemon.run()
    _report(turns)
    if daemon.stopped:  # SIGTERM/SIGINT is how a service ends: a clean stop is 0
        return 0
    if input_path and not turns:
        words = ", ".join(config.wakeword.models)
        print(f"heisenberg: no wake word ({words}) heard in {input_path}", file=sys.stderr)
        return 1
    failed = any(t.outcome is not None and t.outcome.error is not None for t in turns)
    return 1 if failed else 0


def under_systemd() -> bool:
    """Started by systemd (a unit sets these), not by someone at a terminal."""
    return bool(os.environ.get("NOTIFY_SOCKET") or os.environ.get("INVOCATION_ID"))


def check_devices(input_path: str | None, output_path: str | None) -> None:
    """What ``run`` and ``say`` need, checked before anything is started (the LLM server
    takes seconds): PortAudio for a real device, a readable WAV for ``--input``."""
    if input_path:
        try:
            with wave.open(input_path, "rb") as wav:
                if wav.getsampwidth() != 2:
                    raise AudioDeviceError(f"--input {input_path!r}: 16-bit PCM WAV expected, "
                                           f"got {8 * wav.getsampwidth()}-bit")
        except FileNotFoundError:
            raise AudioDeviceError(f"--input {input_path!r} does not exist") from None
        except (OSError, EOFError, wave.Error) as exc:
            raise AudioDeviceError(f"--input {input_path!r} is not a readable WAV file: "
                                   f"{exc}") from exc
    if not input_path or not output_path:
        sounddevice()


def synthesize_question(tts: PiperTTS, wake: str, question: str, path: Path) -> None:
    """Spoken "wake word ... question" as a 16 kHz WAV, the way a microphone would hear it."""
    def speech(text: str) -> np.ndarray:
        return resample(tts.synthesize(text).array(), tts.rate_hz, RATE_HZ)

    pause = np.zeros(RATE_HZ * 3 // 10, np.int16)
    write_wav(path, np.concatenate([pause, speech(wake), pause, speech(question), pause]),
              RATE_HZ)


async def cmd_demo(config: Config, output_path: str, question: str) -> int:
    # A demo is not the user's conversation: nothing read from or written to the history;
    # and it asks about nothing it could see (no camera, no warning about a missing one).
    config = dataclasses.replace(
        config, history=dataclasses.replace(config.history, enabled=False),
        camera=dataclasses.replace(config.camera, enabled=False))
    async with Runtime(config, resume=False) as rt:
        engines = await load_voice_engines(config, deterministic_tts=True)
        assert isinstance(engines.tts, PiperTTS)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "question.wav"
            await asyncio.to_thread(synthesize_question, engines.tts, DEMO_WAKE, question, wav)
            print(f"demo input: spoken '{DEMO_WAKE} {question}' (Piper, resampled to 16 kHz)")
            loop = rt.voice_loop(engines, make_source(config, rt.assistant.record, str(wav)),
                                 make_sink(config, output_path, engines.tts.rate_hz))
            turns = await loop.run()
        await rt.bus.drain()
        _report(turns)
        answered = [t for t in turns if t.outcome is not None and t.outcome.answer]
        if not answered:
            print("heisenberg: the demo turn produced no answer", file=sys.stderr)
            return 1
        print(f"spoken answer written to {output_path}")
        return 0


async def cmd_say(config: Config, text: str, output_path: str | None,
                  seed: int | None = None) -> int:
    """``seed``: Piper's sampling noise drawn from it, so the same text gives the same
    audio every time (onnxruntime's random ops are seeded when the voice loads)."""
    if not output_path:
        sounddevice()  # before Piper loads: a missing PortAudio is a one-line error
    if seed is not None:
        import onnxruntime

        onnxruntime.set_seed(seed)
    tts = await asyncio.to_thread(PiperTTS, config.tts)
    sink = make_sink(config, output_path, tts.rate_hz)
    try:
        for sentence in sentences_of(text, config.language):
            await sink.play(await asyncio.to_thread(tts.synthesize, sentence))
    finally:
        await sink.close()
    return 0


def cmd_devices() -> int:
    print("audio devices:")
    try:
        import sounddevice as sd

        devices = sd.query_devices()
        if len(devices) == 0:
            print("  (none: no sound card found; use --input/--output WAV files)")
        for index, dev in enumerate(devices):
            kinds = [k for k, n in (("in", dev["max_input_channels"]),
                                    ("out", dev["max_output_channels"])) if n]
            print(f"  {index}: {dev['name']} [{'/'.join(kinds)}] "
                  f"{dev['default_samplerate']:.0f} Hz")
    except OSError as exc:
        print(f"  (PortAudio unavailable: {exc}; install Debian package libportaudio2)")
    print("cameras:")
    video = sorted(glob.glob("/dev/video*"))
    for path in video:
        print(f"  {path}")
    if not video:
        print("  (none: no /dev/video* device; a video or image file can be used instead)")
    return 0


def cmd_snapshot(config: Config, output: str) -> int:
    from heisenberg.vision.camera import CameraError, OpenCVCamera

    if not config.camera.enabled:
        print("heisenberg: the camera is disabled (camera.enabled = false)", file=sys.stderr)
        return 1
    camera = OpenCVCamera(config.camera)
    try:
        frame = camera.capture()
    except CameraError as exc:
        print(f"heisenberg: {exc}", file=sys.stderr)
        return 1
    finally:
        camera.close()
    Path(output).write_bytes(frame.jpeg)
    print(f"saved {frame.width}x{frame.height} frame from camera {config.camera.source!r} "
          f"to {output}")
    return 0
