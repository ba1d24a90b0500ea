"""A notebook's cells run twice in one kernel (re-running a cell, "run all" twice) still work.

A real Jupyter kernel of the current interpreter runs the cells (nbclient); a cell is repeated in
the notebook to run it twice in the same kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]

SETUP = """
import sys, threading
from fastapi import FastAPI, Request
import meshlab
from meshlab import Mesh

cart = FastAPI()

@cart.get("/items")
async def items():
    return {"items": [1, 2, 3]}

front = FastAPI()

@front.get("/")
async def home(request: Request):
    r = await meshlab.client().get("http://cart/items", headers=meshlab.propagation_headers(request))
    return {"cart": r.json(), "status": r.status_code}

def mesh_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("meshlab-"))

print(sys.executable)
"""

# the cell a notebook would have: create, deploy, call, stop
RUN_AND_STOP = """
mesh = Mesh(seed=0)
mesh.start()
mesh.deploy("cart", cart, replicas=2)
mesh.deploy("front", front)
r = mesh.call("front", "/")
assert r.status_code == 200, r.text
print(r.json())
mesh.stop()
assert not mesh.running and mesh_threads() == [], mesh_threads()
"""

# a cell that forgets to stop: running it again makes a second mesh next to the first
RUN_AND_KEEP = """
try:
    kept
except NameError:
    kept = []
m = Mesh(seed=0).start()
m.deploy("cart", cart, replicas=2)
m.deploy("front", front)
print(m.call("front", "/").json())
kept.append(m)
"""

STOP_ALL = """
assert len(kept) == 2 and kept[0] is not kept[1] and all(m.running for m in kept)
assert [m.call("front", "/").status_code for m in kept] == [200, 200]
assert len(mesh_threads()) == 2
for m in kept:
    m.stop()
print("threads left:", mesh_threads())
"""


def stdout_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


@pytest.mark.timeout(180)
def test_cells_run_twice_in_one_kernel() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in
                (SETUP, RUN_AND_STOP, RUN_AND_STOP, RUN_AND_KEEP, RUN_AND_KEEP, STOP_ALL)]
    # kernel "python3" is the current interpreter's: jupyter_client runs the kernelspec's
    # "python" as sys.executable (and ipykernel provides the spec if none is installed)
    client = NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}})
    client.execute()
    setup, run1, run2, keep1, keep2, stop_all = nb.cells
    assert stdout_of(setup).strip() == sys.executable
    expected = "{'cart': {'items': [1, 2, 3]}, 'status': 200}\n"
    assert stdout_of(run1) == stdout_of(run2) == expected
    assert stdout_of(keep1) == stdout_of(keep2) == expected
    assert stdout_of(stop_all) == "threads left: []\n"
