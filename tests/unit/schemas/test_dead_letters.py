from schemas.dead_letters import DeadLetter, dlq_headers, sample_of


def test_samples_and_headers_are_storable_text_whatever_the_payload():
    letter = DeadLetter(component="speed_layer", reason="path: contains U+0000 \x00",
                        project_id="shop\x00", topic="t", partition=3, offset=42,
                        value=b'{"path": "/a\x00b", "bad": "\xff\xfe"}')
    sample = sample_of(letter.value)
    assert sample is not None and "\x00" not in sample and "\\xff" in sample
    headers = dict(dlq_headers(letter))
    assert headers["turnstile-origin"] == b"t/3/42"
    assert b"\x00" not in headers["turnstile-dead-letter-reason"]
    assert headers["turnstile-component"] == b"speed_layer"


def test_long_payloads_are_cut_to_a_sample():
    sample = sample_of(b"x" * 100_000)
    assert sample is not None and len(sample) == 512
