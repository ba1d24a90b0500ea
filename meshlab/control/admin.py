"""The control plane's admin API: how the ``meshlab`` command talks to a running mesh.

``kubectl`` and ``istioctl`` talk to the Kubernetes API server; ``meshlab apply -f``,
``meshlab get``, ``meshlab proxy-config`` talk to this small HTTP API, served on 127.0.0.1 only
by the mesh's runtime thread. ``Mesh.serve_admin()`` starts it and writes the address into a
*context file* (``~/.meshlab/current.json``, or ``$MESHLAB_HOME``) that the command reads, the
way kubectl reads its kubeconfig. A notebook's mesh can serve it too, so a learner can
``meshlab apply -f`` from a JupyterLab terminal into the kernel's mesh.

Endpoints (JSON answers; errors are ``{"error": "..."}`` with status 400/404):

=========================  =================================================================
``POST /apply``            body: YAML; all or nothing, like ``Mesh.apply``
``POST /delete``           body: YAML; deletes the resources it names
``GET /get?kind=&name=``   applied resources of a kind (all kinds if no kind)
``GET /proxy-config``      ``?workload=&what=routes|clusters|endpoints``
``GET /analyze``           ``istioctl analyze`` findings
``GET /services``          services, versions, endpoints
``GET /export``            the Kubernetes + Istio manifests of the mesh, by file name
=========================  =================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..config import ConfigError, load
from ..config.kinds import canonical_kind
from ..proxy.http1 import Headers, Listener, Request, Response, ServerConnection
from .proxy_config import proxy_view

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["AdminAPI", "context_file", "read_context"]


def context_file() -> Path:
    """Where the address of the current mesh's admin API is written."""
    return Path(os.environ.get("MESHLAB_HOME", Path.home() / ".meshlab")) / "current.json"


def read_context() -> dict[str, Any] | None:
    """The current mesh's context (admin address, pid), or None when no mesh serves one."""
    try:
        return json.loads(context_file().read_text())
    except (OSError, ValueError):
        return None


def _json(status: int, obj: Any) -> Response:
    return Response(status, Headers([("content-type", "application/json")]), json.dumps(obj, default=str).encode())


class AdminAPI:
    """The admin listener of one mesh (runs on the mesh's loop)."""

    def __init__(self, mesh: Mesh, port: int = 0) -> None:
        self.mesh = mesh
        self.listener = Listener("control-plane admin", self.handle, port=port)

    @property
    def address(self) -> str:
        """``host:port``."""
        return self.listener.address

    async def start(self, write_context: bool = True) -> None:
        """Start serving and (optionally) record the address in the context file."""
        await self.listener.start()
        if write_context:
            path = context_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"admin": self.address, "pid": os.getpid(),
                                        "ingress": self.mesh.ingress.url if self.mesh.ingress else None}))

    async def close(self) -> None:
        """Stop serving; remove the context file if it points at us."""
        await self.listener.close()
        ctx = read_context()
        if ctx and ctx.get("admin") == self.address:
            try:
                context_file().unlink()
            except OSError:
                pass

    async def handle(self, req: Request, conn: ServerConnection) -> Response:
        """Dispatch one request."""
        path, _, query = req.path.partition("?")
        q = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            if req.method == "POST" and path == "/apply":
                return _json(200, self._apply(req.body.decode()))
            if req.method == "POST" and path == "/delete":
                return _json(200, self._delete(req.body.decode()))
            if path == "/get":
                return _json(200, self._get(q.get("kind"), q.get("name"), q.get("namespace")))
            if path == "/proxy-config":
                sc = self._proxy(q.get("workload", ""))
                df = await proxy_view(sc, q.get("what", "routes"))
                return _json(200, df.to_dict(orient="records"))
            if path == "/analyze":
                return _json(200, [m.__dict__ for m in self.mesh.analyze()])
            if path == "/services":
                return _json(200, self._services())
            if path == "/export":
                from ..export import manifests

                return _json(200, manifests(self.mesh, image=q.get("image")))
        except ConfigError as exc:
            return _json(400, {"error": str(exc)})
        except (KeyError, ValueError, LookupError) as exc:
            return _json(404, {"error": str(exc).strip("'\"")})
        return _json(404, {"error": f"no such admin endpoint: {req.method} {path}"})

    def _apply(self, text: str) -> dict[str, Any]:
        result = self.mesh.apply_resources(load(text, default_namespace=self.mesh.namespace))
        return {"applied": result.lines, "warnings": result.warnings}

    def _delete(self, text: str) -> dict[str, Any]:
        resources = load(text, default_namespace=self.mesh.namespace)
        for r in resources:  # check all first: nothing is half-deleted
            self.mesh.config_store.get(r.kind, r.name, r.namespace)
        lines = []
        for r in resources:
            self.mesh.config_store.delete(r.kind, r.name, r.namespace)
            lines.append(f"{r.kind.lower()}.{r.api_version.split('/')[0]}/{r.name} deleted")
        return {"deleted": lines}

    def _get(self, kind: str | None, name: str | None, namespace: str | None) -> list[dict[str, Any]]:
        store = self.mesh.config_store
        if kind:
            kind = canonical_kind(kind)
        if name:
            return [store.get(kind or "", name, namespace or self.mesh.namespace).to_dict()]
        return [r.to_dict() for r in store.list(kind, namespace)]

    def _proxy(self, workload: str):  # type: ignore[no-untyped-def]
        mesh = self.mesh
        if workload in ("curl", ""):
            return mesh._client()
        if workload in ("istio-ingressgateway", "ingress") and mesh.ingress is not None:
            return mesh.ingress
        return mesh.sidecar(workload)

    def _services(self) -> list[dict[str, Any]]:
        out = []
        for svc in self.mesh.registry.services.values():
            out.append({"name": svc.name, "namespace": svc.namespace, "port": svc.port, "versions": svc.versions,
                        "endpoints": [{"pod": r.name, "version": r.version, "ready": r.ready,
                                       "address": r.sidecar.inbound.address if r.sidecar else ""}
                                      for r in svc.replicas]})
        return out
