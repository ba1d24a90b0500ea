"""The ``meshlab`` command: istioctl and kubectl habits, for a mesh running on this machine.

Checks of Istio YAML (no mesh needed)::

    meshlab validate FILE_OR_DIR...     validate documents as Istio's admission does (istioctl validate)
    meshlab analyze FILE_OR_DIR...      find valid configuration that will not do what was meant
                                        (istioctl analyze, on files: hosts are not checked)

A running mesh (``meshlab up`` in a terminal, or ``mesh.serve_admin()`` in a notebook)::

    meshlab up bookinfo|shop            start a mesh here; print its ingress URL; Ctrl-C stops it
    meshlab apply -f FILE               apply Istio YAML to it (kubectl apply -f; - reads stdin)
    meshlab delete -f FILE              delete the resources the file names
    meshlab get KIND [NAME] [-o yaml]   virtualservices, destinationrules, gateways, ..., all;
                                        also pods and services (the registry)
    meshlab proxy-config routes|clusters|endpoints WORKLOAD     (istioctl proxy-config)
    meshlab analyze                     istioctl analyze on the running mesh (hosts checked too)
    meshlab export DIR                  Kubernetes + Istio manifests of the mesh (--from FILE: files only)

The commands that talk to a mesh find it through the context file that ``mesh.serve_admin()``
writes (``~/.meshlab/current.json``, or ``$MESHLAB_HOME/current.json``; like kubectl's
kubeconfig); ``--admin HOST:PORT`` names the control plane's admin address instead. The admin
API is served on loopback only (``meshlab.control.admin``).

A folder means every ``*.yaml`` / ``*.yml`` file below it. Exit status, like most Unix tools:

    0  everything is fine (warnings do not count)
    1  problems found: an invalid document, an analyzer finding of level Error, no running mesh,
       a request the mesh refused (a resource that does not exist, ...)
    2  the command could not run: bad arguments, a path that does not exist

The report goes to stdout; a command that fails ends with one line on stderr saying why.

Adding a subcommand: write ``add_<name>_arguments(parser)`` and ``cmd_<name>(args) -> int``, and
list them in ``SUBCOMMANDS``. ``main`` does the rest.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from . import __version__
from .config import ConfigError, Problem, Resource, canonical_kind, load
from .control.admin import context_file, read_context
from .control.analyze import analyze

__all__ = ["main", "build_parser", "SUBCOMMANDS", "CommandError", "CommandFailed", "AdminClient", "NO_MESH"]

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
YAML_SUFFIXES = (".yaml", ".yml")


class CommandError(Exception):
    """The command cannot run (exit status 2); the message is printed as one line on stderr."""

    status = EXIT_USAGE


class CommandFailed(CommandError):
    """The command ran and failed (exit status 1): no running mesh, or the mesh refused the request."""

    status = EXIT_PROBLEMS


NO_MESH = "no running mesh found (start one with `meshlab up bookinfo` or `mesh.serve_admin()` in a notebook)"


# -- helpers ------------------------------------------------------------------------------------

def _out(line: str = "") -> None:
    """Print one report line; symbols the terminal cannot show are replaced, never fatal."""
    stream = sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(line.encode(encoding, errors="replace").decode(encoding), file=stream)


def _err(command: str, message: str) -> None:
    print(f"meshlab {command}: {message}", file=sys.stderr)


def yaml_files(paths: Sequence[str]) -> list[Path]:
    """The files the arguments name: files as given, folders expanded to their YAML files
    (sorted, recursively). A missing path or a folder without YAML is a CommandError."""
    files: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                raise CommandError(f"{arg}: no *.yaml or *.yml files in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise CommandError(f"{arg}: no such file or directory")
    return files


def load_quietly(source: object, namespace: str) -> list[Resource]:
    """``load`` without Python warnings on stderr (the commands print resource warnings themselves).
    A file that is not UTF-8 text is reported as a Problem, like an unreadable one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load(source, default_namespace=namespace)  # type: ignore[arg-type]
        except UnicodeDecodeError as exc:
            raise ConfigError([Problem(str(source), None, "", f"cannot read file: not UTF-8 text ({exc.reason})")]) \
                from None


