"""API tokens: made once and shown once, kept only as SHA-256 digests, checked on every request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import CalciumDaskError
from .db import Database
from .models import Token, utcnow

__all__ = ["new_token", "digest", "request_token", "COOKIE", "create_token", "revoke_token", "load_token_file", "TokenChecker",
           "TokenFileError"]

PREFIX = "cdt_"  # recognisable in a leaked log or a secret scanner
COOKIE = "calcium_dask_token"  # the dashboard's copy of its token (HTTP-only)
CACHE_SECONDS = 5.0  # a revoked token stops working within this time
TOUCH_SECONDS = 60.0  # how often a token's last use is written


class TokenFileError(CalciumDaskError, OSError):
    """The ``--token-file`` cannot be read or holds no usable token."""


def new_token() -> str:
    """A new random token (256 bits)."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256, in hex.

    Tokens are random 256-bit strings, so a plain hash is enough (no salt or slow hash:
    nothing to guess from it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def request_token(authorization: str | None, cookie: str | None) -> str | None:
    """A request's token: from ``Authorization: Bearer TOKEN``, else the dashboard's cookie."""
    from starlette.requests import cookie_parser

    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return cookie_parser(cookie).get(COOKIE) if cookie else None


def create_token(db: Database, name: str = "token") -> str:
    """Make a token, store its digest, and return the token (the only time it is seen)."""
    token = new_token()
    with db.session() as s:
        s.add(Token(name=name[:100], digest=digest(token), source="create-token"))
    return token


def revoke_token(db: Database, name: str) -> int:
    """Revoke every token called ``name``; how many were revoked."""
    with db.session() as s:
        res = s.execute(update(Token).where(Token.name == name, Token.revoked.is_(False)).values(revoked=True))
        return int(res.rowcount or 0)


def load_token_file(db: Database, path: str | Path) -> int:
    """Accept the tokens of ``path`` (one a line; blank lines and ``#`` comments skipped).

    Tokens that an earlier version of the file held and this one does not are revoked.
    Returns how many tokens the file holds.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"{path}: cannot read the token file ({getattr(e, 'strerror', None) or e})") from None
    tokens = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    short = [i for i, t in enumerate(tokens) if len(t) < 16]
    if short:
        raise TokenFileError(f"{path}: token {short[0] + 1} is shorter than 16 characters; "
                             "make tokens with calcium-dask serve create-token or a password generator")
    wanted = {digest(t) for t in tokens}
    with db.session() as s:
        known = {t.digest: t for t in s.scalars(select(Token).where(Token.source == "token-file"))}
        for d, tok in known.items():
            tok.revoked = d not in wanted
        for d in wanted - set(known):
            if s.scalar(select(Token.id).where(Token.digest == d)) is None:
                s.add(Token(name=f"{path.name}", digest=d, source="token-file"))
    return len(wanted)


class TokenChecker:
    """Answers "which token is this?" for each request, with a short cache (thread-safe)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, float]] = {}  # digest -> (token id, valid until)
        self._touched: dict[int, float] = {}
        self._checking: dict[str, threading.Lock] = {}  # digest -> held while it is looked up

    def cached(self, token: str | None) -> int | None:
        """The token's id if it was found valid within the last ``CACHE_SECONDS`` (no database read)."""
        if not token or len(token) > 512:
            return None
        with self._lock:
            hit = self._cache.get(digest(token))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    async def check_async(self, token: str | None) -> int | None:
        """:meth:`check` from the event loop: the cache at once, the database on a worker thread."""
        from starlette.concurrency import run_in_threadpool

        hit = self.cached(token)
        return hit if hit is not None or not token else await run_in_threadpool(self.check, token)

    def check(self, token: str | None) -> int | None:
        """The token's id, or None when it is missing, unknown or revoked."""
        hit = self.cached(token)
        if hit is not None or not token or len(token) > 512:
            return hit
        d = digest(token)
        with self._lock:
            lookup = self._checking.setdefault(d, threading.Lock())
        with lookup:  # a token's cache entry expires for all its requests at once: one query
            hit = self.cached(token)
            if hit is not None:
                return hit
            try:
                return self._look_up(d)
            finally:
                with self._lock:
                    self._checking.pop(d, None)

    def _look_up(self, d: str) -> int | None:
        """The id of the token of digest ``d`` from the database (then cached), or None."""
        now = time.monotonic()
        with self.db.session() as s:
            row = s.execute(select(Token.id, Token.digest).where(Token.digest == d, Token.revoked.is_(False))).first()
        if row is None or not hmac.compare_digest(row.digest, d):
            return None
        if now - self._touched.get(row.id, -TOUCH_SECONDS) >= TOUCH_SECONDS:
            self._touch(row.id, now)
        with self._lock:
            self._cache[d] = (row.id, now + CACHE_SECONDS)
        return row.id

    def _touch(self, token_id: int, now: float) -> None:
        """Record the token's use (best effort: a read-only database still answers reads)."""
        self._touched[token_id] = now
        try:
            with self.db.session() as s:
                s.execute(update(Token).where(Token.id == token_id).values(last_used_at=utcnow()))
        except SQLAlchemyError:
            pass
