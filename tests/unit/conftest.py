"""Fixtures for unit tests: no database, no network, no files outside tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No `GENGATE_*` variables and an empty working directory (no stray gengate.toml)."""
    for name in list(os.environ):
        if name.startswith("GENGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