def _where(r: Resource) -> str:
    if r.source and r.line:
        return f"{r.source}:{r.line}"
    return r.source or "<config>"


def _warning_lines(resources: Sequence[Resource]) -> list[str]:
    return [f"Warning: {_where(r)}: {r.kind} {r.namespace}/{r.name}: {w}" for r in resources for w in r.warnings]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- validate -----------------------------------------------------------------------------------

def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="YAML files, or folders of them")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace of documents that do not name one (default: %(default)s)")


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate Istio documents the way Istio's admission does: every problem of every file, each
    as ``file:line: field.path: message``. Fields meshlab accepts but does not simulate are
    reported as warnings and do not make a file invalid."""
    files = yaml_files(args.paths)
    invalid = problems = 0
    for file in files:
        try:
            resources = load_quietly(file, args.namespace)
        except ConfigError as exc:
            invalid += 1
            problems += len(exc.problems)
            _out(f"✘ {file}: {_plural(len(exc.problems), 'problem')}")
            for problem in exc.problems:
                _out(str(problem))
            continue
        _out(f"✔ {file}: {_plural(len(resources), 'document')} valid")
        for line in _warning_lines(resources):
            _out(line)
    if invalid:
        _err("validate", f"{invalid} of {_plural(len(files), 'file')} invalid ({_plural(problems, 'problem')})")
        return EXIT_PROBLEMS
    return EXIT_OK


# -- analyze ------------------------------------------------------------------------------------

def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR",
                   help="YAML files, or folders of them (none: analyze the running mesh)")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace of documents that do not name one (default: %(default)s)")
    add_admin_argument(p)


def latest_by_key(resources: Sequence[Resource]) -> tuple[list[Resource], int]:
    """One resource per (kind, namespace, name): the last one wins, as applying the files in order
    would leave it. Returns the resources (in first-seen order) and how many were replaced."""
    latest: dict[tuple[str, str, str], Resource] = {}
    for r in resources:
        latest[r.key] = r
    return list(latest.values()), len(resources) - len(latest)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Validate the files (all or nothing), then analyse them together like ``istioctl analyze``:
    references to subsets and gateways that do not exist, VirtualServices fighting over a host,
    Gateways no VirtualService uses. Without a running mesh, service hosts are not checked.
    Without files, analyze the configuration of the running mesh against its services."""
    if not args.paths:
        return analyze_running_mesh(args)
    files = yaml_files(args.paths)
    try:
        resources = load_quietly(files, args.namespace)
    except ConfigError as exc:
        for problem in exc.problems:
            _out(str(problem))
        _err("analyze", f"the files are not valid Istio configuration ({_plural(len(exc.problems), 'problem')}); "
                        "nothing was analysed (run `meshlab validate` for details per file)")
        return EXIT_PROBLEMS
    unique, replaced = latest_by_key(resources)
    for line in _warning_lines(unique):
        _out(line)
    if replaced:
        _out(f"Note: {_plural(replaced, 'document')} redefined a resource of an earlier document; "
             "the last definition of each is analysed, as applying the files in order would keep it.")
    where = {f"{r.kind}/{r.namespace}/{r.name}": _where(r) for r in unique}
    result = analyze(unique, services=None)
    if not result:
        _out(f"✔ No validation issues found when analyzing {_plural(len(unique), 'resource')} "
             f"from {_plural(len(files), 'file')}.")
        return EXIT_OK
    for m in result:  # istioctl's layout: Level [CODE] (Kind/namespace/name file:line) text
        located = f"{m.resource} {where[m.resource]}" if m.resource in where else m.resource
        _out(f"{m.level} [{m.code}] ({located}) {m.text}")
    errors = len(result.errors)
    if errors:
        _err("analyze", f"{_plural(errors, 'error')} found")
        return EXIT_PROBLEMS
    return EXIT_OK


