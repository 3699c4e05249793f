"""``heisenberg enroll``: a personal wake word verifier, trained on the user's own voice.

A few takes of the user saying the wake phrase (from the microphone or WAV files) are the
positives, each also heard at two levels, with a little hiss, and over people talking and
over a rumble at 10 and 5 dB (a noisy room). The negatives are what
should not wake it: the wake phrase and near misses said by another voice (the bundled
Piper voice at several speeds and pitches), the takes pitch-shifted far out of one person's
range (another speaker's size), and the user's takes away from the wake word.
The verifier (``heisenberg.voice.verifier``) is stored beside the config; from then on a
candidate of that model is confirmed only when it sounds like those takes and the bundled
verifier, which knows near misses ("Hey Jervis") of many voices, does not rule it out
(``verifier.BUNDLED_GATE``). Its threshold is set from a leave-one-take-out check, so that
every take would have been heard.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import numpy as np

from heisenberg.audio.format import RATE_HZ, read_wav, resample
from heisenberg.core.config import Config, TTSConfig
from heisenberg.core.errors import AudioDeviceError, ModelError
from heisenberg.voice.verifier import Verifier, block_features, personal_path
from heisenberg.voice.wakeword import wake_word_text

NEAR_MISSES = ("Hey {x}vis.", "{W}.", "Hey there.", "Okay.", "Hey service.", "Hey Travis.",
               "Hey Harvey.", "Hey Marvin.", "Hey, what is it?", "Hey you.")
MIN_TAKES = 3


class Embedder:
    """Audio → (model scores, block features) per 80 ms frame, with one model's stream."""

    def __init__(self, model: str) -> None:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        from heisenberg.voice.wakeword import BUILTIN_MODELS

        self.model = (OpenWakeWord.from_builtin(Model(model)) if model in BUILTIN_MODELS
                      else OpenWakeWord.from_model(Path(model).expanduser()))
        self.features = OpenWakeWordFeatures.from_builtin()

    def __call__(self, samples: np.ndarray, pad: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``pad``: add 1 s of silence before and 0.5 s after (a take is cut tight)."""
        self.model.reset()
        pcm = samples.astype(np.int16)
        if pad:
            pcm = np.concatenate([np.zeros(RATE_HZ, np.int16), pcm,
                                  np.zeros(RATE_HZ // 2, np.int16)])
        scores, feats = [], []
        for i in range(0, len(pcm) - 1279, 1280):
            for emb in self.features.process_streaming(pcm[i:i + 1280].tobytes()):
                for score in self.model.process_streaming(emb):
                    scores.append(score)
                    feats.append(block_features(self.model.embeddings[-16:], score))
        return np.array(scores), np.array(feats)

    def close(self) -> None:
        self.model.close()
        self.features.close()


def _variants(samples: np.ndarray, rng: np.random.Generator, babble: np.ndarray
              ) -> list[np.ndarray]:
    """A take as the microphone might hear it again: as it was, quieter, louder, over a
    little hiss, and in a noisy room: over other people talking (``babble``) and over a
    rumble (pink noise), at 10 and 5 dB. Without the noisy copies a personal verifier heard
    its own user in 10 dB music only 5-45 % of the time (bench/wakeword.py)."""
    x = samples.astype(np.float64)
    power = float(np.mean(x ** 2)) or 1.0
    out = [x, x * 0.5, x * 1.6, x + rng.normal(0, np.sqrt(power / 10 ** (20 / 10)), len(x))]
    pink = _pink_noise(len(x), rng)
    for snr_db in (10.0, 5.0):
        for bed in (_stretch_of(babble, len(x), rng), pink):
            scale = np.sqrt(power / (float(np.mean(bed ** 2)) or 1.0) / 10 ** (snr_db / 10))
            out.append(x + bed * scale)
    return [np.clip(v, -32768, 32767).astype(np.int16) for v in out]


def _stretch_of(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, max(1, len(audio) - length)))
    return np.resize(audio[start:start + length], length).astype(np.float64)


def _pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls with frequency as 1/f, like a fan, traffic or a hum-less room."""
    spectrum = np.fft.rfft(rng.normal(0, 1, length))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, length)


def _peak_rows(feats: np.ndarray, k: int, width: int = 2) -> np.ndarray:
    return feats[max(0, k - width):k + width + 1]


def _off_peak_rows(feats: np.ndarray, k: int) -> np.ndarray:
    keep = [i for i in range(len(feats)) if abs(i - k) > 10]
    return feats[keep]


