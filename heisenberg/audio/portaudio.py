"""Importing sounddevice, whose PortAudio library is a Debian package, not a wheel."""

from __future__ import annotations

from types import ModuleType

from heisenberg.core.errors import AudioDeviceError

PORTAUDIO_MISSING = ("the PortAudio library is missing: install Debian's libportaudio2 "
                     "(sudo apt install libportaudio2)")


def sounddevice() -> ModuleType:
    """``import sounddevice``, or ``AudioDeviceError`` naming the package to install."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found")
        raise AudioDeviceError(PORTAUDIO_MISSING) from exc
    return sd
