"""Who may read and write: API keys, the Host allow-list and cross-site request checks.

- **Keys.** Writes (``POST /items``) need the write key; without one configured the
  service is read-only. Reads (search, items, stats) need the read key when one is
  configured (the write key also reads). A key travels as ``Authorization: Bearer KEY``
  and is compared in constant time (digests by :func:`hmac.compare_digest`). Missing:
  401; wrong: 403. Keys come from a file or an environment variable
  (:func:`load_key`), never from a command line that ``ps`` shows.
- **Host allow-list.** A request whose ``Host`` is not an allowed name is refused (400)
  before anything else, so a DNS-rebinding page (a hostile name resolving to 127.0.0.1)
  reaches nothing. Allowed by default: the loopback names (``127.0.0.1``, ``localhost``,
  ``[::1]``) on any port.
- **Cross-site writes.** A state-changing request (any method but GET / HEAD / OPTIONS)
  that a browser marks as coming from another site (``Sec-Fetch-Site`` other than
  ``same-origin`` / ``none``; without that header, an ``Origin`` that is not this server's)
  is refused (403), key or not. Clients that are not browsers send neither header and are not affected.
  The service sends no CORS headers, so other sites' scripts cannot read its answers.

The page, its static files, ``/health`` and the API description (``/docs``,
``/openapi.json``) need no key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hashret.serve.limits import ASGIApp, Receive, Scope, Send, reply

#: Host names allowed by default (any port).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Shortest key accepted.
MIN_KEY_LENGTH = 16
_KEY_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_PUBLIC_PATHS = ("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WRITE_ROUTES = (("POST", "/items"),)


def load_key(path: str | Path | None, env: str) -> str | None:
    """A key from the file ``path`` (first line, stripped) or else from the environment variable ``env``.

    Raises:
        ValueError: the file is missing or empty, or the key is shorter than 16 characters.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"key file {p} does not exist: write a key into it ({_KEY_HINT})")
        text = p.read_text(encoding="utf-8").strip().splitlines()
        key, where = (text[0].strip() if text else ""), f"key file {p}"
        if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            import logging

            logging.getLogger("hashret.serve").warning("%s is readable by other users: chmod 600 it", p)
    else:
        key, where = os.environ.get(env, "").strip(), f"${env}"
        if not key:
            return None
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"the key in {where} is shorter than {MIN_KEY_LENGTH} characters: {_KEY_HINT}")
    return key


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def split_host(value: str) -> str:
    """The host name of a ``Host`` header value, lower case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass
class AccessPolicy:
    """Keys and allowed hosts of one service.

    Attributes:
        write_key: key for writes; None = the service is read-only.
        read_key: key for reads; None = reads are open.
        allowed_hosts: host names (no port) a request's ``Host`` may name; ``"*"`` allows any;
            a name starting with ``.`` allows its subdomains too.
    """

    write_key: str | None = None
    read_key: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    _write: bytes | None = field(default=None, init=False, repr=False)
    _read: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._write = _digest(self.write_key) if self.write_key else None
        self._read = _digest(self.read_key) if self.read_key else None
        self.allowed_hosts = tuple(split_host(h) if h not in ("*",) and not h.startswith(".") else h.lower()
                                   for h in self.allowed_hosts)
        self.write_key = self.read_key = None  # only the digests are kept

    @property
    def writable(self) -> bool:
        return self._write is not None

    @property
    def read_protected(self) -> bool:
        return self._read is not None

    def host_allowed(self, host: str) -> bool:
        name = split_host(host)
        for allowed in self.allowed_hosts:
            if allowed == "*" or name == allowed or (allowed.startswith(".") and
                                                     (name.endswith(allowed) or name == allowed[1:])):
                return True
        return False

    def key_matches(self, given: str, *, write: bool) -> bool:
        """Constant-time check of ``given`` against the write key (and the read key for reads)."""
        d = _digest(given)
        ok = self._write is not None and hmac.compare_digest(d, self._write)
        if not write and self._read is not None:
            ok = hmac.compare_digest(d, self._read) or ok
        return ok


def with_hosts(policy_hosts: Iterable[str], bind_host: str) -> tuple[str, ...]:
    """The allowed hosts for a server bound to ``bind_host``: the loopback names, the bind
    address unless it is a wildcard (0.0.0.0, ::), and ``policy_hosts``."""
    hosts = list(LOOPBACK_HOSTS)
    if bind_host not in ("0.0.0.0", "::", ""):
        hosts.append(bind_host)
    return tuple(dict.fromkeys([*hosts, *policy_hosts]))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == name:
            return v.decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth is None:
        return None
    scheme, _, token = auth.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


def _cross_site(scope: Scope, host: str) -> str | None:
    """Why a browser request is cross-site, or None. ``Sec-Fetch-Site`` (which a page cannot
    forge) decides when the browser sends it; older browsers' ``Origin`` must then name this
    host (as Go's ``net/http.CrossOriginProtection`` does)."""
    site = _header(scope, b"sec-fetch-site")
    if site is not None:
        return None if site.strip().lower() in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = _header(scope, b"origin")
    if origin is not None:
        netloc = urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else "null"
        if netloc != host.strip().lower():
            return f"Origin {origin}"
    return None


class AccessControl:
    """ASGI middleware: Host allow-list, then cross-site checks, then keys (see the module docstring).

    Args:
        app: the wrapped application.
        policy: the keys and allowed hosts.
        on_refuse: called with (class, detail) for each refusal.
    """

    def __init__(self, app: ASGIApp, policy: AccessPolicy,
                 on_refuse: Callable[[str, str], None] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.on_refuse = on_refuse or (lambda kind, detail: None)

    async def _refuse(self, send: Send, kind: str, status: int, detail: str, log: str,
                      headers: dict[str, str] | None = None) -> None:
        self.on_refuse(kind, log)
        await reply(send, status, detail, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        host = _header(scope, b"host") or ""
        where = f"{method} {path} from {(scope.get('client') or ('?',))[0]}"
        if not self.policy.host_allowed(host):
            detail = (f"Host {host!r} is not served here: use one of the server's names (the server's "
                      "--allowed-host adds a name)") if host else "no Host header: send one"
            await self._refuse(send, "bad-host", 400, detail, f"{where}, Host {host!r}")
            return
        write = (method, path) in _WRITE_ROUTES
        if method not in _SAFE_METHODS:
            why = _cross_site(scope, host)
            if why is not None:
                await self._refuse(send, "cross-site", 403, "cross-site request refused: the API only "
                                   "takes writes from its own page or from non-browser clients",
                                   f"{where}, {why}")
                return
        if path in _PUBLIC_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if write and not self.policy.writable:
            await self._refuse(send, "read-only", 403, "the server is read-only: restart `hashret serve` "
                               "with --write-key-file (or $HASHRET_WRITE_KEY) to allow adds", where)
            return
        if write or self.policy.read_protected:
            given = _bearer(scope)
            if not given:
                await self._refuse(send, "no-key", 401, (
                    "this route needs the server's " + ("write" if write else "read") + " key: send "
                    "'Authorization: Bearer KEY'"), where, {"WWW-Authenticate": 'Bearer realm="hashret"'})
                return
            if not self.policy.key_matches(given, write=write):
                await self._refuse(send, "wrong-key", 403, "wrong key for this route (" +
                                   ("writes need the write key" if write else "reads need the read key") +
                                   ")", where)
                return
        await self.app(scope, receive, send)
