"""How high the bundled verifier's gate on an enrolled one should be (``BUNDLED_GATE``).

    python bench/enroll_gate.py [--users pico-us mbrola-us1 flite-awb] [--seed 21]

For each user voice (dev voices only: the gate is chosen here, bench/wakeword.py
--personal-only measures it on a test voice), ``heisenberg enroll``'s training on six takes,
then for each gate: that voice's wake phrases (with a question) heard clean and over the
test half of real noise at 10 dB, its near misses that wake it, and other voices' wake
phrases that wake it. Writes bench/results/enroll_gate.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from speech_sets import mix, noise_bank, voices
from wakeword import NEAR, QUESTIONS, WAKE

from heisenberg.audio.format import RATE_HZ, chunks_of
from heisenberg.core.config import WakeWordConfig
from heisenberg.enroll import other_voice, train_personal
from heisenberg.voice.verifier import bundled_verifier
from heisenberg.voice.wakeword import OpenWakeWordEngine

GATES = (0.0, 0.3, 0.5, 0.6, 0.8, 0.9)


def sweep(user_name: str, seed: int) -> dict[str, dict[str, float]]:
    cast = {v.name: v for v in voices()}
    bank = noise_bank()
    kinds = sorted(bank)
    rng = np.random.default_rng(seed)
    user = cast[user_name]
    personal, _ = train_personal([user.render("Hey Jarvis.", rng) for _ in range(6)],
                                 "hey_jarvis", other_voice("hey_jarvis", seed))
    bundled = bundled_verifier("hey_jarvis")
    assert bundled is not None
    wake = [(user.render(WAKE[i % 3] + ", " + QUESTIONS[i % 5], rng), kinds[i % len(kinds)])
            for i in range(20)]
    near = [(user.render(p, rng), kinds[i % len(kinds)]) for i, p in enumerate(NEAR * 2)]
    others = [(cast[n].render(WAKE[i % 3] + ".", rng), "") for n in cast if n != user_name
              for i in range(3)]
    out = {}
    for gate in GATES:
        personal.gate = (bundled, gate)

        def rate(clips: list[tuple[np.ndarray, str]], snr: float | None) -> float:
            hits = 0
            for audio, kind in clips:
                engine = OpenWakeWordEngine(WakeWordConfig(), verifiers={"hey_jarvis": personal})
                mixing = np.random.default_rng(1)
                pcm = (np.concatenate([np.zeros(RATE_HZ, np.int16), audio,
                                       np.zeros(2 * RATE_HZ, np.int16)]) if snr is None
                       else mix(audio, bank[kind], snr, mixing, RATE_HZ, 2 * RATE_HZ))
                hits += any(d.confirmed for c in chunks_of(pcm) if (d := engine.process(c)))
                engine.close()
            return round(hits / len(clips), 3)

        out[f"{gate:g}"] = {"recall_clean": rate(wake, None), "recall_10dB": rate(wake, 10.0),
                            "near_miss_clean": rate(near, None),
                            "near_miss_10dB": rate(near, 10.0),
                            "other_voices_accepted": rate(others, None)}
        print(user_name, gate, out[f"{gate:g}"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", nargs="+", default=["pico-us", "mbrola-us1", "flite-awb"])
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--out", default="bench/results/enroll_gate.json")
    args = ap.parse_args()
    dev = {v.name for v in voices() if v.split == "dev"}
    if not set(args.users) <= dev:
        raise SystemExit(f"choose the gate on dev voices only: {sorted(dev)}")
    result = {"seed": args.seed, "by_user": {u: sweep(u, args.seed) for u in args.users}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
