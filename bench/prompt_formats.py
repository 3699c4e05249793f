"""Benchmark: which prompt format the bundled model answers in, and how well.

    python bench/prompt_formats.py [--out bench/results/prompt_formats.json]

The bundled gemma3-270m is Google's *base* model (google/gemma-3-270m, not the -it one): it
continues text, it was not trained on a chat template. Each format gets the same questions at
temperature 0 on a managed llama.cpp server; an answer counts as "clean" when it is not empty,
does not repeat the question or the system prompt, leaks no role marker or template token, and
has no run of non-Latin script; "right" when it is clean and contains the expected word.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
from pathlib import Path

from common import free_port, run

from heisenberg.core.config import Config, LLMConfig, ServerConfig
from heisenberg.main import Runtime

QUESTIONS = [("What is the capital of France?", "paris"),
             ("How many legs does a spider have?", "eight|8"),
             ("What colour is the sky on a clear day?", "blue"),
             ("What is two plus two?", "four|4"),
             ("What is the capital of Italy?", "rome"),
             ("Which animal says moo?", "cow"),
             ("What is frozen water called?", "ice"),
             ("How many days are in a week?", "seven|7"),
             ("My name is Bob. What is my name?", "bob"),
             ("What do bees make?", "honey")]
LEAKS = re.compile(r"<start_of_turn>|<end_of_turn>|<\|im_|\[INST\]|^\s*(user|model)\b|"
                   r"\n\s*(User|Assistant|System|model|user)\s*:?", re.IGNORECASE)
NON_LATIN = re.compile(r"[^\x00-\u024f\u2000-\u206f]{2,}")
SETUPS = {"plain, /completion (default)": {"prompt_format": "plain"},
          "gemma template, /completion": {"prompt_format": "gemma"},
          "chatml, /completion": {"prompt_format": "chatml"},
          "/v1/chat/completions (the GGUF's template)": {"prompt_format": "openai",
                                                          "endpoint": "chat"}}


async def measure(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {
        "model": args.model or "gemma3-270m q4_k_m (base model)", "questions": len(QUESTIONS)}
    base = Config(llm=LLMConfig(max_tokens=40, temperature=0.0),
                  server=ServerConfig(port=free_port(), threads=2,
                                      **({"model_path": args.model} if args.model else {})))
    base = dataclasses.replace(base, history=dataclasses.replace(base.history, enabled=False))
    table: dict[str, object] = {}
    async with Runtime(base) as rt:
        for label, llm in SETUPS.items():
            config = dataclasses.replace(base, llm=dataclasses.replace(base.llm, **llm))
            rt.assistant.reconfigure(config)
            clean = right = empty = 0
            samples = []
            firsts: list[float] = []
            speeds: list[float] = []
            for question, expected in QUESTIONS:
                rt.assistant.session.reset()
                outcome = await rt.assistant.ask(question)
                answer = outcome.answer if outcome.error is None else ""
                if outcome.result is not None:
                    firsts.append(outcome.result.first_token_ms)
                    per_s = outcome.result.timings.get("predicted_per_second")
                    if per_s:
                        speeds.append(float(per_s))
                echo = (question.lower()[:24] in answer.lower()
                        or "short spoken sentences" in answer.lower())
                ok = (bool(answer) and not echo and not LEAKS.search(answer)
                      and not NON_LATIN.search(answer))
                clean += ok
                empty += not answer
                right += ok and bool(re.search(expected, answer.lower()))
                samples.append({"question": question, "answer": answer[:160]})
            first_ms = round(statistics.median(firsts)) if firsts else None
            speed = round(statistics.median(speeds), 1) if speeds else None
            table[label] = {"clean": clean, "right": right, "empty": empty,
                            "samples": samples, "first_token_ms": first_ms,
                            "tokens_per_s": speed}
    results["formats"] = table
    results["note"] = ("first_token_ms: median from the request (the server measured); "
                       "tokens_per_s: llama.cpp's predicted_per_second, median")
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="another GGUF to serve (default: the bundled gemma3-270m)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "prompt_formats.json"))
    run(measure, ap)


if __name__ == "__main__":
    main()
