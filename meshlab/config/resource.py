"""Resource: one validated Istio document (kind, name, namespace, typed spec, where it came from)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = ["Resource"]


@dataclass(eq=False)
class Resource:
    """One Istio resource that passed validation.

    ``spec`` is the pydantic model of the kind (e.g. ``VirtualService``) with Istio's field names as
    attributes; ``raw`` is the document exactly as loaded; ``warnings`` lists fields that are valid
    Istio but not simulated by meshlab (and Istio's own warnings).
    """

    kind: str
    api_version: str
    name: str
    namespace: str
    spec: BaseModel
    raw: dict[str, Any]
    source: str | None = None
    line: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, namespace, name)``: what makes a resource unique in a store."""
        return (self.kind, self.namespace, self.name)

    def to_dict(self) -> dict[str, Any]:
        """A clean Istio document (apiVersion, kind, metadata, spec) ready for ``yaml.safe_dump``.

        Metadata keeps name and namespace, plus labels and annotations when the document had them.
        The spec holds only the fields that were written, by their Istio names.
        """
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        raw_metadata = self.raw.get("metadata") if isinstance(self.raw.get("metadata"), dict) else {}
        for extra in ("labels", "annotations"):
            if raw_metadata.get(extra):
                metadata[extra] = dict(raw_metadata[extra])
        spec = self.spec.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata, "spec": spec}

    def __repr__(self) -> str:
        where = f" from {self.source}:{self.line}" if self.source and self.line else ""
        return f"<Resource {self.kind} {self.namespace}/{self.name} ({self.api_version}){where}>"
