"""Typed errors: every failure Heisenberg reports has a stable code and a human message.

Every error type lives here. Stages wrap foreign exceptions with ``raise SomeError(...) from
exc``; a turn turns any ``HeisenbergError`` into one ERROR event (then its end), and callers
map errors by type (the API: ``LLMConnectionError`` and ``LLMLoadingError`` are 503).
"""

from __future__ import annotations


class HeisenbergError(Exception):
    """Base class. ``code`` is stable and machine-readable, ``message`` is for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InternalError(HeisenbergError):
    """An unexpected exception (a bug) caught at the edge of a turn."""

    code = "internal"


class AssistantBusyError(HeisenbergError):
    """A typed question arrived while the assistant listens to a spoken one."""

    code = "busy"


class ConfigError(HeisenbergError):
    """The configuration is invalid; the message names the key and the bad value."""

    code = "config"


class TurnTimeoutError(HeisenbergError):
    """A turn stage ran past its limit (``states.thinking_timeout_s``, ``speaking_timeout_s``)."""

    code = "turn_timeout"


class TimerError(HeisenbergError):
    """A timer that cannot be set or changed (a bad duration, none by that id, too many).
    ``why`` names the case, for the skills to say it in the user's language."""

    code = "timer"

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why


class STTError(HeisenbergError):
    """Speech-to-text failed on an utterance."""

    code = "stt"


class TTSError(HeisenbergError):
    """Text-to-speech failed on a sentence."""

    code = "tts"


class ModelError(HeisenbergError):
    """A model file is missing or cannot be loaded."""

    code = "model"


class AudioDeviceError(HeisenbergError):
    """The microphone or speaker failed (missing, unplugged, PortAudio error)."""

    code = "audio_device"


class CameraError(HeisenbergError):
    code = "camera"


class BadImageError(HeisenbergError):
    """An uploaded image is not one, or too large."""

    code = "bad_image"


class RemoteError(HeisenbergError):
    """A Wyoming service used as a remote engine is unreachable, silent or failing."""

    code = "remote"


class HistoryError(HeisenbergError):
    """The history store cannot be opened, read or written."""

    code = "history"


class LLMError(HeisenbergError):
    code = "llm"


class LLMConnectionError(LLMError):
    """The server could not be reached (refused, DNS, reset before any answer)."""

    code = "llm_connection"


class LLMLoadingError(LLMError):
    """The server kept answering 503 (model still loading) past the retry limit."""

    code = "llm_loading"


class LLMServerError(LLMError):
    """The server answered an HTTP error; ``status`` and the server's own message are kept."""

    code = "llm_server"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"LLM server answered HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class LLMProtocolError(LLMError):
    """The stream carried something that is not the protocol (malformed SSE/JSON)."""

    code = "llm_protocol"


class LLMIncompleteError(LLMError):
    """The stream ended before the server said it was done."""

    code = "llm_incomplete"


class LLMStallError(LLMError):
    """No data arrived for longer than the stall timeout."""

    code = "llm_stall"


class VisionUnavailableError(LLMError):
    """An image had to reach the model (``/process-frame``) and the model cannot see."""

    code = "no_vision"


class LLMServerProcessError(LLMError):
    """The managed llama.cpp server could not be started or kept alive."""

    code = "llm_server_process"
