from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"

settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("default", max_examples=100, deadline=None)
settings.load_profile("ci")


@pytest.fixture
def stacks_copy(tmp_path: Path) -> Path:
    """A writable copy of stacks/ so a test can break one file and load the rest as shipped."""
    target = tmp_path / "stacks"
    shutil.copytree(STACKS, target)
    return target


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto server (Route 53 over HTTP) on loopback for the whole session."""
    from tests.services import moto_server

    with moto_server() as url:
        yield url
