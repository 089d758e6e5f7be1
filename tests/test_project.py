"""The project's two commands: `make demo` installs the runtime only, `make test` the toolchain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_demo_installs_the_runtime_only_and_says_how_to_get_the_command():
    proc = subprocess.run(["make", "-n", "-B", "demo", "VENV=/nonexistent-venv"], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    installs = [ln for ln in proc.stdout.splitlines() if "pip install" in ln and " -e " in ln]
    assert installs and all("[test]" not in ln for ln in installs), proc.stdout
    assert "activate" in proc.stdout and "pip install ." in proc.stdout
    test = subprocess.run(["make", "-n", "-B", "test", "VENV=/nonexistent-venv"], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert "[test]" in test.stdout
