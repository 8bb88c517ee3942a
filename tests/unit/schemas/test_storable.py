import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from schemas.storable import (
    NOT_FINITE_PROBLEM,
    NUL_PROBLEM,
    SURROGATE_PROBLEM,
    number_problem,
    text_problem,
    unstorable_mask,
)


def test_text_problems_name_what_postgresql_and_utf8_refuse():
    assert text_problem("/users/42") is None
    assert text_problem("/ünïcode/✓") is None
    assert text_problem("/a\x00b") == NUL_PROBLEM
    assert text_problem("é\x00") == NUL_PROBLEM
    assert text_problem("/x\ud800y") == SURROGATE_PROBLEM


def test_non_finite_numbers_are_refused():
    assert number_problem(1.5) is None
    assert number_problem(float("nan")) == NOT_FINITE_PROBLEM
    assert number_problem(float("inf")) == NOT_FINITE_PROBLEM


@given(st.text())
def test_text_without_a_problem_encodes_and_has_no_nul(value):
    if text_problem(value) is None:
        assert "\x00" not in value
        value.encode("utf-8")


def test_unstorable_mask_finds_nul_in_plain_and_dictionary_columns():
    plain = pa.array(["ok", "bad\x00", None, "fine"])
    assert unstorable_mask(plain).tolist() == [False, True, False, False]
    assert unstorable_mask(plain.dictionary_encode()).tolist() == [False, True, False, False]
    chunked = pa.chunked_array([["a"], ["\x00"]])
    assert unstorable_mask(chunked).tolist() == [False, True]
