import gzip
import zlib

import pytest

from ingest_gateway.body import (
    BodyProblem,
    check_content_type,
    check_declared_length,
    decode_body,
    encoding_of,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ctype", [None, "", "application/json", "application/json; charset=utf-8",
                                   "Application/JSON", "application/vnd.turnstile+json"])
def test_json_content_types_are_accepted(ctype):
    check_content_type(ctype)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_other_content_types_are_415_with_the_type_named(ctype):
    with pytest.raises(BodyProblem) as exc:
        check_content_type(ctype)
    assert exc.value.status == 415
    assert ctype.split(";")[0] in exc.value.message
    assert exc.value.param == "Content-Type"


def test_encodings():
    assert encoding_of(None) == "identity"
    assert encoding_of("GZIP") == "gzip"
    assert encoding_of("x-gzip") == "gzip"
    with pytest.raises(BodyProblem) as exc:
        encoding_of("br")
    assert exc.value.status == 415


def test_declared_length_over_the_cap_is_413_before_reading():
    check_declared_length("100", 100)
    check_declared_length(None, 100)
    with pytest.raises(BodyProblem) as exc:
        check_declared_length("101", 100)
    assert exc.value.status == 413
    with pytest.raises(BodyProblem) as exc:
        check_declared_length("ten", 100)
    assert exc.value.status == 400


def test_identity_body_is_capped():
    assert decode_body(b"[1]", "identity", 3) == b"[1]"
    with pytest.raises(BodyProblem) as exc:
        decode_body(b"[11]", "identity", 3)
    assert exc.value.status == 413


def test_gzip_body_round_trips_up_to_the_cap_exactly():
    payload = b"x" * 1000
    assert decode_body(gzip.compress(payload), "gzip", 1000) == payload
    with pytest.raises(BodyProblem) as exc:
        decode_body(gzip.compress(payload), "gzip", 999)
    assert exc.value.status == 413


def test_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"\0" * 200_000_000, compresslevel=9)
    assert len(bomb) < 300_000
    with pytest.raises(BodyProblem) as exc:
        decode_body(bomb, "gzip", 5 * 1024 * 1024)
    assert exc.value.status == 413
    assert "decompressed" in exc.value.message


@pytest.mark.parametrize("raw", [b"plain text", gzip.compress(b"[1,2,3]")[:-6],
                                 gzip.compress(b"[]") + b"trailing"])
def test_broken_gzip_is_400(raw):
    with pytest.raises(BodyProblem) as exc:
        decode_body(raw, "gzip", 1000)
    assert exc.value.status == 400
    assert "gzip" in exc.value.message


def test_raw_deflate_is_not_gzip():
    with pytest.raises(BodyProblem):
        decode_body(zlib.compress(b"[]"), "gzip", 1000)
