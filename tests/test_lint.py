"""ruff over the package, tests and benchmarks (configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install 'u2deploy[dev]')")
def test_ruff_is_clean():
    result = subprocess.run(["ruff", "check", "--output-format", "concise", "u2deploy", "tests", "benchmarks", "docs"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