def analyze_running_mesh(args: argparse.Namespace) -> int:
    """``meshlab analyze`` without files: ``istioctl analyze`` on the running mesh."""
    findings = AdminClient.from_args(args).get("/analyze")
    if not findings:
        _out("✔ No validation issues found when analyzing the running mesh.")
        return EXIT_OK
    for m in findings:
        _out(f"{m['level']} [{m['code']}] ({m['resource']}) {m['text']}")
    errors = sum(1 for m in findings if m["level"] == "Error")
    if errors:
        _err("analyze", f"{_plural(errors, 'error')} found")
        return EXIT_PROBLEMS
    return EXIT_OK


# -- talking to a running mesh ------------------------------------------------------------------

def add_admin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin", metavar="HOST:PORT",
                   help="the mesh's admin address (default: the context file written by mesh.serve_admin())")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    lines = [line.removeprefix("<config>: ") for line in lines]
    return "; ".join(lines) or "no details"


def _check_loopback(address: str) -> str:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host:
        raise CommandError(f"--admin {address}: expected HOST:PORT, e.g. 127.0.0.1:41234")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CommandError(f"--admin {address}: the admin API is served on loopback only (127.0.0.1)")
    return address


class AdminClient:
    """A client of the control plane's admin API (``meshlab.control.admin``), on loopback."""

    def __init__(self, address: str, origin: str = "--admin") -> None:
        self.address = _check_loopback(address)
        self.origin = origin

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AdminClient:
        """The mesh named by ``--admin``, else by the context file; CommandFailed if there is none."""
        if getattr(args, "admin", None):
            return cls(args.admin)
        ctx = read_context()
        if not ctx or not ctx.get("admin"):
            raise CommandFailed(NO_MESH)
        return cls(str(ctx["admin"]), origin=str(context_file()))

    def request(self, method: str, path: str, params: dict[str, str] | None = None, body: str | None = None) -> Any:
        """Send one request; the decoded JSON answer. Errors become one-line CommandFailed."""
        try:
            r = httpx.request(method, f"http://{self.address}{path}", params=params,
                              content=body.encode() if body is not None else None, timeout=60.0, trust_env=False)
        except httpx.TransportError:
            if self.origin == "--admin":
                raise CommandFailed(f"no mesh answers at {self.address} (--admin)") from None
            raise CommandFailed(f"{NO_MESH[:-1]}; {self.origin} names {self.address}, which does not answer)") \
                from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code != 200:
            message = data.get("error") if isinstance(data, dict) and "error" in data else r.text
            raise CommandFailed(_one_line(message))
        return data

    def get(self, path: str, **params: str | None) -> Any:
        """GET ``path`` with the parameters that are not None."""
        return self.request("GET", path, {k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: str) -> Any:
        """POST ``body`` (YAML) to ``path``."""
        return self.request("POST", path, body=body)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a kubectl-style table: upper-case headers, columns padded, three spaces between."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        _out("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _dump(docs: Any, output: str) -> None:
    if output == "json":
        _out(json.dumps(docs, indent=2))
    else:
        _out(yaml.safe_dump_all(docs if isinstance(docs, list) else [docs], sort_keys=False,
                                explicit_start=True).rstrip())


# -- up -------------------------------------------------------------------------------------------

BOOKINFO_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {exact: /login}
    - uri: {exact: /logout}
    - uri: {prefix: /api/v1/products}
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""
"""Istio's ``samples/bookinfo/networking/bookinfo-gateway.yaml`` (same resources and routes)."""

SHOP_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: shop-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: ["*"]
  gateways: [shop-gateway]
  http:
  - match: [{uri: {exact: /}}]
    route: [{destination: {host: storefront}}]
  - match: [{uri: {exact: /login}}]
    route: [{destination: {host: login}}]
  - match: [{uri: {exact: /products}}]
    route: [{destination: {host: listing}}]
  - match: [{uri: {prefix: /products/}}]
    route: [{destination: {host: details}}]
  - match: [{uri: {prefix: /cart}}]
    route: [{destination: {host: cart}}]
  - match: [{uri: {exact: /checkout}}]
    route: [{destination: {host: checkout}}]
"""
"""The shop's front door: one route per public feature (payment stays internal)."""


def _up_bookinfo(mesh: Any, replicas: int) -> str:
    from .apps import bookinfo

    bookinfo.deploy(mesh, replicas=replicas)
    mesh.apply(BOOKINFO_GATEWAY)
    return "/productpage"


def _up_shop(mesh: Any, replicas: int) -> str:
    from .apps import shop

    shop.deploy_microservices(mesh, replicas=replicas)
    mesh.apply(SHOP_GATEWAY)
    return "/"


#: sample -> deploy it in a mesh and return the path to open through the ingress gateway
UP_SAMPLES: dict[str, Callable[[Any, int], str]] = {"bookinfo": _up_bookinfo, "shop": _up_shop}


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sample", metavar="SAMPLE", help=f"the application to run: {' or '.join(UP_SAMPLES)}")
    p.add_argument("--replicas", type=int, default=1, help="pods per service version (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the mesh's random seed (default: %(default)s)")
    p.add_argument("--admin-port", type=int, default=0, metavar="PORT",
                   help="port of the admin API on 127.0.0.1 (default: any free port)")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _answers(address: str) -> bool:
    try:
        httpx.get(f"http://{address}/services", timeout=2.0, trust_env=False)
    except httpx.HTTPError:
        return False
    return True


def cmd_up(args: argparse.Namespace) -> int:
    """Start a mesh in this terminal with Istio's Bookinfo (and its bookinfo-gateway) or the shop's
    microservices (and a Gateway in front of them), serve the control plane's admin API so that
    `meshlab apply`, `get`, `proxy-config`, `analyze` and `export` reach it, and stay up until
    Ctrl-C."""
    if args.sample not in UP_SAMPLES:
        raise CommandError(f"unknown sample {args.sample!r}; choose {' or '.join(UP_SAMPLES)}")
    if args.replicas < 1:
        raise CommandError("--replicas must be at least 1")
    ctx = read_context()
    if ctx and ctx.get("admin") and _answers(str(ctx["admin"])):
        raise CommandFailed(f"a mesh is already running (admin {ctx['admin']}, pid {ctx.get('pid')}); stop it first "
                            "(Ctrl-C in its terminal, mesh.stop() in its notebook)")
    from .mesh import Mesh

    previous: dict[int, Any] = {}
    try:  # Ctrl-C (even when started in the background, where SIGINT is ignored) and `kill` stop the mesh
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _raise_interrupt)
    except ValueError:  # not the main thread: only it may set handlers
        pass
    mesh = Mesh(seed=args.seed)
    try:
        mesh.start()
        path = UP_SAMPLES[args.sample](mesh, args.replicas)
        address = mesh.serve_admin(port=args.admin_port)
        pods = sum(len(mesh.replicas(name)) for name in mesh.services)
        print(f"meshlab: {args.sample} is up: {_plural(len(mesh.services), 'service')}, {_plural(pods, 'pod')} "
              f"(seed {args.seed})", flush=True)
        print(f"ingress: {mesh.ingress_url}{path}", flush=True)
        print(f"admin:   {address} (written to {context_file()})", flush=True)
        print("try:     meshlab get virtualservices; meshlab get pods; "
              "meshlab proxy-config routes productpage-v1-0" if args.sample == "bookinfo" else
              "try:     meshlab get virtualservices; meshlab get pods; meshlab proxy-config routes storefront",
              flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. --admin-port already in use
        raise CommandFailed(f"cannot start the mesh: {exc}") from None
    finally:
        mesh.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("meshlab: stopped", flush=True)
    return EXIT_OK


# -- apply, delete --------------------------------------------------------------------------------

def add_apply_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR", help="YAML files or folders (same as -f)")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE_OR_DIR",
                   help="a YAML file, a folder of them, or - for standard input (repeatable)")
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace of documents that do not name one (default: the mesh's namespace)")
    add_admin_argument(p)


add_delete_arguments = add_apply_arguments


def _read_sources(args: argparse.Namespace, command: str) -> tuple[list[Resource], str]:
    """The validated resources the -f arguments name and the YAML text to send to the mesh.
    Invalid documents: every problem on stdout, then CommandFailed (nothing is sent)."""
    sources = [*args.filename, *args.paths]
    if not sources:
        raise CommandError(f"name the configuration to {command} with -f FILE (a file, a folder, or - for stdin)")
    texts: list[str] = []
    loadable: list[object] = []
    for source in sources:
        if source == "-":
            text = sys.stdin.read()
            texts.append(text)
            loadable.append(text)
        else:
            for file in yaml_files([source]):
                try:
                    texts.append(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as exc:
                    raise CommandFailed(f"{file}: cannot read: {exc}") from None
                loadable.append(file)
    try:
        resources = load_quietly(loadable, args.namespace or "default")
    except ConfigError as exc:
        for problem in exc.problems:
            _out(str(problem))
        raise CommandFailed(f"not valid Istio configuration ({_plural(len(exc.problems), 'problem')}); "
                            f"nothing was {'applied' if command == 'apply' else 'deleted'}") from None
    if not resources:
        raise CommandFailed("no documents found")
    if args.namespace is None:
        return resources, "\n---\n".join(texts)
    docs = []
    for r in resources:  # -n: write the namespace into the documents that did not name one
        doc = json.loads(json.dumps(r.raw, default=str))
        doc.setdefault("metadata", {})["namespace"] = r.namespace
        docs.append(doc)
    return resources, yaml.safe_dump_all(docs, sort_keys=False)


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply Istio YAML to the running mesh, all or nothing, like `kubectl apply -f`: the documents
    are validated here first (problems are reported with file and line), then sent to the mesh's
    control plane, which pushes the new configuration to every sidecar at once."""
    resources, text = _read_sources(args, "apply")
    answer = AdminClient.from_args(args).post("/apply", text)
    for line in answer.get("applied", []):
        _out(line)
    for line in _warning_lines(resources):
        print(line, file=sys.stderr)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete from the running mesh the Istio resources a file names (kind, namespace, name), like
    `kubectl delete -f`. If one of them does not exist, nothing is deleted."""
    _resources, text = _read_sources(args, "delete")
    answer = AdminClient.from_args(args).post("/delete", text)
    for line in answer.get("deleted", []):
        _out(line)
    return EXIT_OK


# -- get ------------------------------------------------------------------------------------------

REGISTRY_KINDS = {"pods": "pods", "pod": "pods", "po": "pods",
                  "services": "services", "service": "services", "svc": "services"}


def add_get_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", metavar="KIND",
                   help="virtualservices (vs), destinationrules (dr), gateways (gw), serviceentries (se), "
                        "peerauthentications (pa), authorizationpolicies (ap), requestauthentications (ra), "
                        "all; or pods, services (the registry)")
    p.add_argument("name", nargs="?", metavar="NAME", help="one resource")
    p.add_argument("-n", "--namespace", default=None, help="only this namespace (default: every namespace)")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json", "name"), default="table",
                   help="table (default), yaml, json, or name (kind.group/name)")
    add_admin_argument(p)


