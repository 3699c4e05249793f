"""Benchmark: when does Heisenberg decide that the user has finished speaking?

    python bench/endpointing.py [--split test] [--sentences 16] [--recorded 10]
                                [--ready-after-ms 300] [--ready-wait-ms N]
                                [--configs default,...] [--out bench/results/endpointing.json]

Each question runs through the daemon's own hearing path (``hearing_for`` with the config's
VAD, end-of-turn rule and whisper) from a known start: 1 s of lead-in (silence or noise) is
fed first, so the pre-roll holds it, then listening starts as after a wake word (the wake word
itself is measured by bench/wakeword.py; here it would only add its misses). After the speech
the noise goes on for 8 s, as a fan or music does. Measured per condition (clean, and real
recorded music and machine sounds at 10 and 5 dB SNR):

- the delay from the last voiced sample (known from the clean rendering) to the end decision;
- questions split (the end decided before the speech was over) or run to the length limit;
- WER of the transcript through the path against the same whisper model on the same audio
  (the mixed signal cut exactly to the speech);
- questions with a 1.0 s and 1.5 s pause in the middle: split or not;
- with ``stt.resume_window_ms`` (the default; ``no_resume``: off), speech after an end decided
  too soon continues the question: split first, then joined again (``split_first``,
  ``continued``; ``split`` counts those lost), and continuations where the question was over
  (``false_continuation``: noise). There is no speaker here: this is the case of headphones,
  or of an answer not yet playing; over an answer that plays, the echo canceller's gate
  applies (bench/interrupt.py measures that gate).

Voices: the ``test`` voices of speech_sets (never tuned on) by default, and real recorded
speech in French, Spanish, Italian and Russian (Debian's asterisk prompts, test half) for
timing. The configs compared (``--configs``; each case's noise comes from its own seed, so
every config hears the same mixes): the default (Silero + end-of-turn rule) and the same without
the same-words rule (``no_same_words``: a sound that added no words restarts the silence);
Silero without the rule (``silero_no_rule``) and the old webrtcvad endpointing
(``webrtc_no_rule``); ``--ready-wait-ms 0`` for no wait for the early answer.

There is no LLM here: the voice loop tells the hearing while the early answer's first audio is
not ready (``stt.ready_wait_ms``), and ``--ready-after-ms`` stands for how long that takes
after a pause (measured by bench/latency.py on this machine; 0 = a machine fast enough that
the end never waits).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from collections.abc import Callable, Iterator

import numpy as np
import speech_sets as ss
from common import run, summary

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.core.config import Config, STTConfig
from heisenberg.core.events import VoiceInterrupt
from heisenberg.orchestrator.hearing import Pause, Resumed, Utterance, hearing_for
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.wakeword import Detection, WakeWordEngine

CHUNK = 1280
LEAD_S = 1.0
TAIL_S = 8.0

SENTENCES = [  # long sentences with commas; not the ones the end-of-turn rule was drafted on
    "When you have a moment, could you tell me how far away the moon is?",
    "I would like to make pancakes tonight, so what do I need to buy?",
    "Before I leave for work, tell me whether it will rain this afternoon.",
    "My sister is coming to visit next week, and I need ideas for dinner.",
    "If a train leaves at noon and travels for three hours, when does it arrive?",
    "Look at the picture on my screen and tell me what colour the car is.",
    "I keep forgetting things, so remind me to water the plants on Sunday.",
    "Explain to me, in simple words, how a rainbow is made.",
    "What is the tallest mountain in Europe, and how high is it?",
    "Yesterday I read about black holes, but I still do not understand them.",
    "Could you suggest a good book for a long flight to Japan?",
    "How many minutes should I cook rice, and how much water do I add?",
    "Tell me a short joke about a penguin who lives in the desert.",
    "My phone battery dies quickly, what can I do to make it last longer?",
    "Which planet is closest to the sun, and how hot is it there?",
    "Describe what you see on my desk, starting with the objects on the left.",
]
PAUSED = [  # (first part, rest): the user stops mid-sentence, then goes on
    ("Can you tell me the name of", "the river that runs through Paris?"),
    ("I want to know how long it takes to fly from London to", "New York."),
    ("Remind me to call my mother and", "my brother tomorrow morning."),
    ("What is the difference between a frog and", "a toad?"),
    ("Set an alarm for", "seven thirty tomorrow."),
    ("When my friends come over tonight,", "what game should we play?"),
    ("Tell me a story about a dragon who", "is afraid of the dark."),
    ("How many people live in", "the biggest city of Canada?"),
]
CONDITIONS = [("clean", None), ("10dB", 10.0), ("5dB", 5.0)]


class _NoWakeWord(WakeWordEngine):
    """Listening is started at a known sample instead (see the module docstring)."""

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        return None

    @property
    def names(self) -> list[str]:
        return ["hey_jarvis"]


def voiced_bounds(audio: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than 3 % of the peak frame."""
    frames = audio[:len(audio) // 160 * 160].astype(np.float64).reshape(-1, 160)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.03 * rms.max())
    return int(loud[0] * 160), int((loud[-1] + 1) * 160)


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("colour", "color")).split()


