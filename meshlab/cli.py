"""The ``meshlab`` command: istioctl-like checks of Istio YAML, no cluster needed.

    meshlab validate FILE_OR_DIR...   validate documents as Istio's admission does (istioctl validate)
    meshlab analyze FILE_OR_DIR...    find valid configuration that will not do what was meant
                                      (istioctl analyze, on files: hosts are not checked)

A folder means every ``*.yaml`` / ``*.yml`` file below it. Exit status, like most Unix tools:

    0  everything is fine (warnings do not count)
    1  problems found: an invalid document, or an analyzer finding of level Error
    2  the command could not run: bad arguments, a path that does not exist

The report goes to stdout; a command that fails ends with one line on stderr saying why.

Adding a subcommand (``up``, ``apply``, ``delete``, ``get``, ``proxy-config``, ``export``, which will
talk to a running mesh through ``meshlab.control.admin``): write ``add_<name>_arguments(parser)``
and ``cmd_<name>(args) -> int``, and list them in ``SUBCOMMANDS``. ``main`` does the rest.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import ConfigError, Problem, Resource, load
from .control.analyze import analyze

__all__ = ["main", "build_parser", "SUBCOMMANDS", "CommandError"]

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
YAML_SUFFIXES = (".yaml", ".yml")


class CommandError(Exception):
    """The command cannot run (exit status 2); the message is printed as one line on stderr."""


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
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="YAML files, or folders of them")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace of documents that do not name one (default: %(default)s)")


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
    Gateways no VirtualService uses. Without a running mesh, service hosts are not checked."""
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


# -- the command ----------------------------------------------------------------------------------

#: name -> (add arguments, run, one-line help). Later: up, apply, delete, get, proxy-config, export.
SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "validate": (add_validate_arguments, cmd_validate, "check Istio YAML documents (like istioctl validate)"),
    "analyze": (add_analyze_arguments, cmd_analyze, "find configuration mistakes (like istioctl analyze)"),
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
