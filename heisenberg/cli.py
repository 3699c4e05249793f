"""The ``heisenberg`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heisenberg import __version__
from heisenberg.core.config import Config, load_config
from heisenberg.core.errors import ConfigError, HeisenbergError
from heisenberg.core.events import Event, LLMToken
from heisenberg.core.logs import setup_logging

if TYPE_CHECKING:
    from heisenberg.orchestrator.assistant import Assistant, TurnOutcome

log = logging.getLogger("heisenberg")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="heisenberg",
                                 description="Local hands-free voice + vision assistant.")
    ap.add_argument("--version", action="version", version=f"heisenberg {__version__}")
    ap.add_argument("--config", metavar="PATH", help="config.toml to use")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="more log output (-vv for debug)")
    # The same options after the command (`heisenberg ask -v ...`); SUPPRESS keeps the
    # value given before it when they are not repeated.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config.toml to use")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv for debug)")
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    ask = command("ask", help="ask one question, stream the answer to stdout")
    ask.add_argument("question", nargs="+")
    ask.add_argument("--image", metavar="FILE", help="an image to ask about (vision models)")
    ask.add_argument("--continue", dest="resume", action="store_true",
                     help="continue the saved conversation (default: a new one)")
    chat = command("chat", help="interactive text chat that keeps history (/reset, /quit)")
    chat.add_argument("--continue", dest="resume", action="store_true",
                      help="continue the saved conversation (default: a new one)")
    run = command("run", help="the hands-free assistant (microphone and speaker, or files)")
    run.add_argument("--input", metavar="WAV", help="read audio from a WAV file, not the mic")
    run.add_argument("--output", metavar="WAV", help="write the spoken answers to a WAV file")
    run.add_argument("--realtime", action="store_true",
                     help="with --input: feed the file at the speed of speech")
    run.add_argument("--continue", dest="resume", action="store_true", default=None,
                     help="with --input: continue the saved conversation (the daemon always "
                          "does)")
    demo = command("demo", help="a whole spoken turn on synthesized speech, no devices")
    demo.add_argument("--output", metavar="WAV", default="heisenberg-demo-reply.wav")
    demo.add_argument("--question", default="What is the capital of France?")
    demo.add_argument("--engine", choices=("llamacpp", "openai", "llava", "vlm-server", "ollama"),
                      help="with --image/--prompt: the backend to ask (default: llm.backend)")
    demo.add_argument("--image", metavar="FILE", help="ask about this image instead of speaking")
    demo.add_argument("--prompt", help="the text to send with --image")
    say = command("say", help="speak text with Piper")
    say.add_argument("text", nargs="+")
    say.add_argument("--output", metavar="WAV", help="write to a WAV file, not the speaker")
    say.add_argument("--seed", type=int, metavar="N",
                     help="Piper's sampling noise from this seed: the same audio every time")
    lis = command("listen", help="the hearing path alone: wake word, end of speech, "
                                 "transcript (no LLM, no speech); shows why it woke or not")
    lis.add_argument("--input", metavar="WAV", help="hear a WAV file, not the microphone")
    lis.add_argument("--json", action="store_true",
                     help="one JSON object per line on stdout (logs on stderr)")
    enr = command("enroll", help="train a personal wake word verifier on your own voice")
    enr.add_argument("--input", metavar="WAV", nargs="+",
                     help="recordings of you saying the wake phrase (else: the microphone)")
    enr.add_argument("--takes", type=int, default=6,
                     help="with the microphone: how many times to say it (default 6)")
    enr.add_argument("--model", help="which wake word (default: the first of wakeword.model)")
    enr.add_argument("--remove", action="store_true",
                     help="delete the personal verifier (the bundled one is used again)")
    command("devices", help="list audio devices and cameras")
    snap = command("snapshot", help="save what the camera sees as a JPEG")
    snap.add_argument("output", metavar="OUT.jpg")
    svc = command("install-service", help="write the systemd unit(s), print how to "
                                                 "enable them")
    svc.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user)")
    svc.add_argument("--llm-unit", action="store_true",
                     help="also a unit for the llama.cpp server (else: managed mode)")
    svc.add_argument("--dir", metavar="DIR", help="write the units here instead")
    wyo = command("wyoming", help="serve speech-to-text, text-to-speech, wake word and the "
                                  "conversation over the Wyoming protocol (Home Assistant)")
    wyo.add_argument("--uri", help="tcp://host:port or unix:///path (default: wyoming.uri, "
                                   "tcp://127.0.0.1:10300)")
    command("check", help="check config, models, devices and the LLM server")
    hist = command("history", help="show (or --clear) the saved conversation")
    hist.add_argument("--clear", action="store_true", help="delete every saved turn")
    hist.add_argument("--yes", action="store_true", help="with --clear: do not ask")
    hist.add_argument("--limit", type=int, default=20, help="turns to show (default 20)")
    srv = command("llm-server", help="run the managed llama.cpp server in the foreground")
    srv.add_argument("--model", help="GGUF model path (default: bundled gemma3-270m)")
    srv.add_argument("--mmproj", help="multimodal projector GGUF (vision)")
    srv.add_argument("--host")
    srv.add_argument("--port", type=int)
    srv.add_argument("--ctx", type=int, help="context length, tokens")
    srv.add_argument("--threads", type=int)
    return ap


class _TokenPrinter:
    """Streams an answer to stdout without the spaces and newlines models pad it with:
    leading whitespace is dropped, trailing whitespace held until more text follows."""

    def __init__(self) -> None:
        self.started = False
        self.pending = ""

    def __call__(self, event: Event) -> None:
        if not isinstance(event, LLMToken):
            return
        if event.index == 0:  # a new answer
            self.started, self.pending = False, ""
        text = self.pending + event.text
        if not self.started:
            text = text.lstrip()
        shown = text.rstrip()
        self.pending = text[len(shown):]
        if shown:
            self.started = True
            sys.stdout.write(shown)
            sys.stdout.flush()


async def _read_image(config: Config, path: str | None) -> bytes | None:
    """An image file as a JPEG frame (raises ``CameraError`` naming the file)."""
    if not path:
        return None
    from heisenberg.vision.camera import load_image

    return (await asyncio.to_thread(load_image, path, config.camera)).jpeg


async def _ask_printing(assistant: Assistant, question: str,
                        image: bytes | None = None) -> TurnOutcome:
    """One typed turn, its answer streamed to stdout as it comes."""
    printer = _TokenPrinter()
    async with assistant.turn(question, image=image) as turn:
        async for event in turn:
            printer(event)
    return turn.outcome


async def cmd_ask(config: Config, question: str, image_path: str | None = None,
                  resume: bool = False) -> int:
    from heisenberg.main import Runtime

    image = await _read_image(config, image_path)
    async with Runtime(config, resume=resume) as rt:
        outcome = await _ask_printing(rt.assistant, question, image)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if outcome.error is not None:
            print(f"heisenberg: {outcome.error}", file=sys.stderr)
            return 1
    return 0


async def cmd_vision_demo(config: Config, image_path: str | None, prompt: str) -> int:
    """Seed 000's demo: one prompt (and image) to the chosen engine, everything printed."""
    from heisenberg.main import Runtime

    print(f"engine: {config.llm.backend}")
    print(f"prompt: {prompt}")
    print(f"image: {image_path or '(none)'}")
    image = await _read_image(config, image_path)
    # Seed 000: the prompt goes to the engine as written (no system prompt, no history).
    config = dataclasses.replace(
        config, history=dataclasses.replace(config.history, enabled=False),
        llm=dataclasses.replace(config.llm, llava_prompt="question"))
    async with Runtime(config, resume=False) as rt:
        outcome = await rt.assistant.ask(prompt, image=image)
        vision = rt.assistant.backend.vision
    if outcome.error is not None:
        print(f"heisenberg: {outcome.error}", file=sys.stderr)
        return 1
    if image is not None:
        print(f"vision: {'yes' if vision else 'no (the image was not sent)'}")
    print(f"answer: {outcome.answer.strip()}")
    return 0