def wer_counts(ref: str, hyp: str, split: Callable[[str], list[str]] = words
               ) -> tuple[int, int]:
    """(edits, reference words): word-level Levenshtein distance, on the words ``split``
    finds."""
    r, h = split(ref), split(hyp)
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[-1], len(r)


@dataclasses.dataclass
class Case:
    voice: str
    text: str
    audio: np.ndarray
    """Clean speech, 16 kHz."""
    pause_s: float = 0.0
    """The silence joined into the middle of the sentence, seconds (0: none)."""


def hear(config: Config, stt: WhisperSTT, case: Case, noise: np.ndarray | None,
         snr_db: float | None, rng: np.random.Generator,
         ready_after_ms: int = 0, same_words_end: bool = True) -> dict[str, object]:
    """``ready_after_ms``: audio time from a ``Pause`` to the early answer's first audio
    being ready, as the voice loop would tell the hearing (``preparing``); there is no LLM
    here, so it is a given figure (bench/latency.py measures it on this machine)."""
    lead, tail = int(LEAD_S * RATE_HZ), int(TAIL_S * RATE_HZ)
    first, last = voiced_bounds(case.audio)
    if noise is None or snr_db is None:
        stream = np.concatenate([np.zeros(lead, np.int16), case.audio,
                                 np.zeros(tail, np.int16)])
    else:
        stream = ss.mix(case.audio, noise, snr_db, rng, lead, tail)
    hearing = hearing_for(config, _NoWakeWord(), transcribe=stt.transcribe)
    hearing.same_words_end = same_words_end
    lead_chunks = lead // CHUNK
    ended: Utterance | None = None
    ended_at_ms = 0
    end_ms = 0
    first_end_ms: int | None = None
    continued = 0
    window_ms = config.stt.resume_window_ms
    pauses: list[Pause] = []
    started = 0.0
    paused_at_ms: int | None = None
    last_pause_ms = 0
    was_preparing = False
    for n, i in enumerate(range(0, len(stream) - CHUNK + 1, CHUNK)):
        chunk = AudioChunk(stream[i:i + CHUNK].tobytes(), RATE_HZ, i * 1000 // RATE_HZ)
        if n == lead_chunks:
            hearing.start(i * 1000 // RATE_HZ)
            started = time.perf_counter()
        preparing = (paused_at_ms is not None
                     and chunk.timestamp_ms - paused_at_ms < ready_after_ms)
        # Ready between the last chunk and this one: the voice loop ends the wait then.
        items = hearing.answer_ready() if was_preparing and not preparing else []
        was_preparing = preparing
        if not items:
            items = hearing.feed(chunk, preparing=preparing)
        for item in items:
            if isinstance(item, Pause):
                pauses.append(item)
                # The same words as at the last pause: the voice loop takes up the answer
                # it started there, ready when it would have been.
                if not item.repeated:
                    last_pause_ms = chunk.timestamp_ms + round(chunk.duration_ms)
                paused_at_ms = last_pause_ms
            elif isinstance(item, Resumed):
                paused_at_ms = None
            elif isinstance(item, Utterance):
                ended, ended_at_ms = item, chunk.timestamp_ms + round(chunk.duration_ms)
                end_ms = hearing.listen_start_ms + item.ended.audio_ms
                first_end_ms = end_ms if first_end_ms is None else first_end_ms
            elif isinstance(item, VoiceInterrupt) and item.continues:
                # The speaker went on (stt.resume_window_ms): the question is heard again,
                # whole, to its next end.
                continued += 1
                ended, paused_at_ms = None, None
        if ended is not None and (not window_ms or chunk.timestamp_ms + round(
                chunk.duration_ms) > ended_at_ms + window_ms):
            break
        if ended is None and n >= lead_chunks and not hearing.listening_to:
            break
    if ended is None:  # still listening when the noise ended: it would run to the limit
        return {"outcome": "no_end" if hearing.listening_to else "no_speech",
                "pauses": [[p.text, p.unfinished] for p in pauses if p.text is not None]}
    wall_s = time.perf_counter() - started
    end_sample = end_ms * RATE_HZ // 1000
    delay_ms = (end_sample - (lead + last)) * 1000 / RATE_HZ
    split = end_sample < lead + last - 0.2 * RATE_HZ
    assert first_end_ms is not None
    first_split = first_end_ms * RATE_HZ // 1000 < lead + last - 0.2 * RATE_HZ
    got = stt.transcribe(ended.samples)
    same = stt.transcribe(stream[lead + max(0, first - 1600):lead + last + 1600])
    return {"outcome": ended.ended.reason, "delay_ms": round(delay_ms), "split": split,
            "first_split": first_split, "continued": continued,
            "false_continuation": bool(continued) and not first_split,
            "wer_path": wer_counts(case.text, got), "wer_same": wer_counts(case.text, same),
            "pauses": [[p.text, p.unfinished] for p in pauses if p.text is not None],
            "transcript": got, "wall_s": round(wall_s, 3)}


def cases(split: str, n_sentences: int, rng: np.random.Generator) -> Iterator[Case]:
    for voice in [v for v in ss.voices() if v.split == split]:
        for text in SENTENCES[:n_sentences]:
            yield Case(voice.name, text, voice.render(text, rng))


def paused_cases(split: str, rng: np.random.Generator) -> Iterator[Case]:
    for voice in [v for v in ss.voices() if v.split == split]:
        for head, rest in PAUSED:
            a, b = voice.render(head, rng), voice.render(rest, rng)
            a = a[:voiced_bounds(a)[1] + 480]
            b = b[max(0, voiced_bounds(b)[0] - 480):]
            for pause_s in (1.0, 1.5):
                gap = np.zeros(int(pause_s * RATE_HZ), np.int16)
                yield Case(voice.name, f"{head} {rest}", np.concatenate([a, gap, b]),
                           pause_s)


def recorded_cases(limit: int) -> Iterator[Case]:
    for kind in ("asterisk-fr", "asterisk-es", "asterisk-it", "asterisk-ru"):
        paths = [p for _, p in ss.recordings({kind: ss.SPEECH_GLOBS[kind]}, "test")]
        long = [p for p in paths if 1.5 * RATE_HZ < len(ss.load(p)) < 10 * RATE_HZ]
        for path in long[:limit]:
            yield Case(kind, "", ss.load(path))


def table(rows: list[dict[str, object]]) -> dict[str, object]:
    done = [r for r in rows if "delay_ms" in r]
    delays = [float(r["delay_ms"]) for r in done]  # type: ignore[arg-type]
    out: dict[str, object] = {"n": len(rows)}
    if delays:
        out["delay_ms"] = summary(delays, 0)
        out["delay_le_1s"] = round(float(np.mean(np.array(delays) <= 1000)), 3)
    out["split"] = sum(bool(r.get("split")) for r in rows)
    """Ended before the speech was over, for good (the rest lost)."""
    out["split_first"] = sum(bool(r.get("first_split")) for r in rows)
    """The first end came before the speech was over (joined again when it went on)."""
    out["continued"] = sum(bool(r.get("continued")) for r in rows)
    out["false_continuation"] = sum(bool(r.get("false_continuation")) for r in rows)
    """Continued although the question was over (the noise went on): the answer would
    stop and start again."""
    out["max_length"] = sum(r.get("outcome") == "max_length" for r in rows)
    out["no_speech"] = sum(r.get("outcome") == "no_speech" for r in rows)
    out["no_end"] = sum(r.get("outcome") == "no_end" for r in rows)
    """Still listening when the noise stopped, TAIL_S after the speech."""
    for key in ("wer_path", "wer_same"):
        pairs = [r[key] for r in done if key in r and r[key][1]]  # type: ignore[index]
        if pairs:
            out[key] = round(100 * sum(p[0] for p in pairs) / sum(p[1] for p in pairs), 1)  # type: ignore[index]
    return out


async def measure(args: argparse.Namespace) -> dict[str, object]:
    base = Config()
    if args.end_silence_ms:
        base = dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, end_silence_ms=args.end_silence_ms))
    if args.ready_wait_ms >= 0:
        base = dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, ready_wait_ms=args.ready_wait_ms))
    if args.early_start_ms:
        base = dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, early_start_ms=args.early_start_ms))
    configs = {
        "default": base,
        "no_same_words": base,  # speech that adds no words restarts the silence (before)
        "no_resume": dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, resume_window_ms=0)),  # speech after the end is not the question
        "silero_no_rule": dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, end_of_turn=False)),
        "webrtc_no_rule": dataclasses.replace(base, stt=dataclasses.replace(
            base.stt, vad="webrtc", end_of_turn=False)),
    }
    configs = {k: v for k, v in configs.items() if k in args.configs.split(",")}
    stt = WhisperSTT(STTConfig())
    rng = np.random.default_rng(args.seed)
    bank = ss.noise_bank()
    noises = [k for k in bank if k != "babble"]  # babble is speech: no VAD should end on it
    sets = {"sentences": list(cases(args.split, args.sentences, rng)),
            "paused": list(paused_cases(args.split, rng)),
            "recorded": list(recorded_cases(args.recorded))}
    results: dict[str, object] = {}
    details: list[dict[str, object]] = []
    for name, config in configs.items():
        per: dict[str, object] = {}
        for set_name, items in sets.items():
            for c, (cond, snr) in enumerate(CONDITIONS):
                if set_name == "paused" and snr == 5.0:
                    continue
                rows = []
                for k, case in enumerate(items):
                    noise_kind = noises[k % len(noises)]
                    # The same noise for every config: they are compared on the same audio.
                    mixing = np.random.default_rng(
                        (args.seed, list(sets).index(set_name), c, k))
                    row = hear(config, stt, case, bank[noise_kind], snr, mixing,
                               args.ready_after_ms, same_words_end=name != "no_same_words")
                    row["pause_s"] = case.pause_s
                    rows.append(row)
                    details.append({"config": name, "set": set_name, "condition": cond,
                                    "voice": case.voice, "noise": noise_kind if snr else "",
                                    "text": case.text, **{k2: v for k2, v in row.items()
                                                          if k2 != "wer_same"}})
                key = f"{set_name}/{cond}"
                if set_name == "paused":
                    per[key] = {f"{p}s": table([r for r in rows if r["pause_s"] == p])
                                for p in (1.0, 1.5)}
                else:
                    per[key] = table(rows)
                print(name, key, per[key], flush=True)
        results[name] = per
    return {"split": args.split, "noise_kinds": noises, "tail_s": TAIL_S,
            "ready_after_ms": args.ready_after_ms,
            "configs": {k: dataclasses.asdict(v.stt) for k, v in configs.items()},
            "results": results, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("dev", "test"))
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--recorded", type=int, default=10, help="files per language")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-silence-ms", type=int, default=0, help="0: the default")
    parser.add_argument("--early-start-ms", type=int, default=0, help="0: the default")
    parser.add_argument("--configs", default="default,no_resume")
    parser.add_argument("--ready-after-ms", type=int, default=300,
                        help="audio ms from a pause to the early answer's first audio "
                             "(bench/latency.py: ~300 here); 0: at once, as on a fast machine")
    parser.add_argument("--ready-wait-ms", type=int, default=-1, help="stt.ready_wait_ms; "
                        "-1: the default")
    parser.add_argument("--out", default="bench/results/endpointing.json")
    run(measure, parser)


if __name__ == "__main__":
    main()
