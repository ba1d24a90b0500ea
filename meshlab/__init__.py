"""meshlab: a service mesh you can run in a notebook.

Tiny FastAPI services and Python sidecar proxies modelled on Envoy run inside the Python
process, configured with real Istio YAML. Start here::

    from meshlab import Mesh
    with Mesh(seed=0) as mesh:
        mesh.deploy("hello", app)
        mesh.call("hello", "/")
"""

from .client import MeshClient, NotInMesh, client, propagation_headers
from .load import LoadResult
from .mesh import LoadRun, Mesh, MeshError
from .proxy.flags import FLAGS
from .workload import Replica, Work, current_replica

__all__ = [
    "FLAGS",
    "LoadResult",
    "LoadRun",
    "Mesh",
    "MeshClient",
    "MeshError",
    "NotInMesh",
    "Replica",
    "Work",
    "client",
    "current_replica",
    "propagation_headers",
]

__version__ = "0.1.0"
