"""RequestAuthentication: validating JSON Web Tokens in the server's sidecar (Envoy's ``jwt_authn``).

Theory of operation
-------------------
A JWT is ``base64url(header).base64url(payload).base64url(signature)``. The issuer signs
header and payload with its private key and publishes the public keys as a JWKS (JSON Web Key
Set) at its ``jwks_uri``. A RequestAuthentication lists, per issuer, where its JWKS is, which
audiences are accepted and where in a request the token travels.

**Control plane.** istiod fetches every JWKS itself and *inlines* it into the proxy
configuration, so sidecars never fetch keys. meshlab does the same when pilot compiles a
RequestAuthentication (``compile_request_authentication``): ``jwks`` is used as written;
``jwksUri`` (or, without either, OpenID discovery from the ``issuer``) is looked up in a
``JwksDirectory`` where ``mesh.jwt_issuer(...)`` registers meshlab's tiny ``Issuer``. Nothing
goes to the network. When the keys cannot be had, istiod inlines a *fake* JWKS (one RSA key,
``kid: abc``) so that every token of that rule fails, with "Jwks doesn't have key to match kid
or alg from Jwt" (or "Jwt verification fails" for a token without ``kid``); with istiod's
``PILOT_JWT_ENABLE_REMOTE_JWKS`` on, Envoy fetches the keys itself and the failure reads "Jwks
remote fetch is failed" (``JwksDirectory(remote_jwks=True)``).

**Data plane** (``authenticate``), per request, in Envoy's order:

1. headers named by ``outputPayloadToHeader`` and ``outputClaimToHeaders`` are removed
   (a client cannot forge them);
2. tokens are taken from each rule's locations: ``fromHeaders`` (name + prefix), ``fromParams``,
   ``fromCookies``; a rule without locations uses ``Authorization: Bearer <token>`` and the
   ``access_token`` query parameter;
3. each token is checked: format (3 base64url sections), header (``alg`` must be one Envoy
   implements: ``none`` is not), issuer (``iss`` must be the rule's issuer), time (``exp`` and
   ``nbf`` with Envoy's 60 s clock skew), audiences (when the rule lists some), then the
   signature against the JWKS keys whose ``kid`` and ``alg`` agree with the token;
4. the rules are "any of": one rule accepting its token(s) is enough. **No token at all passes**
   (Istio's ``allow_missing``) with no request principal; to require a token, an
   AuthorizationPolicy must ask for ``requestPrincipals: ["*"]``. A token that fails answers
   ``401`` with Envoy's message as body (``Jwt is expired``, ``Jwt issuer is not configured``,
   ``Jwt verification fails``...), except a wrong audience: ``403 Audiences in Jwt are not
   allowed``.

On success the token header is removed before the app unless ``forwardOriginalToken: true``,
the payload goes base64url-encoded into ``outputPayloadToHeader``, chosen claims into
``outputClaimToHeaders`` headers, and the request gets a *request principal* ``<iss>/<sub>``
with the claims, for AuthorizationPolicy (``requestPrincipals``, ``request.auth.claims[...]``).

**The issuer** (``Issuer``) is for notebooks and tests: it signs tokens (RS256 or ES256) with an
injectable clock, serves its JWKS, and forges the classic bad tokens (``Issuer.forge``):
expired, not yet valid, wrong issuer, wrong audience, bad signature, ``alg: none``, HS256 signed
with the public key (algorithm confusion), not a JWT at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

from .authz import selects

if TYPE_CHECKING:
    from ..config import Resource
    from ..proxy.http1 import Headers
    from ..proxy.route import Snapshot
    from ..proxy.sidecar import Sidecar

__all__ = [
    "Issuer",
    "FORGERIES",
    "JwksDirectory",
    "Jwk",
    "JwtProvider",
    "JwtIdentity",
    "AuthnResult",
    "RequestAuthnPolicy",
    "compile_request_authentication",
    "providers_for",
    "authenticate",
    "parse_jwks",
    "MISSING",
    "CLOCK_SKEW_S",
]

#: Envoy's default tolerance on ``exp`` and ``nbf`` (``clock_skew_seconds``).
CLOCK_SKEW_S = 60
#: Algorithms Envoy implements (anything else, ``none`` included: "Jwt header [alg] is not supported").
IMPLEMENTED_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                              "HS256", "HS384", "HS512", "EdDSA"})
#: Which key type can verify which algorithms.
KEY_ALGS = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}
#: Claims istio splits on spaces for authorization (plus a rule's ``spaceDelimitedClaims``).
SPACE_DELIMITED = ("scope", "permission")

# Envoy's status messages (jwt_verify_lib), the body of the 401/403 reply.
OK = "OK"
MISSING = "Jwt is missing"
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
HEADER_BAD_JSON = "Jwt header is an invalid JSON"
HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
ALG_NOT_IMPLEMENTED = "Jwt header [alg] is not supported"
HEADER_BAD_KID = "Jwt header [kid] field is not a string"
PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
NOT_YET_VALID = "Jwt not yet valid"
EXPIRED = "Jwt is expired"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
VERIFICATION_FAILS = "Jwt verification fails"
KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"
NO_VALID_KEYS = "Jwks doesn't have any valid public key"
REMOTE_FETCH_FAILED = "Jwks remote fetch is failed"


# ---------------------------------------------------------------------------- base64url, JWKS

def b64url_encode(data: bytes) -> str:
    """base64url without padding (JWT's encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url decoding (padding optional); ``ValueError`` when invalid."""
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=" for c in text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Jwk:
    """One public key of a JWKS: ``kid`` and ``alg`` (None when the key does not say), key type,
    and the key itself (None: a key that can verify nothing, like istiod's fake JWKS)."""

    kid: str | None
    kty: str
    alg: str | None
    key: Any = field(default=None, compare=False)

    def can_verify(self, alg: str) -> bool:
        """Whether this key type verifies ``alg`` (RSA: RS*/PS*, EC: ES*, oct: HS*, OKP: EdDSA)."""
        return alg.startswith(KEY_ALGS.get(self.kty, ()))


@lru_cache(maxsize=256)
def parse_jwks(text: str) -> tuple[Jwk, ...]:
    """Parse a JWKS (``{"keys": [...]}`` or a single key); keys that do not parse are dropped."""
    try:
        doc = json.loads(text)
    except ValueError:
        return ()
    entries = doc.get("keys", [doc]) if isinstance(doc, dict) else []
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kty"), str):
            continue
        kid = entry.get("kid") if isinstance(entry.get("kid"), str) else None
        alg = entry.get("alg") if isinstance(entry.get("alg"), str) else None
        try:
            key = pyjwt.PyJWK(entry).key
        except Exception:  # a key PyJWT cannot load (istiod's fake key among them) verifies nothing
            key = None
        out.append(Jwk(kid, entry["kty"], alg, key))
    return tuple(out)


def fake_jwks(jwks_uri: str) -> str:
    """The JWKS istiod inlines when it cannot fetch the real one (``CreateFakeJwks``)."""
    n = b64url_encode(f"Error-IstiodFailedToFetchJwksUri-{jwks_uri}".encode())
    return json.dumps({"keys": [{"e": "AQAB", "kid": "abc", "kty": "RSA", "n": n}]})


# ---------------------------------------------------------------------------- parsing and checks

@dataclass(frozen=True)
class ParsedJwt:
    """A token that passed the format checks."""

    token: str
    header: dict[str, Any]
    payload: dict[str, Any]
    payload_b64: str
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        """The header's ``alg``."""
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        """The header's ``kid``, if any."""
        return self.header.get("kid")

    @property
    def iss(self) -> str:
        """The payload's ``iss`` ("" if absent)."""
        return str(self.payload.get("iss", ""))

    @property
    def audiences(self) -> list[str]:
        """``aud`` as a list (a string or a list in the token)."""
        aud = self.payload.get("aud")
        return [aud] if isinstance(aud, str) else list(aud or [])


def parse(token: str) -> ParsedJwt | str:
    """Parse a compact JWT as Envoy does; returns the parsed token or Envoy's error message."""
    if token.count(".") != 2:
        return BAD_FORMAT
    parts = [p for p in token.split(".") if p]
    if len(parts) != 3:
        return BAD_FORMAT
    h64, p64, s64 = parts
    try:
        raw_header = b64url_decode(h64)
    except ValueError:
        return HEADER_BAD_BASE64
    try:
        header = json.loads(raw_header)
        assert isinstance(header, dict)
    except (ValueError, AssertionError):
        return HEADER_BAD_JSON
    if not isinstance(header.get("alg"), str):
        return HEADER_BAD_ALG
    if header["alg"] not in IMPLEMENTED_ALGS:
        return ALG_NOT_IMPLEMENTED
    if "kid" in header and not isinstance(header["kid"], str):
        return HEADER_BAD_KID
    try:
        raw_payload = b64url_decode(p64)
    except ValueError:
        return PAYLOAD_BAD_BASE64
    try:
        payload = json.loads(raw_payload)
        assert isinstance(payload, dict)
    except (ValueError, AssertionError):
        return PAYLOAD_BAD_JSON
    for name in ("iss", "sub"):
        if name in payload and not isinstance(payload[name], str):
            return f"Jwt payload [{name}] field is not a string"
    for name in ("iat", "nbf", "exp"):
        if name in payload and (not isinstance(payload[name], int) or isinstance(payload[name], bool)):
            return f"Jwt payload [{name}] field is not an integer"
    aud = payload.get("aud")
    if aud is not None and not isinstance(aud, str) and not (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        return "Jwt payload [aud] field is not a string or string list"
    try:
        signature = b64url_decode(s64)
    except ValueError:
        return SIGNATURE_BAD_BASE64
    return ParsedJwt(token, header, payload, p64, f"{h64}.{p64}".encode(), signature)


def _sanitize_audience(aud: str) -> str:
    for scheme in ("http://", "https://"):
        if aud.startswith(scheme):
            aud = aud[len(scheme):]
    return aud.rstrip("/")


def verify_signature(jwt: ParsedJwt, keys: Sequence[Jwk]) -> str:
    """Envoy's key selection and signature check: keys whose ``kid`` (when both say one) and
    ``alg`` (when the key says one) agree with the token are tried in order."""
    tried = False
    algorithms = get_default_algorithms()
    for jwk in keys:
        if jwt.kid and jwk.kid and jwk.kid != jwt.kid:
            continue
        if jwk.alg is not None and jwk.alg != jwt.alg:
            continue
        tried = True
        if jwk.key is None or not jwk.can_verify(jwt.alg) or jwt.alg not in algorithms:
            continue
        try:
            if algorithms[jwt.alg].verify(jwt.signing_input, jwk.key, jwt.signature):
                return OK
        except Exception:  # a key of the right type that cannot check this signature
            continue
    return VERIFICATION_FAILS if tried else KID_ALG_MISMATCH


# ---------------------------------------------------------------------------- compiled rules

@dataclass(frozen=True)
class JwtProvider:
    """One ``jwtRules`` entry, compiled (Envoy's JwtProvider), keys inlined."""

    issuer: str
    origin: str
    keys: tuple[Jwk, ...] = ()
    jwks_error: str | None = None
    audiences: tuple[str, ...] = ()
    from_headers: tuple[tuple[str, str], ...] = (("authorization", "Bearer "),)
    from_params: tuple[str, ...] = ("access_token",)
    from_cookies: tuple[str, ...] = ()
    forward: bool = False
    payload_header: str | None = None
    claim_headers: tuple[tuple[str, str], ...] = ()
    space_delimited: tuple[str, ...] = SPACE_DELIMITED

    def check(self, jwt: ParsedJwt, now: float) -> str:
        """Everything after parsing, in Envoy's order: issuer, time, audiences, keys, signature."""
        if self.issuer and jwt.iss != self.issuer:
            return UNKNOWN_ISSUER
        nbf, exp = jwt.payload.get("nbf"), jwt.payload.get("exp")
        if nbf is not None and now + CLOCK_SKEW_S < nbf:
            return NOT_YET_VALID
        if exp is not None and now > exp + CLOCK_SKEW_S:
            return EXPIRED
        if self.audiences:
            allowed = {_sanitize_audience(a) for a in self.audiences}
            if not any(_sanitize_audience(a) in allowed for a in jwt.audiences):
                return AUDIENCE_NOT_ALLOWED
        if self.jwks_error is not None:
            return self.jwks_error
        if not self.keys:
            return NO_VALID_KEYS
        return verify_signature(jwt, self.keys)

    def tokens(self, headers: Headers, query: Mapping[str, list[str]]) -> list[tuple[str, str | None]]:
        """The tokens in this rule's locations: (token, header it came from or None)."""
        found: list[tuple[str, str | None]] = []
        for name, prefix in self.from_headers:
            for value in headers.get_all(name):
                at = value.find(prefix) if prefix else 0
                if at < 0:
                    continue
                found.append((_token_chars(value, at + len(prefix)), name))
        for name in self.from_params:
            found.extend((v, None) for v in query.get(name, []))
        for name in self.from_cookies:
            for cookie in headers.get_all("cookie"):
                for part in cookie.split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == name and v:
                        found.append((v, None))
        return found


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")


def _token_chars(value: str, after: int) -> str:
    """Envoy's ``extractJWT``: the run of base64url characters and dots after the prefix."""
    start = next((i for i in range(after, len(value)) if value[i] in _TOKEN_CHARS), None)
    if start is None:
        return value
    end = start
    while end < len(value) and value[end] in _TOKEN_CHARS:
        end += 1
    return value[start:end]


@dataclass(frozen=True)
class RequestAuthnPolicy:
    """One RequestAuthentication, compiled: where it applies and its providers."""

    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...] | None
    has_target_ref: bool
    providers: tuple[JwtProvider, ...]


class JwksDirectory:
    """What istiod could fetch: JWKS by URI and OpenID discovery by issuer, filled by
    ``register(issuer)``. ``remote_jwks`` chooses what an unknown URI gives (see module docstring)."""

    def __init__(self, remote_jwks: bool = False) -> None:
        self.remote_jwks = remote_jwks
        self.issuers: dict[str, Issuer] = {}

    def register(self, issuer: Issuer) -> None:
        """Make ``issuer``'s JWKS resolvable by its ``jwks_uri`` and its name."""
        self.issuers[issuer.name] = issuer

    def by_uri(self, uri: str) -> str | None:
        """The JWKS served at ``uri``, if an issuer serves it."""
        uri = uri.rstrip("/")
        for issuer in self.issuers.values():
            if issuer.jwks_uri == uri:
                return issuer.jwks_json()
        return None

    def by_issuer(self, name: str) -> tuple[str, str | None]:
        """OpenID discovery: (the jwks_uri istiod would have found, the JWKS or None)."""
        issuer = self.issuers.get(name)
        if issuer is not None:
            return issuer.jwks_uri, issuer.jwks_json()
        return f"{name.rstrip('/')}/.well-known/openid-configuration", None


def compile_jwt_rule(rule: Any, origin: str, directory: JwksDirectory) -> JwtProvider:
    """One ``jwtRules`` entry -> ``JwtProvider`` with its JWKS resolved (istiod's job)."""
    issuer = rule.issuer or ""
    jwks_error = None
    if rule.jwks:
        keys = parse_jwks(rule.jwks)
    else:
        uri = rule.jwksUri or rule.jwks_uri
        text = directory.by_uri(uri) if uri else None
        if not uri:
            uri, text = directory.by_issuer(issuer)
        if text is None:
            if directory.remote_jwks:
                keys, jwks_error = (), REMOTE_FETCH_FAILED
            else:
                keys = parse_jwks(fake_jwks(uri))
        else:
            keys = parse_jwks(text)
    kw: dict[str, Any] = {}
    if rule.fromHeaders or rule.fromParams or rule.fromCookies:
        kw["from_headers"] = tuple((h.name.lower(), h.prefix or "") for h in rule.fromHeaders or [])
        kw["from_params"] = tuple(rule.fromParams or [])
        kw["from_cookies"] = tuple(rule.fromCookies or [])
    return JwtProvider(
        issuer=issuer, origin=origin, keys=keys, jwks_error=jwks_error, audiences=tuple(rule.audiences or []),
        forward=bool(rule.forwardOriginalToken), payload_header=(rule.outputPayloadToHeader or None),
        claim_headers=tuple((c.claim, c.header.lower()) for c in rule.outputClaimToHeaders or []),
        space_delimited=SPACE_DELIMITED + tuple(rule.spaceDelimitedClaims or []), **kw,
    )


def compile_request_authentication(resources: Iterable[Resource],
                                   directory: JwksDirectory | None = None) -> list[RequestAuthnPolicy]:
    """RequestAuthentication resources (oldest first) -> compiled policies, same order."""
    directory = directory or JwksDirectory()
    out = []
    for r in resources:
        spec: Any = r.spec
        sel = spec.selector.matchLabels if spec.selector is not None else None
        providers = tuple(compile_jwt_rule(rule, f"{r.namespace}/{r.name} jwtRules[{i}]", directory)
                          for i, rule in enumerate(spec.jwtRules or []))
        out.append(RequestAuthnPolicy(r.name, r.namespace, tuple(sorted((sel or {}).items()))
                                      if spec.selector is not None else None,
                                      bool(spec.targetRef or spec.targetRefs), providers))
    return out


def providers_for(sidecar: Sidecar, snapshot: Snapshot | None = None) -> tuple[JwtProvider, ...]:
    """The JWT providers of every RequestAuthentication that applies to ``sidecar`` (root
    namespace first) in ``snapshot`` (default: its current configuration); cached per snapshot."""
    snap = snapshot if snapshot is not None else sidecar.pilot.snapshot
    policies = snap.extra.get("request_authn")
    if not policies:
        return ()
    cache = snap.extra.setdefault("_jwt_for", {})
    key = (sidecar.namespace, tuple(sorted(sidecar.labels.items())))
    found = cache.get(key)
    if found is None:
        mine = [p for p in policies if selects(p.namespace, p.selector, p.has_target_ref, sidecar.namespace,
                                               sidecar.labels)]
        mine.sort(key=lambda p: p.namespace == sidecar.namespace)
        found = cache[key] = tuple(prov for p in mine for prov in p.providers)
    return found  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- authentication

@dataclass(frozen=True)
class JwtIdentity:
    """Who a valid token says the caller is: what AuthorizationPolicy sees as ``request.auth``."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    provider: str

    @property
    def principal(self) -> str:
        """The request principal, ``<iss>/<sub>``."""
        return f"{self.issuer}/{self.subject}"

    @property
    def audiences(self) -> list[str]:
        """The ``aud`` claim as a list."""
        aud = self.claims.get("aud")
        return [aud] if isinstance(aud, str) else list(aud or [])


@dataclass
class AuthnResult:
    """The outcome of ``authenticate``: ``status`` is ``OK``, ``Jwt is missing`` (no token: also
    accepted) or Envoy's error; ``code`` the HTTP status of the rejection."""

    status: str
    provider: str | None = None
    identity: JwtIdentity | None = None
    remove: list[str] = field(default_factory=list)
    add: list[tuple[str, str]] = field(default_factory=list)
    sanitize: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the request goes on (a valid token, or no token at all)."""
        return self.status in (OK, MISSING)

    @property
    def code(self) -> int:
        """401, or 403 for a wrong audience (Envoy's choice); 200 when accepted."""
        if self.ok:
            return 200
        return 403 if self.status == AUDIENCE_NOT_ALLOWED else 401

    def apply(self, headers: Headers) -> None:
        """Change the request headers as Envoy does (sanitize, drop the token, add outputs)."""
        for name in self.sanitize:
            headers.remove(name)
        for name in self.remove:
            headers.remove(name)
        for name, value in self.add:
            headers.add(name, value)


def _claim(payload: Mapping[str, Any], name: str) -> Any:
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(value)
    if isinstance(value, dict | list):
        return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()
    return str(value) if value is not None else ""


def _normalized_claims(payload: Mapping[str, Any], space_delimited: Sequence[str]) -> dict[str, Any]:
    claims = dict(payload)
    for name in space_delimited:
        if isinstance(claims.get(name), str):
            claims[name] = claims[name].split()
    return claims


def _verify_all(provider: JwtProvider, tokens: list[tuple[str, str | None]], now: float
                ) -> tuple[str, list[tuple[ParsedJwt, str | None]]]:
    """One provider's authenticator: every token found in its locations must pass."""
    if not tokens:
        return MISSING, []
    good: list[tuple[ParsedJwt, str | None]] = []
    for token, header in tokens:
        jwt = parse(token)
        status = jwt if isinstance(jwt, str) else provider.check(jwt, now)
        if status != OK:
            return status, []
        assert not isinstance(jwt, str)
        good.append((jwt, header))
    return OK, good


def authenticate(providers: Sequence[JwtProvider], headers: Headers, path: str, now: float) -> AuthnResult:
    """Istio's JWT requirement: ``requires_any`` of every provider, with ``allow_missing``.

    One provider accepting is enough. Otherwise the answer is the last provider error that is
    neither "missing" nor "unknown issuer", else "unknown issuer", else "missing" (which lets
    the request through, without a request principal). Pure apart from reading ``headers``: the
    header changes to make are returned (``AuthnResult.apply``)."""
    query = urllib.parse.parse_qs(path.split("?", 1)[1]) if "?" in path else {}
    sanitize = sorted({h for p in providers for h in ([p.payload_header] if p.payload_header else [])}
                      | {h for p in providers for _, h in p.claim_headers})
    final, origin = MISSING, None
    for prov in providers:
        status, good = _verify_all(prov, prov.tokens(headers, query), now)
        if status == OK:
            return _success(prov, good, sanitize)
        if status not in (MISSING, UNKNOWN_ISSUER) or final == MISSING:
            final, origin = status, prov.origin
    return AuthnResult(final, origin, sanitize=sanitize)


def _success(prov: JwtProvider, good: list[tuple[ParsedJwt, str | None]], sanitize: list[str]) -> AuthnResult:
    result = AuthnResult(OK, prov.origin, sanitize=sanitize)
    for tok, header in good:
        if prov.payload_header:
            result.add.append((prov.payload_header, tok.payload_b64))
        for claim, header_name in prov.claim_headers:
            text = _claim_text(_claim(tok.payload, claim))
            if text:
                result.add.append((header_name, text))
        if not prov.forward and header is not None:
            result.remove.append(header)
    jwt = good[0][0]
    result.identity = JwtIdentity(jwt.iss, str(jwt.payload.get("sub", "")),
                                  _normalized_claims(jwt.payload, prov.space_delimited), prov.origin)
    return result


# ---------------------------------------------------------------------------- the issuer

#: The kinds of bad token ``Issuer.forge`` makes, with the answer Envoy gives each.
FORGERIES: dict[str, str] = {
    "expired": EXPIRED,
    "not_yet_valid": NOT_YET_VALID,
    "wrong_issuer": UNKNOWN_ISSUER,
    "wrong_audience": AUDIENCE_NOT_ALLOWED,
    "bad_signature": VERIFICATION_FAILS,
    "alg_none": BAD_FORMAT,
    "alg_confusion": KID_ALG_MISMATCH,
    "malformed": BAD_FORMAT,
}


def _new_key(key_type: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key_type must be RS256 or ES256, not {key_type!r}")


class Issuer:
    """A tiny OpenID provider for notebooks: signs JWTs, publishes its JWKS, forges bad tokens.

    ``name`` is the ``iss`` of its tokens; ``jwks_uri`` is ``<name>/.well-known/jwks.json``
    (``https://<name>/...`` when the name is not a URL). ``clock`` returns Unix seconds (inject a
    fake one to move time). Register it with a mesh (``mesh.jwt_issuer(name)``) so that a
    RequestAuthentication naming its ``jwksUri`` (or only its issuer) gets its keys::

        issuer = mesh.jwt_issuer("https://auth.meshlab.dev")
        token = issuer.token("alice", aud="bookinfo", claims={"groups": ["admin"]})
        mesh.call("httpbin", "/headers", headers={"Authorization": f"Bearer {token}"})
    """

    def __init__(self, name: str = "https://auth.meshlab.dev", key_type: str = "RS256",
                 clock: Callable[[], float] = time.time, kid: str | None = None) -> None:
        self.name = name
        self.key_type = key_type
        self.clock = clock
        self._key = _new_key(key_type)
        self.kid = kid or self._thumbprint()

    def __repr__(self) -> str:
        return f"<Issuer {self.name} {self.key_type} kid={self.kid}>"

    @property
    def jwks_uri(self) -> str:
        """Where the JWKS is published (what a RequestAuthentication's ``jwksUri`` names)."""
        base = self.name if "://" in self.name else f"https://{self.name}"
        return f"{base.rstrip('/')}/.well-known/jwks.json"

    def _thumbprint(self) -> str:
        jwk = self._public_jwk_raw()
        return hashlib.sha256(json.dumps(jwk, sort_keys=True).encode()).hexdigest()[:16]

    def _public_jwk_raw(self) -> dict[str, Any]:
        pub = self._key.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            return json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(pub))  # type: ignore[no-any-return]
        return json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(pub))  # type: ignore[no-any-return]

    def jwks(self) -> dict[str, Any]:
        """The public keys, as served at ``jwks_uri``."""
        return {"keys": [{**self._public_jwk_raw(), "kid": self.kid, "alg": self.key_type, "use": "sig"}]}

    def jwks_json(self) -> str:
        """``jwks()`` as JSON text (what goes in a RequestAuthentication's inline ``jwks``)."""
        return json.dumps(self.jwks(), separators=(",", ":"))

    def openid_configuration(self) -> dict[str, Any]:
        """The OpenID discovery document (``<name>/.well-known/openid-configuration``)."""
        return {"issuer": self.name, "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": [self.key_type]}

    def claims(self, sub: str, aud: str | Sequence[str] | None = None, exp_in: float | None = 3600.0,
               claims: Mapping[str, Any] | None = None, iss: str | None = None,
               nbf_in: float | None = None) -> dict[str, Any]:
        """The payload ``token`` signs (times relative to the issuer's clock, in seconds)."""
        now = int(self.clock())
        payload: dict[str, Any] = {"iss": iss if iss is not None else self.name, "sub": sub, "iat": now}
        if aud is not None:
            payload["aud"] = aud if isinstance(aud, str) else list(aud)
        if exp_in is not None:
            payload["exp"] = now + int(exp_in)
        if nbf_in is not None:
            payload["nbf"] = now + int(nbf_in)
        payload.update(claims or {})
        return payload

    def token(self, sub: str, aud: str | Sequence[str] | None = None, exp_in: float | None = 3600.0,
              claims: Mapping[str, Any] | None = None, *, iss: str | None = None,
              nbf_in: float | None = None) -> str:
        """A signed JWT for subject ``sub``, valid ``exp_in`` seconds (None: no ``exp``), with
        audience ``aud`` and extra ``claims`` (nested dicts and lists are fine)."""
        payload = self.claims(sub, aud, exp_in, claims, iss, nbf_in)
        return pyjwt.encode(payload, self._key, algorithm=self.key_type, headers={"kid": self.kid})

    def forge(self, kind: str, sub: str = "mallory", aud: str | Sequence[str] | None = None,
              claims: Mapping[str, Any] | None = None) -> str:
        """A bad token of one of the ``FORGERIES`` kinds, otherwise like ``token(sub, aud, claims=claims)``:

        ``expired`` (an hour ago, beyond Envoy's 60 s skew), ``not_yet_valid`` (``nbf`` in an
        hour), ``wrong_issuer`` (``iss`` of another issuer, our key), ``wrong_audience`` (``aud``
        someone else), ``bad_signature`` (same ``kid``, signed by another key), ``alg_none``
        (unsigned, ``alg: none``), ``alg_confusion`` (HS256 keyed with our *public* key, the
        classic attack), ``malformed`` (not a JWT)."""
        if kind == "expired":
            return self.token(sub, aud, exp_in=-3600, claims=claims)
        if kind == "not_yet_valid":
            return self.token(sub, aud, claims=claims, nbf_in=3600)
        if kind == "wrong_issuer":
            return self.token(sub, aud, claims=claims, iss="https://evil.example.com")
        if kind == "wrong_audience":
            return self.token(sub, "someone-else", claims=claims)
        if kind == "bad_signature":
            other = _new_key(self.key_type)
            return pyjwt.encode(self.claims(sub, aud, claims=claims), other, algorithm=self.key_type,
                                headers={"kid": self.kid})
        if kind in ("alg_none", "alg_confusion"):
            alg = "none" if kind == "alg_none" else "HS256"
            header = b64url_encode(json.dumps({"alg": alg, "typ": "JWT", "kid": self.kid}).encode())
            body = b64url_encode(json.dumps(self.claims(sub, aud, claims=claims)).encode())
            if kind == "alg_none":
                return f"{header}.{body}."
            secret = self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
            sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            return f"{header}.{body}.{b64url_encode(sig)}"
        if kind == "malformed":
            return "not-a-jwt"
        raise ValueError(f"unknown forgery {kind!r}; choose one of {sorted(FORGERIES)}")

    def app(self) -> Any:
        """An ASGI app serving the discovery document and the JWKS (for ``mesh.external``)."""
        from fastapi import FastAPI

        app = FastAPI(title=f"issuer {self.name}")
        app.get("/.well-known/openid-configuration")(self.openid_configuration)
        app.get("/.well-known/jwks.json")(self.jwks)
        return app