CHAT_HELP = ("commands: /reset (start a new conversation), /quit or /exit (or Ctrl-D), "
             "/help; anything else is a question")


async def cmd_chat(config: Config, resume: bool = False) -> int:
    from heisenberg.main import Runtime

    interactive = sys.stdin.isatty()
    # Read stdin on the event loop, not in a thread: a thread blocked in readline() would keep
    # the process alive after Ctrl-C until Enter is pressed.
    reader = asyncio.StreamReader()
    stdin: asyncio.StreamReader | None = reader
    try:
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file (chat < questions.txt): never blocks for long
        stdin = None
    async with Runtime(config, resume=resume) as rt:
        failures = 0
        while True:
            if interactive:
                sys.stdout.write("you> ")
                sys.stdout.flush()
            line = (await stdin.readline()).decode("utf-8", "replace") if stdin else \
                await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if text in ("/quit", "/exit"):
                break
            if text == "/reset":
                rt.assistant.session.reset()
                print("(history cleared)")
                continue
            if text.startswith("/"):
                if text != "/help":
                    print(f"(unknown command {text.split()[0]})")
                print(CHAT_HELP)
                continue
            if not text:
                continue
            outcome = await _ask_printing(rt.assistant, text)
            sys.stdout.write("\n")
            sys.stdout.flush()
            if outcome.error is not None:
                failures += 1
                print(f"heisenberg: {outcome.error}", file=sys.stderr)
    return 1 if failures else 0


