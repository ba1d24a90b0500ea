"""Shared fixtures: ``mesh``, a started ``Mesh(seed=0)`` stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshlab import Mesh


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    m = Mesh(seed=0).start()
    try:
        yield m
    finally:
        m.stop()