def cmd_get(args: argparse.Namespace) -> int:
    """Show Istio resources applied to the running mesh, like `kubectl get`: a table (NAME,
    NAMESPACE, KIND, API VERSION), or the documents with -o yaml / -o json. `pods` and
    `services` list the service registry (the Kubernetes Services and Endpoints Istio watches)."""
    client = AdminClient.from_args(args)
    kind = args.kind.strip().lower()
    if kind in REGISTRY_KINDS:
        return _get_registry(client, REGISTRY_KINDS[kind], args)
    if kind != "all":
        try:
            kind = canonical_kind(kind)
        except ConfigError as exc:
            raise CommandFailed(_one_line(str(exc)) + " (or: all, pods, services)") from None
    elif args.name:
        raise CommandError("`get all` takes no NAME; name a kind, e.g. `meshlab get vs reviews`")
    docs = client.get("/get", kind=None if kind == "all" else kind, name=args.name, namespace=args.namespace)
    if args.output == "json" or (docs and args.output == "yaml"):
        _dump(docs if args.name is None else docs[0], args.output)
        return EXIT_OK
    if not docs:
        where = f" in namespace {args.namespace}" if args.namespace else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return EXIT_OK
    if args.output == "name":
        for d in docs:
            _out(f"{d['kind'].lower()}.{d['apiVersion'].split('/')[0]}/{d['metadata']['name']}")
        return EXIT_OK
    _table(["NAME", "NAMESPACE", "KIND", "API VERSION"],
           [[d["metadata"]["name"], d["metadata"]["namespace"], d["kind"], d["apiVersion"]] for d in docs])
    return EXIT_OK


