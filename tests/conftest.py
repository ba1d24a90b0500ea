"""Shared fixtures: ``mesh``, a started ``Mesh(seed=0)`` stopped after the test; ``script``,
which imports a file of ``scripts/`` as a module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from meshlab import Mesh


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    m = Mesh(seed=0).start()
    try:
        yield m
    finally:
        m.stop()


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """``script("nbtools")``: ``scripts/nbtools.py`` imported as a module (once per session)."""

    def load(name: str) -> ModuleType:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