async def cmd_check(config: Config, path: Path | None) -> int:
    from heisenberg.service.doctor import FAIL, format_table, run_checks

    rows = await run_checks(config, path)
    print(format_table(rows))
    return 1 if any(row.status == FAIL for row in rows) else 0


def cmd_install_service(args: argparse.Namespace, config: Config,
                        config_path: Path | None) -> int:
    from heisenberg.service.units import install

    try:
        done = install(user=args.user, llm_unit=args.llm_unit,
                       directory=Path(args.dir) if args.dir else None,
                       config=config_path.resolve() if config_path else None)
    except OSError as exc:
        print(f"heisenberg: cannot write the unit: {exc} (system units need root; or use "
              "--user)", file=sys.stderr)
        return 1
    for path in done.paths:
        print(f"wrote {path}")
    if args.llm_unit:
        print(f'set llm.url = "http://127.0.0.1:{config.server.port}" in '
              f"{config_path or 'config.toml'} so that Heisenberg uses the server of "
              "heisenberg-llm.service (server.port), and llm.api_key to a random string "
              "(both units read it: the server requires it, the assistant sends it)")
    print("then:")
    for command in done.commands:
        print(f"  {command}")
    return 0


def cmd_history(config: Config, clear: bool, limit: int, yes: bool = False) -> int:
    import time

    from heisenberg.orchestrator.history import HistoryStore

    if not config.history.enabled:
        print("heisenberg: history is not kept (history.enabled = false)", file=sys.stderr)
        return 1
    store = HistoryStore.from_config(config.history)
    try:
        if clear:
            if not yes:
                if not sys.stdin.isatty():
                    print("heisenberg: history --clear deletes every saved turn; add --yes",
                          file=sys.stderr)
                    return 1
                answer = input(f"delete all {store.count()} saved turns in {store.path}? "
                               "[y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("nothing deleted")
                    return 1
            print(f"deleted {store.clear()} turns from {store.path}")
            return 0
        turns = store.recent(max(limit, 0))
        if not turns:
            print(f"(no saved turns in {store.path})")
        for _, turn in turns:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(turn.timestamp_s))
            print(f"{when}  you: {turn.user}")
            mark = {"answered": "", "interrupted": " [interrupted]",
                    "failed": " [failed]", "continued": " [you went on]"
                    }.get(turn.outcome, "")
            print(f"{' ' * 16}  heisenberg: {turn.assistant.strip()}{mark}")
    finally:
        store.close()
    return 0