def _get_registry(client: AdminClient, what: str, args: argparse.Namespace) -> int:
    services = [s for s in client.get("/services") if args.namespace in (None, s["namespace"])]
    if what == "services":
        services = [s for s in services if args.name in (None, s["name"])]
        if args.output in ("yaml", "json"):
            _dump(services, args.output)
        else:
            _table(["NAME", "NAMESPACE", "PORT", "VERSIONS", "ENDPOINTS"],
                   [[s["name"], s["namespace"], s["port"], ",".join(s["versions"]) or "-", len(s["endpoints"])]
                    for s in services])
    else:
        pods = [{**e, "service": s["name"], "namespace": s["namespace"]} for s in services for e in s["endpoints"]]
        pods = [p for p in pods if args.name in (None, p["pod"])]
        if args.output in ("yaml", "json"):
            _dump(pods, args.output)
        else:
            _table(["NAME", "NAMESPACE", "SERVICE", "VERSION", "READY", "ADDRESS"],
                   [[p["pod"], p["namespace"], p["service"], p["version"], "true" if p["ready"] else "false",
                     p["address"]] for p in pods])
    if args.name and not (services if what == "services" else pods):
        raise CommandFailed(f"no {what[:-1]} named {args.name!r}")
    return EXIT_OK


# -- proxy-config ---------------------------------------------------------------------------------

