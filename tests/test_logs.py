from __future__ import annotations

import logging

import pytest

from heisenberg.core.config import LogConfig
from heisenberg.core.errors import ConfigError
from heisenberg.core.events import LLMComplete, LLMToken, TranscriptionFinal
from heisenberg.core.logs import (
    EventLogger,
    LogfmtFormatter,
    current_turn,
    parse_module_levels,
    setup_logging,
)


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("heisenberg.voice", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_logfmt_line_with_turn_and_fields() -> None:
    line = LogfmtFormatter().format(record('said "hi"\nthen', turn="t1",
                                           fields={"event": "x", "n": 3}))
    assert line.startswith("ts=")
    assert 'level=warning logger=heisenberg.voice turn=t1 event=x n=3 msg="said \\"hi\\"\\nthen"' \
        in line


def test_journal_lines_carry_the_priority_and_no_timestamp() -> None:
    token = current_turn.set("abc")  # the turn of the running task, when not given
    try:
        line = LogfmtFormatter(journal=True).format(record("disk full"))
    finally:
        current_turn.reset(token)
    assert line == "<4>level=warning logger=heisenberg.voice turn=abc msg=\"disk full\""


def test_module_levels() -> None:
    assert parse_module_levels("heisenberg.llm=debug, aiohttp = warning") == {
        "heisenberg.llm": logging.DEBUG, "aiohttp": logging.WARNING}
    with pytest.raises(ConfigError, match="log.modules: 'heisenberg.llm:debug'"):
        parse_module_levels("heisenberg.llm:debug")
    setup_logging(LogConfig(level="warning", modules="heisenberg.test_logs=debug"))
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("heisenberg.test_logs").level == logging.DEBUG
    setup_logging(LogConfig(), verbosity=1, quiet=True)
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize("transcripts", [False, True])
async def test_event_lines_keep_transcripts_private_unless_asked(
        transcripts: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="heisenberg.events")
    log_event = EventLogger(transcripts)
    await log_event(TranscriptionFinal(text="my bank password is 1234", turn_id="t9"))
    await log_event(LLMToken(text="secret", turn_id="t9"))  # tokens: debug only
    [rec] = caplog.records
    assert rec.turn == "t9"  # type: ignore[attr-defined]
    fields = rec.fields  # type: ignore[attr-defined]
    assert fields["event"] == "transcription_final"
    if transcripts:
        assert fields["text"] == "my bank password is 1234"
    else:
        assert fields == {"event": "transcription_final", "source": "voice", "text_chars": 24}


@pytest.mark.parametrize("transcripts", [False, True])
async def test_the_prompt_the_server_saw_is_never_logged(
        transcripts: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="heisenberg.events")
    await EventLogger(transcripts)(LLMComplete(
        text="Paris.", turn_id="t9", server_prompt="User: my bank password is 1234\nAssistant:",
        timings={"predicted_per_second": 41.27, "prompt_n": 20}))
    [rec] = caplog.records
    fields = rec.fields  # type: ignore[attr-defined]
    assert "server_prompt" not in fields and "password" not in str(fields)
    assert fields["prompt_chars"] == 41 and fields["tokens_per_s"] == 41.3
