"""Enrichment of validated records: country and per-project IP privacy.

Country, in order of preference: what the event says, else a configurable request header
(``CF-IPCountry`` style: the location of whoever sent the batch, useful when clients post
their own events), else a MaxMind DB lookup of the event's IP. IP privacy is applied after
the lookup, so truncation or hashing never costs the country. The per-record loop only runs
when there is something to do; lookups and hashes are memoised because traffic repeats IPs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from ingest_gateway.auth import IpPrivacy
from schemas.event import EventRecord

_log = logging.getLogger(__name__)
_COUNTRY: Final = re.compile(r"^[A-Za-z]{2}$")
_UNKNOWN_COUNTRIES: Final = frozenset({"XX", "ZZ"})
_HASH_HEX_CHARS: Final = 32


def country_from_header(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code from a header, ignoring unknown markers (XX, T1, …)."""
    if not value:
        return None
    value = value.strip().upper()
    if not _COUNTRY.match(value) or value in _UNKNOWN_COUNTRIES:
        return None
    return value


@lru_cache(maxsize=65_536)
def truncate_ip(ip: str) -> str | None:
    """IPv4 to its /24, IPv6 to its /48; None when it is not an address at all."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


class IpHasher:
    """Keyed hash of an IP (HMAC-SHA256 with the project mixed in, 128 bits shown)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.hash = lru_cache(maxsize=65_536)(self._hash)

    def _hash(self, project_id: str, ip: str) -> str:
        digest = hmac.new(self._key, f"{project_id}\0{ip}".encode(), hashlib.sha256)
        return digest.hexdigest()[:_HASH_HEX_CHARS]


class GeoIp:
    """Country lookups in a MaxMind DB file (GeoLite2-Country/City or compatible)."""

    def __init__(self, path: Path) -> None:
        import maxminddb  # optional dependency: only needed when a database is configured

        self._reader: Any = maxminddb.open_database(str(path))
        self.country = lru_cache(maxsize=65_536)(self._country)

    def _country(self, ip: str) -> str | None:
        try:
            found = self._reader.get(ip.split("%", 1)[0])
        except ValueError:
            return None
        if not isinstance(found, dict):
            return None
        for section in ("country", "registered_country"):
            part = found.get(section)
            if isinstance(part, dict) and isinstance(part.get("iso_code"), str):
                return str(part["iso_code"]).upper()
        return None

    def close(self) -> None:
        self._reader.close()


class Enricher:
    """Fills ``country`` and applies IP privacy to a batch of records, in place."""

    def __init__(self, geoip: GeoIp | None, ip_hash_key: bytes) -> None:
        self._geoip = geoip
        self._hasher = IpHasher(ip_hash_key)

    def enrich(
        self,
        records: Sequence[EventRecord],
        *,
        project_id: str,
        privacy: IpPrivacy,
        header_country: str | None,
    ) -> None:
        geoip = self._geoip
        if header_country is None and geoip is None and privacy is IpPrivacy.KEEP:
            return
        hash_ip = self._hasher.hash
        for rec in records:
            if rec.country is None:
                if header_country is not None:
                    rec.country = header_country
                elif geoip is not None and rec.ip:
                    rec.country = geoip.country(rec.ip)
            if rec.ip and privacy is not IpPrivacy.KEEP:
                if privacy is IpPrivacy.TRUNCATE:
                    rec.ip = truncate_ip(rec.ip)
                else:
                    rec.ip = hash_ip(project_id, rec.ip)