PROXY_VIEWS = ("routes", "clusters", "endpoints")
GATEWAY_NAMES = ("curl", "istio-ingressgateway", "ingress")


def add_proxy_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", metavar="TYPE", help="routes, clusters or endpoints")
    p.add_argument("workload", nargs="?", metavar="WORKLOAD",
                   help="a pod (productpage-v1-0), a service (its first pod), curl or istio-ingressgateway")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    add_admin_argument(p)


def cmd_proxy_config(args: argparse.Namespace) -> int:
    """What one proxy was told by the control plane, like `istioctl proxy-config`: its routes
    (per host, in order, with the rule they came from), clusters (with subset, load balancer and
    DestinationRule) or endpoints (with health)."""
    what = {"route": "routes", "cluster": "clusters", "endpoint": "endpoints"}.get(args.what, args.what)
    if what not in PROXY_VIEWS:
        raise CommandError(f"unknown type {args.what!r}; choose routes, clusters or endpoints")
    if not args.workload:
        raise CommandError("name a WORKLOAD: a pod such as productpage-v1-0 (see `meshlab get pods`), a service, "
                           "curl or istio-ingressgateway")
    client = AdminClient.from_args(args)
    if args.workload not in GATEWAY_NAMES:
        services = client.get("/services")
        known = {s["name"] for s in services if s["endpoints"]}
        known |= {e["pod"] for s in services for e in s["endpoints"]}
        if args.workload not in known:
            raise CommandFailed(f"no workload {args.workload!r}; name a pod (see `meshlab get pods`), a service, "
                                "curl or istio-ingressgateway")
    rows = client.get("/proxy-config", workload=args.workload, what=what)
    if args.output != "table":
        _dump(rows, args.output)
        return EXIT_OK
    if not rows:
        print(f"No {what} in {args.workload}'s configuration.", file=sys.stderr)
        return EXIT_OK
    headers = list(rows[0])
    _table([h.upper().replace("_", " ") for h in headers], [[row[h] for h in headers] for row in rows])
    return EXIT_OK


# -- export ---------------------------------------------------------------------------------------

