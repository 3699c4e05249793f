"""Benchmark: French (``language = "fr"``) on real French speech.

    python bench/french.py [--clips 120] [--out bench/results/french.json]

- Speech-to-text: Debian's asterisk-core-sounds-fr (Canadian French, one speaker, real
  recordings) against the package's own transcripts, through Heisenberg's ``WhisperSTT`` with
  the config's defaults for French (the multilingual base of ``heisenberg[french]``, the
  language locked), each clip with 0.3 s of room before and after: clean, and at 10 dB SNR
  over real recorded noise (music, machines, a babble of es/it/ru speakers; bench/speech_sets).
  Prompts of one or two words (digits, letters) are left out: their transcripts spell
  numbers as words and whisper writes digits. WER after lower-casing and removing
  punctuation.
- Skills: French phrasings of mine for the time, the date and timers (recognized share), and
  every transcript of the package as ordinary sentences (false matches).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import time
from pathlib import Path

import numpy as np
from common import run, summary
from endpointing import wer_counts
from speech_sets import SOUNDS, load, mix, noise_bank

from heisenberg.core.config import parse_config
from heisenberg.skills import Skills, Timers
from heisenberg.voice.stt import WhisperSTT

TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz"
VOICE = f"{SOUNDS}/fr_CA_f_June"

PHRASINGS = {
    "HassGetCurrentTime": ["Quelle heure est-il ?", "quelle heure est il", "Il est quelle "
                           "heure ?", "Tu as l'heure ?", "Dis-moi l'heure.", "Quelle heure il "
                           "est ?", "Euh, quelle heure est-il ?", "Vous avez l'heure ?"],
    "HassGetCurrentDate": ["Quelle est la date d'aujourd'hui ?", "On est quel jour ?",
                           "Quel jour sommes-nous ?", "C'est quoi la date ?", "Quel jour on "
                           "est aujourd'hui ?", "Nous sommes le combien ?"],
    "HassStartTimer": ["Mets un minuteur de 5 minutes.", "Règle un minuteur de dix minutes.",
                       "Lance un minuteur de 30 secondes.", "Minuteur de 3 minutes.",
                       "Mets un minuteur d'une heure et demie.", "Démarre un minuteur de 2 "
                       "minutes.", "Règle un minuteur pâtes de 8 minutes.", "Programme un "
                       "minuteur d'une minute.", "Mets un minuteur de 20 minutes appelé four."],
    "HassCancelTimer": ["Annule le minuteur.", "Annule le minuteur pâtes.", "Arrête le "
                        "minuteur."],
    "HassTimerStatus": ["Combien de temps reste-t-il ?", "Combien de temps reste-t-il sur le "
                        "minuteur ?", "Il reste combien de temps ?"],
    "HassCancelAllTimers": ["Annule tous les minuteurs."],
}


def transcripts() -> dict[str, str]:
    """Clip name (``dictate/pause``) -> what is said, from the package's own list."""
    found = {}
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8") as lines:
        for line in lines:
            name, sep, text = line.partition(":")
            if sep and not line.startswith(";") and text.strip():
                found[name.strip()] = text.strip()
    return found


def words(text: str) -> list[str]:
    """Lower case, without punctuation (accents kept: they are spelling)."""
    return re.sub(r"[^\w]+", " ", text.lower().replace("’", "'")).split()


def sentence_clips(said: dict[str, str]) -> list[tuple[str, str]]:
    """The prompts of three words or more that have a recording."""
    return [(name, text) for name, text in sorted(said.items())
            if len(text.split()) >= 3 and "[" not in text and "(" not in text
            and os.path.exists(f"{VOICE}/{name}.wav")]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    said = transcripts()
    clips = sentence_clips(said)
    rng = np.random.default_rng(11)
    chosen = [clips[i] for i in sorted(rng.choice(len(clips), min(args.clips, len(clips)),
                                                  replace=False))]
    config = parse_config({"language": "fr"})
    started = time.perf_counter()
    stt = WhisperSTT(config.stt)
    load_s = time.perf_counter() - started
    bank = noise_bank()
    kinds = sorted(bank)
    pad = np.zeros(int(0.3 * 16000), np.int16)
    counts: dict[str, list[tuple[int, int]]] = {"clean": [], "10dB": []}
    ms: list[float] = []
    audio_s = 0.0
    examples = []
    for k, (name, text) in enumerate(chosen):
        speech = load(f"{VOICE}/{name}.wav")
        audio_s += len(speech) / 16000
        noisy = mix(speech, bank[kinds[k % len(kinds)]], 10.0, rng, len(pad), len(pad))
        for condition, samples in (("clean", np.concatenate([pad, speech, pad])),
                                   ("10dB", noisy)):
            t0 = time.perf_counter()
            heard = stt.transcribe(samples)
            if condition == "clean":
                ms.append((time.perf_counter() - t0) * 1000)
            counts[condition].append(wer_counts(text, heard, words))
            if condition == "clean" and len(examples) < 8:
                examples.append({"said": text, "heard": heard})

    def wer(xs: list[tuple[int, int]]) -> float:
        return round(100 * sum(e for e, _ in xs) / max(1, sum(n for _, n in xs)), 1)

    timers = Timers(lambda event: None)
    skills = Skills("fr", timers=timers)
    recognized = {intent: {"n": len(texts), "share": round(
        sum(skills.recognize(t) == intent for t in texts) / len(texts), 3)}
        for intent, texts in PHRASINGS.items()}
    missed = [t for intent, texts in PHRASINGS.items() for t in texts
              if skills.recognize(t) != intent]
    ordinary = sorted(set(said.values()))
    false = [t for t in ordinary if skills.recognize(t) is not None]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": str(Path(stt.config.model_path or "multilingual base (heisenberg[french])")),
        "language": config.stt.language, "clips": len(chosen),
        "audio_s": round(audio_s, 1), "model_load_s": round(load_s, 2),
        "wer_pct": {"clean": wer(counts["clean"]), "10dB": wer(counts["10dB"])},
        "noise": kinds, "transcribe_ms": summary(ms),
        "examples": examples,
        "skills": {"recognized": recognized, "missed": missed,
                   "package_sentences": len(ordinary), "false_matches": false},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--out", default="bench/results/french.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
