"""French (``language = "fr"``): one key switches speech-to-text (the multilingual whisper,
the language locked), the skills, the system prompts, what the assistant says itself, the
dismissals and the end-of-turn rule. Real French speech: Debian's asterisk-core-sounds-fr
(Canadian French recordings, with the package's transcripts)."""

from __future__ import annotations

import dataclasses
import gzip
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, read_wav, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import LLMConfig, parse_config
from heisenberg.core.errors import ConfigError
from heisenberg.core.events import LLMComplete
from heisenberg.lang import language
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.voice import VoiceLoop, is_dismissal
from heisenberg.skills import Skills, Timers
from heisenberg.voice.endofturn import unfinished
from heisenberg.voice.stt import WhisperSTT, multilingual_model_path
from heisenberg.voice.tts import PiperTTS, SentenceSplitter
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import RunningServer, silence, speech
from tests.test_voice_real import record

VOICE = Path("/usr/share/asterisk/sounds/fr_CA_f_June")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz")
pytestmark = pytest.mark.usefixtures("close_llms")

CLIPS = ["agent-pass", "agent-loggedoff", "auth-thankyou", "vm-nomore", "vm-goodbye",
         "conf-onlyperson"]


def said(name: str) -> str:
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(name + ":"):
                return line.partition(":")[2].strip()
    raise AssertionError(f"{name} has no transcript")


def words(text: str) -> list[str]:
    return re.sub(r"[^\w]+", " ", text.lower().replace("’", "'")).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


@pytest.fixture(scope="module")
def stt_fr() -> WhisperSTT:
    return WhisperSTT(parse_config({"language": "fr"}).stt)


def test_one_key_switches_the_language() -> None:
    config = parse_config({"language": "fr"})
    assert config.language == "fr" and config.stt.language == "fr"
    assert parse_config({}, {"HEISENBERG_LANGUAGE": "fr"}).stt.language == "fr"
    assert parse_config({}).stt.language == "en"
    # stt.language set on its own wins (a French assistant hearing through another model).
    assert parse_config({"language": "fr", "stt": {"language": "en"}}).stt.language == "en"
    with pytest.raises(ConfigError, match="'de' is not one of en, fr"):
        parse_config({"language": "de"})
    with pytest.raises(ConfigError, match="language: expected a name"):
        parse_config({"language": 3})
    assert PromptBuilder(language_code="fr").system.startswith("Tu es Heisenberg")
    assert "Réponds en français" in PromptBuilder("plain", "concise", language_code="fr").system


def test_french_skills_answer_exactly() -> None:
    skills = Skills("fr", clock=lambda: datetime(2026, 12, 1, 20, 42))
    time = skills.answer("Quelle heure est-il ?")
    assert time is not None and time.text == "Il est 20 heures 42."
    date = skills.answer("On est quel jour ?")
    assert date is not None and date.text == "Nous sommes le mardi 1er décembre 2026."
    one = Skills("fr", clock=lambda: datetime(2026, 3, 9, 1, 0)).answer("Tu as l'heure ?")
    assert one is not None and one.text == "Il est 1 heure."
    assert skills.answer("Quelle est la capitale de l'Italie ?") is None


async def test_french_timers_in_words() -> None:
    timers = Timers(lambda e: None)
    skills = Skills("fr", timers=timers)

    def answer(text: str) -> str:
        got = skills.answer(text)
        assert got is not None, text
        return got.text

    assert answer("Règle un minuteur pâtes de 8 minutes.") == "Minuteur pâtes réglé sur 8 minutes."
    assert answer("Mets un minuteur d'une heure et demie.") == \
        "Minuteur réglé sur 1 heure et 30 minutes."
    assert answer("Annule le minuteur.") == ("Vous avez 2 minuteurs : le minuteur pâtes et le "
                                             "minuteur de 1 heure et 30 minutes. Lequel ?")
    assert answer("Annule le minuteur pâtes.") == "J'ai annulé votre minuteur pâtes."
    assert skills.announcement(timers.all()[0]) == \
        "Votre minuteur de 1 heure et 30 minutes est terminé."
    assert answer("Annule tous les minuteurs.") == "J'ai annulé 1 minuteur."
    await timers.close()