def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="the folder to write the manifests into (created if needed)")
    p.add_argument("--from", dest="sources", action="append", default=[], metavar="FILE_OR_DIR",
                   help="export these Istio YAML files instead of the running mesh (repeatable)")
    p.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="container images: a template such as 'registry.example/{service}:{version}', or "
                        "SERVICE=IMAGE / SERVICE:VERSION=IMAGE (repeatable, or comma-separated); "
                        "default: placeholders REPLACE-ME/<service>:<version>")
    p.add_argument("-n", "--namespace", default="default",
                   help="with --from: namespace of documents that do not name one (default: %(default)s)")
    add_admin_argument(p)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the running mesh as Kubernetes + Istio manifests into DIR: a Namespace labelled for
    sidecar injection, per service its ServiceAccount, Service and one Deployment per version,
    every Istio resource applied (as v1 documents), and a README with the kubectl and istioctl
    commands. With --from, only re-serialise Istio YAML files as v1 documents."""
    from .export import image_for, manifests_from_resources, parse_images, write_files

    image = ",".join(args.image) or None
    if len(args.image) > 1 and any("=" not in i for i in args.image):
        raise CommandError("--image: give one template, or any number of SERVICE=IMAGE entries")
    try:
        spec = parse_images(image)
        for template in (spec.values() if isinstance(spec, dict) else [spec]):
            image_for(template, "service", "v1")
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None
    if args.sources:
        if args.image:
            raise CommandError("--image applies to the running mesh's Deployments; --from exports Istio YAML only")
        try:
            files = manifests_from_resources(load_quietly(yaml_files(args.sources), args.namespace))
        except ConfigError as exc:
            for problem in exc.problems:
                _out(str(problem))
            raise CommandFailed(f"not valid Istio configuration ({_plural(len(exc.problems), 'problem')}); "
                                "nothing was exported") from None
    else:
        files = AdminClient.from_args(args).get("/export", image=image)
    try:
        written = write_files(files, args.folder)
    except OSError as exc:
        raise CommandFailed(f"{args.folder}: {exc}") from None
    kube = istio = 0
    for path in written:
        if path.suffix == ".yaml":
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict):
                    istio += ".istio.io/" in str(doc.get("apiVersion"))
                    kube += ".istio.io/" not in str(doc.get("apiVersion"))
        _out(str(path))
    _out(f"✔ {_plural(len(written), 'file')} written to {args.folder}: {_plural(kube, 'Kubernetes document')}, "
         f"{_plural(istio, 'Istio document')} (next: see {Path(args.folder) / 'README.md'})")
    return EXIT_OK


# -- the command ----------------------------------------------------------------------------------

#: name -> (add arguments, run, one-line help)
SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "validate": (add_validate_arguments, cmd_validate, "check Istio YAML documents (like istioctl validate)"),
    "analyze": (add_analyze_arguments, cmd_analyze,
                "find configuration mistakes in files or in the running mesh (like istioctl analyze)"),
    "up": (add_up_arguments, cmd_up, "start a mesh running bookinfo or shop here; Ctrl-C stops it"),
    "apply": (add_apply_arguments, cmd_apply, "apply Istio YAML to the running mesh (like kubectl apply -f)"),
    "delete": (add_delete_arguments, cmd_delete, "delete the resources a file names (like kubectl delete -f)"),
    "get": (add_get_arguments, cmd_get, "list Istio resources, pods or services of the running mesh (like kubectl get)"),
    "proxy-config": (add_proxy_config_arguments, cmd_proxy_config,
                     "one proxy's routes, clusters or endpoints (like istioctl proxy-config)"),
    "export": (add_export_arguments, cmd_export, "write Kubernetes + Istio manifests for a real cluster"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subparser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="meshlab", description="Tools for the meshlab service-mesh study guide (Istio YAML, no cluster).",
        epilog="Exit status: 0 fine, 1 problems found, 2 the command could not run.")
    parser.add_argument("--version", action="version", version=f"meshlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_arguments, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=(run.__doc__ or help_text).strip())
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``meshlab`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"meshlab: error: choose a command: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except CommandError as exc:
        _err(args.command, f"error: {exc}")
        return exc.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
