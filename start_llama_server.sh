#!/usr/bin/env bash
# Start a local llama.cpp server for Heisenberg and wait until it is healthy.
#
#   ./start_llama_server.sh [--model PATH] [--mmproj PATH] [--port N] [--ctx N]
#                           [--threads N] [--host ADDR] [--config config.toml]
#
# Each option can also come from the environment (LLAMA_MODEL, LLAMA_MMPROJ, LLAMA_PORT,
# LLAMA_CTX, LLAMA_THREADS, LLAMA_HOST) or from the [server] section of config.toml;
# options win over the environment, which wins over the file. Defaults: the bundled
# gemma3-270m, 127.0.0.1:8088, 2048 tokens of context, 2 threads, no vision.
# The server is llama.cpp's `llama-server` binary when one is on PATH, else llama.cpp's server
# from the xllamacpp wheel. It runs in the foreground until Ctrl-C / SIGTERM.
# Then point Heisenberg at it: [llm] url = "http://127.0.0.1:8088". With llm.api_key set
# (or HEISENBERG_LLM_API_KEY), the server requires that key and Heisenberg sends it.
set -euo pipefail

args=()
[[ -n "${LLAMA_MODEL:-}" ]] && args+=(--model "$LLAMA_MODEL")
[[ -n "${LLAMA_MMPROJ:-}" ]] && args+=(--mmproj "$LLAMA_MMPROJ")
[[ -n "${LLAMA_PORT:-}" ]] && args+=(--port "$LLAMA_PORT")
[[ -n "${LLAMA_CTX:-}" ]] && args+=(--ctx "$LLAMA_CTX")
[[ -n "${LLAMA_THREADS:-}" ]] && args+=(--threads "$LLAMA_THREADS")
[[ -n "${LLAMA_HOST:-}" ]] && args+=(--host "$LLAMA_HOST")

config=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=(--config "$2"); shift 2 ;;
    --model|--mmproj|--port|--ctx|--threads|--host) args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "start_llama_server.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Same code path as Heisenberg's managed mode: builds the command, checks the port and the
# model, waits for /health, prints the URL, and stops the server on SIGTERM/SIGINT.
exec "${PYTHON:-python3}" -m heisenberg "${config[@]}" -v llm-server "${args[@]}"
