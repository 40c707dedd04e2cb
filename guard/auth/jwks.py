"""A JWKS cache that cannot be turned into a fetch amplifier or a fail-open.

Rules (RFC 8725 section 3.10, RFC 7517):

* keys come only from the configured ``jwks_url``; token headers (``jku``, ``x5u``,
  ``jwk``, ``x5c``) never cause a fetch;
* fetches use :class:`httpx.AsyncClient` (never blocking the event loop), no redirects,
  a timeout and a size cap;
* at most one fetch per ``cooldown``, whatever triggers it (refresh, unknown ``kid``,
  retry after failure); concurrent callers share one in-flight fetch;
* the set is refreshed after ``refresh`` seconds; if the endpoint fails, the last good
  set keeps working until ``max_stale`` seconds after it was fetched, then every
  lookup fails closed with :class:`KeysUnavailableError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence

import httpx
import jwt

from guard.auth.keys import KeyLoadError, VerificationKey, jwks_keys, select
from guard.errors import AuthenticationError

log = logging.getLogger("guard.auth.jwks")

MAX_JWKS_BYTES = 512 * 1024


class KeysUnavailableError(AuthenticationError):
    """No usable key set: never fetched successfully, or the last good one is too old."""


class JWKSCache:
    """Keys of one issuer's JWKS endpoint, fetched lazily and cached."""

    def __init__(
        self,
        url: str,
        algorithms: Sequence[str],
        http: Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float],
        cooldown: float = 30.0,
        refresh: float = 300.0,
        max_stale: float = 3600.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._algorithms = tuple(algorithms)
        self._http = http
        self._clock = clock
        self._cooldown = cooldown
        self._refresh = refresh
        self._max_stale = max_stale
        self._timeout = timeout
        self._keys: list[VerificationKey] = []
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Number of fetch attempts so far (for metrics and tests)."""

    def _usable(self, now: float) -> list[VerificationKey] | None:
        if not self._keys or now - self._fetched_at > self._max_stale:
            return None
        return self._keys

    async def lookup(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """Candidate keys for a token's ``kid``/``alg``; may fetch (at most once per cooldown).

        Returns an empty list when the key is unknown; raises :class:`KeysUnavailableError`
        when there is no usable key set at all.
        """
        now = self._clock()
        if self._usable(now) is None or now - self._fetched_at >= self._refresh:
            await self._fetch_if_allowed()
        keys = self._usable(self._clock())
        if keys is None:
            raise KeysUnavailableError(f"no usable JWKS from {self.url}")
        candidates = select(keys, kid, alg)
        if candidates:
            return candidates
        await self._fetch_if_allowed()  # rotation: an unknown kid may be a new key
        keys = self._usable(self._clock())
        if keys is None:
            raise KeysUnavailableError(f"no usable JWKS from {self.url}")
        return select(keys, kid, alg)

    async def _fetch_if_allowed(self) -> None:
        async with self._lock:
            now = self._clock()
            if now - self._attempted_at < self._cooldown:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, KeyLoadError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self.url, _describe(exc))
                return
            self._keys = keys
            self._fetched_at = now
            log.info("JWKS from %s: %d usable key(s)", self.url, len(keys))

    async def _fetch(self) -> list[VerificationKey]:
        client = self._http()
        async with client.stream(
            "GET", self.url, headers={"accept": "application/jwk-set+json, application/json"},
            timeout=self._timeout, follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise KeyLoadError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise KeyLoadError("response too large")
        document = json.loads(bytes(body))
        keys, skipped = jwks_keys(document, self._algorithms)
        for reason in skipped:
            log.debug("JWKS from %s: skipped %s", self.url, reason)
        if not keys:
            raise KeyLoadError("no usable keys for the configured algorithms")
        return keys


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    if isinstance(exc, KeyLoadError):
        return str(exc)
    return "response is not valid JSON"