async def cmd_llm_server(config: Config, args: argparse.Namespace) -> int:
    from heisenberg.llm.server import ManagedLlamaServer
    from heisenberg.service.notify import Notifier

    overrides = {k: v for k, v in {"model_path": args.model, "mmproj_path": args.mmproj,
                                   "host": args.host, "port": args.port, "n_ctx": args.ctx,
                                   "threads": args.threads}.items() if v is not None}
    cfg = dataclasses.replace(config.server, **overrides)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    if not config.llm.api_key:
        log.warning("llm-server: llm.api_key is empty, so any program on this machine can "
                    "use the server; set it (the daemon reads the same key from its config)")
    # The key other processes know: the daemon's llm.api_key, from the same config.toml.
    async with ManagedLlamaServer(cfg, api_key=config.llm.api_key) as server:
        print(f"llama.cpp server ready at {server.url} (pid {server.pid}, log "
              f"{server.log_path})", flush=True)
        notifier.ready(f"serving {server.url}")
        await stop.wait()
        notifier.stopping()
    notifier.close()
    return 0


async def cmd_wyoming(config: Config, uri: str | None) -> int:
    from heisenberg.api.wyoming import WyomingServer, wyoming_engines
    from heisenberg.core.config import check_wyoming_uri
    from heisenberg.main import Runtime, load_voice_engines

    if uri:
        config = dataclasses.replace(config, wyoming=dataclasses.replace(config.wyoming,
                                                                         uri=uri))
        check_wyoming_uri(config.wyoming)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Runtime(config) as rt:
        engines = await load_voice_engines(config)
        served = wyoming_engines(config, rt.assistant, engines.stt, engines.tts)
        async with WyomingServer(config.wyoming, served):
            print(f"Wyoming server at {config.wyoming.uri} (asr, tts, wake, handle)",
                  flush=True)
            await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, path = load_config(args.config)
        # The daemon logs at log.level; one-shot commands only show warnings unless -v.
        setup_logging(config.log, args.verbose, quiet=args.command != "run")
    except ConfigError as exc:
        print(f"heisenberg: configuration error: {exc}", file=sys.stderr)
        return 2
    log.info("config: %s", path or "built-in defaults")
    try:
        if args.command == "ask":
            return asyncio.run(cmd_ask(config, " ".join(args.question), args.image,
                                       args.resume))
        if args.command == "chat":
            return asyncio.run(cmd_chat(config, args.resume))
        if args.command == "check":
            return asyncio.run(cmd_check(config, path))
        if args.command == "install-service":
            return cmd_install_service(args, config, path)
        if args.command == "history":
            return cmd_history(config, args.clear, args.limit, args.yes)
        if args.command == "llm-server":
            return asyncio.run(cmd_llm_server(config, args))
        if args.command == "wyoming":
            return asyncio.run(cmd_wyoming(config, args.uri))
        return run_voice_command(config, args)
    except ConfigError as exc:
        print(f"heisenberg: configuration error: {exc}", file=sys.stderr)
        return 2
    except HeisenbergError as exc:
        print(f"heisenberg: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run_voice_command(config: Config, args: argparse.Namespace) -> int:
    from heisenberg import voice_cli

    if args.command == "run":
        return asyncio.run(voice_cli.cmd_run(config, args.input, args.output, args.realtime,
                                             args.config, args.verbose, args.resume))
    if args.command == "demo" and (args.image or args.prompt or args.engine):
        if args.engine:
            config = dataclasses.replace(
                config, llm=dataclasses.replace(config.llm, backend=args.engine))
        return asyncio.run(cmd_vision_demo(config, args.image,
                                           args.prompt or "Describe the scene."))
    if args.command == "demo":
        return asyncio.run(voice_cli.cmd_demo(config, args.output, args.question))
    if args.command == "say":
        return asyncio.run(voice_cli.cmd_say(config, " ".join(args.text), args.output,
                                             args.seed))
    if args.command == "listen":
        from heisenberg.listen import cmd_listen

        return asyncio.run(cmd_listen(config, args.input, args.json))
    if args.command == "enroll":
        from heisenberg.enroll import cmd_enroll

        return asyncio.run(cmd_enroll(config, args.input, args.takes, args.model,
                                      args.remove))
    if args.command == "devices":
        return voice_cli.cmd_devices()
    if args.command == "snapshot":
        return voice_cli.cmd_snapshot(config, args.output)
    raise AssertionError(f"unhandled command {args.command}")
