import pytest

from schemas.keys import (
    KeyKind,
    display_prefix,
    generate_secret,
    hash_secret,
    hashes_match,
    looks_like_key,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", list(KeyKind))
def test_secrets_are_unique_random_and_recognisable(kind: KeyKind) -> None:
    secrets = {generate_secret(kind) for _ in range(200)}
    assert len(secrets) == 200
    assert all(looks_like_key(s) for s in secrets)
    assert all(s.startswith(f"tsk_{kind.value[0]}_") for s in secrets)


def test_hash_is_not_the_secret_and_matches_only_it() -> None:
    secret = generate_secret(KeyKind.WRITE)
    stored = hash_secret(secret)
    assert secret.encode() not in stored and len(stored) == 32
    assert hashes_match(stored, secret)
    assert not hashes_match(stored, secret[:-1] + ("A" if secret[-1] != "A" else "B"))


def test_display_prefix_does_not_reveal_the_random_part() -> None:
    secret = generate_secret(KeyKind.READ)
    assert display_prefix(secret) == secret[:12]
    assert len(secret) - len(display_prefix(secret)) >= 36


@pytest.mark.parametrize("garbage", ["", "Bearer", "tsk_", "x" * 60, "tsk_" + "a" * 200])
def test_garbage_is_not_a_key(garbage: str) -> None:
    assert not looks_like_key(garbage)
