"""Guards the public API, as httpx's test_exports does: ``meshlab.__all__`` lists exactly the
public names, each exists, is documented, and says it belongs to meshlab."""

from __future__ import annotations

import inspect

import meshlab

#: The foundation's public API. Later chapters may add names: add them here on purpose.
FOUNDATION = {
    "FLAGS", "LoadResult", "LoadRun", "Mesh", "MeshClient", "MeshError", "NotInMesh", "Replica", "Work",
    "client", "current_replica", "propagation_headers",
}


def test_all_is_sorted_unique_and_complete() -> None:
    names = meshlab.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert FOUNDATION <= set(names)
    for name in names:
        assert hasattr(meshlab, name), f"meshlab.__all__ names {name!r}, which meshlab does not define"


def test_no_public_name_missing_from_all() -> None:
    public = {n for n, v in vars(meshlab).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public - set(meshlab.__all__) == set(), "public in meshlab but missing from __all__"


def test_star_import_gives_exactly_all() -> None:
    ns: dict[str, object] = {}
    exec("from meshlab import *", ns)
    assert set(ns) - {"__builtins__"} == set(meshlab.__all__)


def test_exports_are_documented_and_belong_to_meshlab() -> None:
    for name in meshlab.__all__:
        obj = getattr(meshlab, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("meshlab."), f"{name} comes from {obj.__module__}"
            assert inspect.getdoc(obj), f"meshlab.{name} has no docstring"


def test_exception_hierarchy() -> None:
    assert issubclass(meshlab.MeshError, RuntimeError)
    assert issubclass(meshlab.NotInMesh, RuntimeError)


def test_version() -> None:
    assert isinstance(meshlab.__version__, str) and meshlab.__version__.count(".") == 2
