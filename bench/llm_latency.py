"""Benchmark: managed llama.cpp server start-up, first-token latency and generation speed.

    python bench/llm_latency.py [--runs 20] [--threads 1] [--out bench/results/llm.json]

Starts the server the way Heisenberg's managed mode does, then streams ``--runs`` answers
through ``LlamaCppLLM`` on both endpoints and writes medians and p90s as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

from common import free_port, run, summary

from heisenberg.core.config import LLMConfig, ServerConfig
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.server import ManagedLlamaServer
from heisenberg.llm.stream import LlamaCppLLM

QUESTIONS = ["What is the capital of France?", "Name a primary colour.",
             "How many legs does a spider have?", "What is two plus two?"]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    server = ManagedLlamaServer(ServerConfig(port=free_port(), threads=args.threads, restart=False,
                                             engine=args.engine))
    started = time.perf_counter()
    await server.start()
    startup_s = time.perf_counter() - started
    results: dict[str, object] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "model": "gemma3-270m q4_k_m (bundled)", "threads": args.threads, "runs": args.runs,
        "engine": args.engine,
        "server_start_to_health_s": round(startup_s, 3),
    }
    try:
        for endpoint, fmt in (("completion", "plain"), ("chat", "openai")):
            cfg = LLMConfig(endpoint=endpoint, max_tokens=args.max_tokens, temperature=0.7)
            llm = LlamaCppLLM(dataclasses.replace(cfg), server.url, server_key=server.api_key)
            builder = PromptBuilder(fmt)
            first, speed, total = [], [], []
            for i in range(args.runs):
                result = await llm.complete(builder.build(QUESTIONS[i % len(QUESTIONS)]))
                first.append(result.first_token_ms)
                total.append(result.total_ms)
                per_s = result.timings.get("predicted_per_second")
                if per_s:
                    speed.append(float(per_s))
            await llm.close()
            results[endpoint] = {"first_token_ms": summary(first), "total_ms": summary(total),
                                 "tokens_per_s": summary(speed) if speed else None}
    finally:
        await server.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--engine", default="auto", choices=("auto", "xllamacpp", "binary"))
    ap.add_argument("--out", default="bench/results/llm.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