def train_personal(takes: list[np.ndarray], model: str, other_voice: list[np.ndarray],
                   seed: int = 0) -> tuple[Verifier, list[float]]:
    """The verifier for ``takes`` (16 kHz int16) against ``other_voice`` (negatives), and
    each take's leave-one-out probability."""
    if len(takes) < MIN_TAKES:
        raise ValueError(f"at least {MIN_TAKES} takes of the wake phrase are needed, "
                         f"got {len(takes)}")
    rng = np.random.default_rng(seed)
    embed = Embedder(model)
    try:
        per_take: list[np.ndarray] = []
        negatives: list[np.ndarray] = []
        # The babble: the other voice's sentences one after another.
        babble = np.concatenate([np.zeros(1, np.int16), *other_voice])
        for take in takes:
            rows = []
            peak = -1
            for variant in _variants(take, rng, babble):
                scores, feats = embed(variant)
                # The noisy copies are aligned with the take: its peak is theirs.
                peak = int(np.argmax(scores)) if peak < 0 else peak
                rows.append(_peak_rows(feats, peak))
                negatives.append(_off_peak_rows(feats, peak))
            per_take.append(np.concatenate(rows))
        # Other speakers saying it: Piper, and the takes themselves made a larger and a
        # smaller speaker (a pitch far outside one person's range).
        shifted = [resample(take, int(RATE_HZ * f), RATE_HZ) for take in takes
                   for f in (0.8, 1.25)]
        for audio in [*other_voice, *shifted]:
            scores, feats = embed(audio)
            negatives.append(feats[scores >= 0.01] if (scores >= 0.01).any() else feats)
    finally:
        embed.close()
    neg = np.concatenate(negatives)
    loo = []
    for i in range(len(per_take)):
        rest = np.concatenate([p for j, p in enumerate(per_take) if j != i])
        held = Verifier.train(rest, neg).probabilities(per_take[i][:5])  # the clean take
        loo.append(float(held.max()))
    threshold = float(np.clip(min(loo) * 0.8, 0.05, 0.5))
    verifier = Verifier.train(np.concatenate(per_take), neg, threshold=threshold, info={
        "model": model, "takes": len(takes), "negatives": len(neg),
        "trained": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "leave_one_out": [round(p, 3) for p in loo]})
    return verifier, loo


def other_voice(model: str, seed: int = 0) -> list[np.ndarray]:
    """The wake phrase and near misses said by another voice: Piper at several speeds and
    pitches (its sampling noise on, so no two are the same)."""
    from heisenberg.voice.tts import PiperTTS

    word = wake_word_text(Path(model).stem) or "jarvis"
    phrase = " ".join(w.capitalize() for w in Path(model).stem.split("_")) + "."
    tts = PiperTTS(TTSConfig())
    rng = np.random.default_rng(seed)
    texts = [phrase] * 6 + [t.format(x=word[:1].upper() + word[1:2] + "r", W=word.capitalize())
                             for t in NEAR_MISSES]
    out = []
    for text in texts:
        tts._syn.length_scale = float(rng.uniform(0.8, 1.25))
        audio = tts.synthesize(text)
        pitch = float(rng.uniform(0.85, 1.2))
        out.append(resample(resample(audio.array(), audio.rate_hz, RATE_HZ),
                            int(RATE_HZ * pitch), RATE_HZ))
    return out


def record_takes(config: Config, count: int) -> list[np.ndarray]:
    """``count`` takes from the microphone, 2.5 s each, after a prompt."""
    from heisenberg.audio.portaudio import sounddevice

    sd = sounddevice()
    takes = []
    phrase = " ".join(config.wakeword.models[0].split("_"))
    for i in range(count):
        input(f"take {i + 1}/{count}: press Enter, then say '{phrase}' ")
        try:
            audio = sd.rec(int(2.5 * RATE_HZ), samplerate=RATE_HZ, channels=1, dtype="int16",
                           device=config.audio.input_device or None)
            sd.wait()
        except Exception as exc:  # PortAudio's own errors: no device, busy device
            raise AudioDeviceError(f"could not record from the microphone: {exc}") from exc
        takes.append(audio.reshape(-1))
    return takes


async def cmd_enroll(config: Config, inputs: list[str] | None, count: int,
                     model: str | None, remove: bool) -> int:
    model = model or config.wakeword.models[0]
    name = Path(model).stem
    path = personal_path(config.wakeword.verifier_dir, name)
    if remove:
        if path.is_file():
            path.unlink()
            print(f"removed {path}; the bundled verifier (if any) is used again")
        else:
            print(f"no personal verifier at {path}")
        return 0
    try:
        takes = [read_wav(p) for p in inputs] if inputs else \
            await asyncio.to_thread(record_takes, config, count)
    except (ValueError, OSError) as exc:
        print(f"heisenberg enroll: {exc}", file=sys.stderr)
        return 1
    try:
        negatives = await asyncio.to_thread(other_voice, model)
        verifier, loo = await asyncio.to_thread(train_personal, takes, model, negatives)
    except (ValueError, ModelError) as exc:
        print(f"heisenberg enroll: {exc}", file=sys.stderr)
        return 1
    await asyncio.to_thread(verifier.save, path)
    print(f"personal verifier for {name} written to {path} ({len(takes)} takes; each take, "
          f"left out of training, scored {min(loo):.2f}-{max(loo):.2f}; threshold "
          f"{verifier.threshold:.2f})")
    return 0
