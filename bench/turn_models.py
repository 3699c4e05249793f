"""Benchmark: telling a finished sentence from one cut mid-way, Smart Turn v3.2 against the
end-of-turn rule on whisper's early transcript (heisenberg/voice/endofturn.py).

    python bench/turn_models.py --smart-turn smart-turn-v3.2-cpu.onnx [--split test]
                                [--out bench/results/turn_models.json]

Smart Turn's ONNX file is published on the registries only inside the pipecat-ai wheel:
``pip download --no-deps pipecat-ai`` and unzip ``pipecat/audio/turn/smart_turn/data/
smart-turn-v3.2-cpu.onnx``. Its features are Whisper's 80-bin log-mel of the last 8 s (padded
in front), computed here with faster-whisper's extractor (the same numbers as pipecat's own
to 1e-7). Each sentence is rendered whole by a voice of ``--split``; the "cut" case is the same
rendering cut after a random word in the middle (word ends from whisper's timestamps), so the
voice's prosody is mid-sentence there. Both cases get 150 ms of silence, as at the moment the
rule judges. Two sets: the usual sentences, and ``OPEN_ENDINGS`` (finished questions that end
on "this", "of", "more"...), reported apart.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import speech_sets as ss
from common import run

from heisenberg.core.config import STTConfig
from heisenberg.voice.endofturn import unfinished
from heisenberg.voice.stt import WhisperSTT, default_model_path

SENTENCES = [
    "Set a timer for ten minutes please.", "What is the capital of France?",
    "I was wondering if you could tell me the time.", "Tell me about the history of Rome.",
    "How many legs does a spider have?", "Can you remind me to call my mother tomorrow?",
    "What do you see on my desk right now?", "My name is Bob and I live in Paris.",
    "Could you explain why the sky is blue?", "Please turn on the lights in the kitchen.",
    "Which one of these two books should I read first?",
    "How long does it take to boil an egg?",
]
OPEN_ENDINGS = [
    "What is this?", "Can you read this?", "What is this thing for?",
    "Where is this bottle from?", "What is it made of?", "Tell me more.",
    "Who is this?", "What do you think this is for?", "Which of these do you like the most?",
    "What are you looking at?", "What can you tell me about this?",
    "What language is this written in?",
]
"""Finished sentences that end on a word that usually begins a phrase (a demonstrative, a
stranded preposition, "more"): what a user asks a camera. Too short ones are not cut."""


class SmartTurn:
    def __init__(self, path: str) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, opts)
        self.features = FeatureExtractor(feature_size=80, chunk_length=8)

    def complete(self, audio: np.ndarray) -> float:
        x = audio.astype(np.float32)[-8 * 16000:] / 32768
        x = np.pad(x, (8 * 16000 - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        feats = self.features(x, padding=0)[None].astype(np.float32)
        return float(self.session.run(None, {"input_features": feats})[0].ravel()[0])


async def measure(args: argparse.Namespace) -> dict[str, object]:
    from faster_whisper import WhisperModel

    timer = WhisperModel(str(default_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=2)
    stt = WhisperSTT(STTConfig())
    smart = SmartTurn(args.smart_turn) if args.smart_turn else None
    rng = np.random.default_rng(args.seed)
    pad = np.zeros(int(0.15 * 16000), np.int16)
    rows: list[dict[str, object]] = []
    smart_ms: list[float] = []
    for voice in [v for v in ss.voices() if v.split == args.split]:
        for text in SENTENCES + OPEN_ENDINGS:
            audio = voice.render(text, rng)
            segments, _ = timer.transcribe(audio.astype(np.float32) / 32768, language="en",
                                           word_timestamps=True, beam_size=1)
            words = [w for s in segments for w in (s.words or [])]
            cases = [("full", audio)]
            if len(words) >= 4:
                k = int(rng.integers(1, len(words) - 2))
                cases.insert(0, ("cut", audio[:int(words[k].end * 16000)]))
            for case, clip in cases:
                clip = np.concatenate([clip, pad])
                early = stt.transcribe(clip)
                row: dict[str, object] = {"voice": voice.name, "case": case, "text": early,
                                          "sentence": text,
                                          "open_ending": text in OPEN_ENDINGS,
                                          "rule_unfinished": unfinished(early)}
                if smart is not None:
                    t0 = time.perf_counter()
                    row["smart_turn_complete"] = round(smart.complete(clip), 3)
                    smart_ms.append((time.perf_counter() - t0) * 1000)
                rows.append(row)

    def share(case: str, key: str, want: bool, open_ending: bool = False) -> float:
        xs = [r for r in rows
              if r["case"] == case and key in r and r["open_ending"] == open_ending]
        if key == "smart_turn_complete":
            hits = [(float(r[key]) > 0.5) == want for r in xs]  # type: ignore[arg-type]
        else:
            hits = [bool(r[key]) == want for r in xs]
        return round(float(np.mean(hits)), 3) if hits else float("nan")

    out: dict[str, object] = {
        "split": args.split,
        "n": {case: sum(r["case"] == case for r in rows) for case in ("cut", "full")},
        "rule": {"cut_held": share("cut", "rule_unfinished", True),
                 "full_ended": share("full", "rule_unfinished", False),
                 "open_endings": {"cut_held": share("cut", "rule_unfinished", True, True),
                                  "full_ended": share("full", "rule_unfinished", False, True)}},
    }
    if smart is not None:
        out["smart_turn"] = {
            "cut_held": share("cut", "smart_turn_complete", False),
            "full_ended": share("full", "smart_turn_complete", True),
            "open_endings": {"cut_held": share("cut", "smart_turn_complete", False, True),
                             "full_ended": share("full", "smart_turn_complete", True, True)},
            "ms_per_call_median": round(float(np.median(smart_ms)), 1)}
    out["rows"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smart-turn", default="", help="smart-turn-v3.2-cpu.onnx")
    parser.add_argument("--split", default="test", choices=("dev", "test"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default="bench/results/turn_models.json")
    run(measure, parser)


if __name__ == "__main__":
    main()
