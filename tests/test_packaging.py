"""What ``pip install .`` gets: the command, the extras, the data files, one version."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from heisenberg import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_the_command_extras_and_data_files(tmp_path: Path) -> None:
    # Built the way `pip install .` builds it: in isolation, with the build-system's setuptools.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    [wheel] = tmp_path.glob("heisenberg-*.whl")
    assert wheel.name.startswith(f"heisenberg-{__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"heisenberg-{__version__}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    for data in ("heisenberg/api/static/index.html", "heisenberg/api/static/dashboard.js",
                 "heisenberg/service/systemd/heisenberg.service",
                 "heisenberg/service/systemd/heisenberg-llm.service", "heisenberg/__main__.py"):
        assert data in names, data
    assert "heisenberg = heisenberg.cli:main" in entry_points
    assert f"Version: {__version__}" in metadata
    for extra in ("llm", "voice", "vision", "all", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
