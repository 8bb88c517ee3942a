import pytest

from ingest_gateway.auth import IpPrivacy
from ingest_gateway.enrich import Enricher, GeoIp, IpHasher, country_from_header, truncate_ip
from schemas.event import EventRecord
from tests.unit.ingest_gateway.mmdb_writer import write_mmdb

pytestmark = pytest.mark.unit


def rec(ip=None, country=None):
    return EventRecord(event_id="e", project_id="p1", timestamp_us=1, received_at_us=1,
                       method="GET", path="/", endpoint="/", status_code=200, latency_ms=1.0,
                       ip=ip, country=country)


@pytest.fixture
def geoip(tmp_path):
    path = write_mmdb(tmp_path / "geo.mmdb", {
        "203.0.113.0/24": {"country": {"iso_code": "DE", "names": {"en": "Germany"}}},
        "198.51.100.0/24": {"registered_country": {"iso_code": "FR"}},
    })
    reader = GeoIp(path)
    yield reader
    reader.close()


@pytest.mark.parametrize(("value", "expected"),
                         [("de", "DE"), (" US ", "US"), ("XX", None), ("T1", None),
                          ("", None), (None, None), ("DEU", None)])
def test_country_header_values(value, expected):
    assert country_from_header(value) == expected


@pytest.mark.parametrize(("ip", "expected"), [
    ("203.0.113.77", "203.0.113.0"),
    ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
    ("fe80::1%eth0", "fe80::"),
    ("not-an-ip", None),
])
def test_truncation_keeps_the_network_only(ip, expected):
    assert truncate_ip(ip) == expected


def test_ip_hash_is_keyed_stable_and_per_project():
    a, b = IpHasher(b"k1"), IpHasher(b"k2")
    h = a.hash("p1", "203.0.113.7")
    assert h == a.hash("p1", "203.0.113.7")
    assert len(h) == 32 and int(h, 16) >= 0
    assert h != b.hash("p1", "203.0.113.7")
    assert h != a.hash("p2", "203.0.113.7")


def test_country_prefers_the_event_then_the_header_then_geoip(geoip):
    records = [rec(ip="203.0.113.5", country="JP"), rec(ip="203.0.113.5"), rec(ip="10.0.0.1")]
    Enricher(geoip, b"k").enrich(records, project_id="p1", privacy=IpPrivacy.KEEP,
                                 header_country=None)
    assert [r.country for r in records] == ["JP", "DE", None]
    records = [rec(ip="203.0.113.5")]
    Enricher(geoip, b"k").enrich(records, project_id="p1", privacy=IpPrivacy.KEEP,
                                 header_country="CH")
    assert records[0].country == "CH"


def test_geoip_falls_back_to_registered_country_and_survives_ipv6(geoip):
    assert geoip.country("198.51.100.9") == "FR"
    assert geoip.country("2001:db8::1") is None
    assert geoip.country("garbage") is None


def test_privacy_is_applied_after_the_country_lookup(geoip):
    records = [rec(ip="203.0.113.5"), rec(ip=None)]
    Enricher(geoip, b"k").enrich(records, project_id="p1", privacy=IpPrivacy.TRUNCATE,
                                 header_country=None)
    assert (records[0].ip, records[0].country) == ("203.0.113.0", "DE")
    assert records[1].ip is None
    records = [rec(ip="203.0.113.5")]
    Enricher(geoip, b"k").enrich(records, project_id="p1", privacy=IpPrivacy.HASH,
                                 header_country=None)
    assert records[0].country == "DE"
    assert records[0].ip == IpHasher(b"k").hash("p1", "203.0.113.5")


def test_keep_without_sources_leaves_records_untouched():
    records = [rec(ip="203.0.113.5")]
    Enricher(None, b"").enrich(records, project_id="p1", privacy=IpPrivacy.KEEP,
                               header_country=None)
    assert (records[0].ip, records[0].country) == ("203.0.113.5", None)
