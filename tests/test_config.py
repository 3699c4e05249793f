from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from heisenberg.cli import main
from heisenberg.core import config as config_module
from heisenberg.core.config import Config, as_dict, load_config, parse_config, read_env
from heisenberg.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_parses_and_matches_defaults() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert parse_config(data) == Config()
    # Every key of every section is documented in the example.
    defaults = as_dict(Config())
    assert {s: set(keys) for s, keys in data.items() if isinstance(keys, dict)} == {
        s: set(keys) for s, keys in defaults.items() if isinstance(keys, dict)}
    assert data["language"] == defaults["language"] == "en"


@pytest.mark.parametrize(("data", "words"), [
    ({"llm": {"temprature": 0.5}}, ["llm.temprature", "unknown key"]),
    ({"lm": {}}, ["lm", "unknown section"]),
    ({"llm": {"max_tokens": "many"}}, ["llm.max_tokens", "'many'", "int"]),
    ({"llm": {"max_tokens": True}}, ["llm.max_tokens", "True"]),
    ({"llm": {"temperature": 7.5}}, ["llm.temperature", "7.5", "out of range"]),
    ({"server": {"port": 70000}}, ["server.port", "70000"]),
    ({"llm": {"prompt_format": "xml"}}, ["llm.prompt_format", "'xml'", "chatml"]),
    ({"camera": {"enabled": "yes"}}, ["camera.enabled", "'yes'", "bool"]),
    ({"audio": {"echo_cancel": "earbuds"}}, ["audio.echo_cancel", "'earbuds'", "headphones"]),
])
def test_bad_values_name_key_and_value(data: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    for word in words:
        assert word in str(info.value)


def test_int_accepted_for_float() -> None:
    assert parse_config({"llm": {"temperature": 1}}).llm.temperature == 1.0


def test_headphones_is_an_echo_setting() -> None:
    assert parse_config({"audio": {"echo_cancel": "headphones"}}).audio.echo_cancel == \
        "headphones"


def test_environment_overrides() -> None:
    env = {"HEISENBERG_LLM_URL": "http://127.0.0.1:9", "HEISENBERG_LLM_MAX_TOKENS": "12",
           "HEISENBERG_CAMERA_ENABLED": "false", "HEISENBERG_STT_BEAM_SIZE": "3",
           "LLAVA_SERVER_URL": "http://127.0.0.1:8081/v1/vision", "LLAVA_AUTH_TOKEN": "tok"}
    cfg = parse_config({"llm": {"url": "http://file"}}, env)
    assert cfg.llm.url == "http://127.0.0.1:9"
    assert cfg.llm.max_tokens == 12
    assert cfg.camera.enabled is False
    assert cfg.stt.beam_size == 3
    assert cfg.llm.llava_url == "http://127.0.0.1:8081/v1/vision"
    assert cfg.llm.llava_token == "tok"


@pytest.mark.parametrize(("env", "words"), [
    ({"HEISENBERG_LLM_MAX_TOKENS": "lots"}, ["llm.max_tokens", "'lots'"]),
    ({"HEISENBERG_NOPE_X": "1"}, ["HEISENBERG_NOPE_X", "no config section"]),
    ({"HEISENBERG_LLM_NOPE": "1"}, ["llm.nope", "unknown key"]),
])
def test_bad_environment(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({}, env)
    for word in words:
        assert word in str(info.value)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user.toml"
    system = tmp_path / "system.toml"
    monkeypatch.setattr(config_module, "default_search_paths", lambda: [user, system])
    found, path = load_config(None, {})
    # Without a file, personal wake word verifiers go beside the first place searched.
    beside = dataclasses.replace(Config().wakeword, verifier_dir=str(tmp_path / "wakeword"))
    assert (found, path) == (dataclasses.replace(Config(), wakeword=beside), None)
    system.write_text("[llm]\nmax_tokens = 44\n")
    assert load_config(None, {})[0].llm.max_tokens == 44
    user.write_text("[llm]\nmax_tokens = 11\n")
    assert load_config(None, {})[0].llm.max_tokens == 11
    env_file = tmp_path / "env.toml"
    env_file.write_text("[llm]\nmax_tokens = 22\n")
    assert load_config(None, {"HEISENBERG_CONFIG": str(env_file)})[0].llm.max_tokens == 22
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[llm]\nmax_tokens = 33\n")
    cfg, path = load_config(str(explicit), {"HEISENBERG_CONFIG": str(env_file)})
    assert (cfg.llm.max_tokens, path) == (33, explicit)


def test_default_search_paths() -> None:
    paths = config_module.default_search_paths()
    assert paths[0] == Path.home() / ".config" / "heisenberg" / "config.toml"
    assert paths[1] == Path("/etc/heisenberg/config.toml")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"), {})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(str(bad), {})


def test_dotenv_local_is_read_and_environment_wins(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env.local"
    dotenv.write_text("LLAVA_SERVER_URL=http://127.0.0.1:8081/v1/vision\n"
                      "HEISENBERG_LLM_MAX_TOKENS=5\n")
    monkeypatch.setenv("HEISENBERG_LLM_MAX_TOKENS", "6")
    env = read_env(dotenv)
    cfg = parse_config({}, {k: v for k, v in env.items()
                            if k.startswith(("HEISENBERG_LLM", "LLAVA"))})
    assert cfg.llm.llava_url == "http://127.0.0.1:8081/v1/vision"
    assert cfg.llm.max_tokens == 6


def test_cli_exits_2_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[llm]\ntemperature = 9.0\n")
    assert main(["--config", str(bad), "ask", "hi"]) == 2
    err = capsys.readouterr().err
    assert "llm.temperature" in err and "9.0" in err


@pytest.mark.parametrize(("data", "env", "key"), [
    ({"llm": {"temperature": float("nan")}}, {}, "llm.temperature"),
    ({"api": {"max_body_mb": float("inf")}}, {}, "api.max_body_mb"),
    ({}, {"HEISENBERG_LLM_TOP_P": "nan"}, "llm.top_p"),
    ({}, {"HEISENBERG_STATES_THINKING_TIMEOUT_S": "-inf"}, "states.thinking_timeout_s"),
])
def test_nan_and_infinity_are_refused(data: dict, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number"):
        parse_config(data, env)


def test_nan_in_the_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[llm]\ntemperature = nan\n")
    assert main(["--config", str(bad), "ask", "hi"]) == 2
    assert "llm.temperature: expected a finite number" in capsys.readouterr().err


def test_invalid_utf8_names_the_file(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_bytes(b'[llm]\nsystem_prompt = "caf\xe9"\n')
    assert main(["--config", str(bad), "ask", "hi"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid UTF-8" in err and "Traceback" not in err


def test_cors_origins_from_the_environment_are_comma_separated() -> None:
    value = "http://localhost:3000, http://localhost:8000"
    for var in ("CORS_ORIGINS", "HEISENBERG_API_CORS_ORIGINS"):
        cfg = parse_config({}, {var: value})
        assert cfg.api.cors_origins == ["http://localhost:3000", "http://localhost:8000"]