def test_french_dismissals_end_of_turn_and_punctuation() -> None:
    for text in ("Stop.", "Arrête-toi !", "Laisse tomber, merci.", "C’est tout.",
                 "Stop, s'il te plaît."):
        assert is_dismissal(text, "fr"), text
    assert not is_dismissal("Arrête de parler de la météo et dis-moi l'heure.", "fr")
    assert unfinished("Quelle est la capitale de", "fr")
    assert not unfinished("Quelle est la capitale de la France ?", "fr")
    assert not unfinished("Quelle heure est-il ?", "fr")  # "il" ends it: whisper closed it
    assert unfinished("Quelle heure est-il et", "fr")
    assert unfinished("Si il pleut demain.", "fr")
    splitter = SentenceSplitter()
    text = ("Bonjour\u202f! Il a dit\u00a0: «\u00a0Oui.\u00a0» Puis il est parti. Cela coûte "
            "1\u202f000 euros. Vraiment\u202f?!")
    pieces = [p for token in text.split(" ") for p in splitter.feed(token + " ")]
    pieces += splitter.flush()
    assert pieces == ["Bonjour !", "Il a dit : Oui.", "Puis il est parti.",
                      "Cela coûte 1000 euros.", "Vraiment ?!"]
    link = SentenceSplitter(link=language("fr").link)
    assert link.feed("Voir https://example.org/a?b=1 pour la suite. ") == \
        ["Voir un lien pour la suite."]


def test_the_multilingual_model_is_joined_once(tmp_path: Path) -> None:
    folder = multilingual_model_path(tmp_path)
    model = folder / "model.bin"
    first = model.stat()
    assert first.st_size > 100_000_000 and not list(folder.glob("*.partial"))
    assert multilingual_model_path(tmp_path) == folder
    assert model.stat().st_mtime_ns == first.st_mtime_ns  # not written again


def test_real_french_speech_is_transcribed_in_french(stt_fr: WhisperSTT) -> None:
    errors = total = 0
    for name in CLIPS:
        samples = np.concatenate([silence(0.3), read_wav(VOICE / f"{name}.wav"),
                                  silence(0.3)])
        ref, hyp = words(said(name)), words(stt_fr.transcribe(samples))
        errors += edits(ref, hyp)
        total += len(ref)
    assert errors / total <= 0.3, (errors, total)


async def test_a_french_voice_turn(llama_server: RunningServer, tts: PiperTTS,
                                   stt_fr: WhisperSTT, tmp_path: Path) -> None:
    """"Hey Jarvis" (the wake word is the same), then a real French sentence: transcribed
    in French, asked with the French system prompt; "Stop." after it is not needed."""
    base = parse_config({"language": "fr"})
    config = dataclasses.replace(base, llm=LLMConfig(url=llama_server.url, max_tokens=16,
                                                     temperature=0.0))
    wav = tmp_path / "fr.wav"
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   read_wav(VOICE / "agent-pass.wav"), silence(3.0)]),
              RATE_HZ)
    bus = EventBus()
    events = record(bus)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, llama_server.url)),
                     FileSource(wav, realtime=True), NullSink(),
                     OpenWakeWordEngine(config.wakeword), stt_fr, tts)
    [turn] = await loop.run()
    await bus.drain()
    heard = set(words(turn.transcript))  # "composez" and "composer" sound the same
    assert {"mot", "passe"} <= heard and heard & {"composez", "composer"}, turn.transcript
    [done] = [e for e in events if isinstance(e, LLMComplete)]
    assert "Tu es Heisenberg" in done.server_prompt and "français" in done.server_prompt


async def test_a_timer_that_cannot_be_set_is_refused_in_french() -> None:
    timers = Timers(lambda e: None)
    skills = Skills("fr", timers=timers)
    refused = skills.answer("Mets un minuteur de 100 heures et 30 minutes.")
    assert refused is not None and refused.text == ("Je n'ai pas pu le faire : un minuteur "
                                                    "dure de 1 seconde à 100 heures.")
    await timers.close()
