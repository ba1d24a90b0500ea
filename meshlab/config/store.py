"""ConfigStore: the configuration the control plane reads, changed all-or-nothing.

Like ``kubectl apply`` with a validating webhook: a batch is validated completely before anything
changes, so one bad document leaves the store exactly as it was. Subscribers (pilot) are called
after every successful change. Safe to use from the notebook thread and the mesh's loop thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import Problem, ResourceNotFound
from .kinds import canonical_kind
from .loader import load
from .resource import Resource

__all__ = ["ConfigStore"]

Subscriber = Callable[["ConfigStore"], Any]


class ConfigStore:
    """Holds validated Istio resources by ``(kind, namespace, name)``; ``version`` counts changes."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self.version = 0

    def apply(self, resources_or_source: Any, *, default_namespace: str = "default") -> list[Resource]:
        """Validate everything, then add or replace it all; raise ConfigError and change nothing otherwise.

        Accepts Resources or anything :func:`load` accepts. A resource with the same kind, namespace and
        name as a stored one replaces it. Returns the applied resources.
        """
        resources = load(resources_or_source, default_namespace=default_namespace)
        if not resources:
            return []
        with self._lock:
            for resource in resources:
                self._resources[resource.key] = resource
            self.version += 1
        self._notify()
        return resources

    def delete(self, kind: str, name: str, namespace: str = "default") -> Resource:
        """Remove one resource (kind may be an alias such as "vs"); ResourceNotFound if it is absent."""
        key = (canonical_kind(kind), namespace, name)
        with self._lock:
            if key not in self._resources:
                raise self._not_found(key)
            removed = self._resources.pop(key)
            self.version += 1
        self._notify()
        return removed

    def get(self, kind: str, name: str, namespace: str = "default") -> Resource:
        """The resource with this kind (or alias), name and namespace; ResourceNotFound if absent."""
        key = (canonical_kind(kind), namespace, name)
        with self._lock:
            if key not in self._resources:
                raise self._not_found(key)
            return self._resources[key]

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Stored resources, optionally of one kind and/or namespace, sorted by kind, namespace, name."""
        wanted = canonical_kind(kind) if kind is not None else None
        with self._lock:
            found = [r for key, r in self._resources.items()
                     if (wanted is None or key[0] == wanted) and (namespace is None or key[1] == namespace)]
        return sorted(found, key=lambda r: r.key)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(store)`` after each successful apply or delete. Returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def __len__(self) -> int:
        return len(self._resources)

    def __contains__(self, key: object) -> bool:
        return key in self._resources

    def __repr__(self) -> str:
        return f"<ConfigStore version={self.version} resources={len(self._resources)}>"

    def _not_found(self, key: tuple[str, str, str]) -> ResourceNotFound:
        kind, namespace, name = key
        same_kind = sorted(f"{ns}/{n}" for k, ns, n in self._resources if k == kind)
        known = f"; stored {kind}s: {', '.join(same_kind)}" if same_kind else f"; no {kind} is stored"
        return ResourceNotFound([Problem(None, None, "", f"{kind} {namespace}/{name} not found{known}")])

    def _notify(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        errors = []
        for callback in subscribers:
            try:
                callback(self)
            except Exception as exc:  # one failing subscriber must not starve the others
                errors.append(exc)
        if errors:
            raise errors[0]


