"""``heisenberg install-service``: write the systemd unit(s) and say how to enable them.

The templates live in ``heisenberg/service/systemd/``; ``@PYTHON@`` becomes the interpreter
running this command, so the unit starts the same installation (venv or not).
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MAIN_UNIT = "heisenberg.service"
LLM_UNIT = "heisenberg-llm.service"


@dataclass(frozen=True)
class Installed:
    paths: list[Path]
    commands: list[str]


def unit_dir(user: bool) -> Path:
    if user:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config_home) / "systemd" / "user"
    return Path("/etc/systemd/system")


def render(name: str, *, user: bool, llm_unit: bool, python: str = sys.executable,
           run_as: str | None = None, config: Path | None = None) -> str:
    """``config``: the config.toml the service reads (else the default search path)."""
    text = resources.files("heisenberg.service").joinpath("systemd", name).read_text("utf-8")
    llm = LLM_UNIT if llm_unit and name == MAIN_UNIT else ""
    # network.target and sound.target exist in the system manager only.
    after = " ".join(([] if user else ["network.target"]
                      + (["sound.target"] if name == MAIN_UNIT else [])) + ([llm] if llm else []))
    account = "" if user else f"User={run_as or os.environ.get('SUDO_USER') or getpass.getuser()}\n"
    return (text.replace("@PYTHON@", python)
            .replace("@CONFIG@", f"--config {shlex.quote(str(config))} " if config else "")
            .replace("@AFTER@", f"After={after}\n" if after else "")
            .replace("@WANTS@", f"Wants={llm}\n" if llm else "")
            .replace("@USER@", account)
            .replace("@WANTED_BY@", "default.target" if user else "multi-user.target"))


def install(*, user: bool, llm_unit: bool, directory: Path | None = None,
            run_as: str | None = None, config: Path | None = None) -> Installed:
    target = directory or unit_dir(user)
    target.mkdir(parents=True, exist_ok=True)
    names = [MAIN_UNIT, *([LLM_UNIT] if llm_unit else [])]
    paths = []
    for name in names:
        path = target / name
        path.write_text(render(name, user=user, llm_unit=llm_unit, run_as=run_as,
                               config=config), "utf-8")
        paths.append(path)
    ctl = "systemctl --user" if user else "sudo systemctl"
    journal = "journalctl --user" if user else "journalctl"
    units = " ".join(reversed(names))
    commands = []
    if target.resolve() != unit_dir(user).resolve():  # written elsewhere: put them in place
        copy = "cp" if user else "sudo cp"
        commands.append(f"{copy} {' '.join(shlex.quote(str(p)) for p in paths)} "
                        f"{shlex.quote(str(unit_dir(user)))}/")
    commands += [f"{ctl} daemon-reload", f"{ctl} enable --now {units}",
                f"{ctl} status {MAIN_UNIT}", f"{journal} -u {MAIN_UNIT} -f",
                f"{ctl} reload {MAIN_UNIT}    # re-read config.toml (SIGHUP)"]
    if user:
        commands.append(f"loginctl enable-linger {getpass.getuser()}    "
                        "# keep it running when you are logged out")
    return Installed(paths, commands)
