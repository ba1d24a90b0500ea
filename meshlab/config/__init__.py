"""Istio configuration for meshlab: load real Istio YAML, validate it like Istio, keep it in a store.

    >>> from meshlab.config import load
    >>> [vs] = load('''
    ... apiVersion: networking.istio.io/v1
    ... kind: VirtualService
    ... metadata: {name: reviews}
    ... spec:
    ...   hosts: [reviews]
    ...   http:
    ...   - route:
    ...     - destination: {host: reviews, subset: v1}
    ...       weight: 80
    ...     - destination: {host: reviews, subset: v2}
    ...       weight: 20
    ... ''')
    >>> vs.spec.http[0].route[1].destination.subset
    'v2'

Invalid documents raise ConfigError with one Problem per mistake ("file.yaml:12: spec.http[0]...:
message"); fields meshlab accepts but does not simulate produce warnings.
"""

from .duration import parse_duration
from .errors import ConfigError, MeshlabConfigWarning, Problem, ResourceNotFound
from .kinds import KINDS, canonical_kind
from .loader import load
from .not_simulated import NOT_SIMULATED
from .resource import Resource
from .store import ConfigStore

__all__ = [
    "load",
    "ConfigError",
    "Problem",
    "Resource",
    "ConfigStore",
    "KINDS",
    "parse_duration",
    "MeshlabConfigWarning",
    "ResourceNotFound",
    "canonical_kind",
    "NOT_SIMULATED",
]
