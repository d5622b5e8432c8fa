"""Code generation: uniqueness, alphabet, length and prefix, for any request (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.voucher.domain import (
    DEFAULT_ALPHABET,
    LOOKALIKES,
    InvalidGeneration,
    generate_codes,
    mask,
    random_characters,
    validate_alphabet,
)

prefixes = st.text(alphabet="ABCXYZ0123-", max_size=6)


@given(count=st.integers(1, 500), length=st.integers(6, 16), prefix=prefixes)
def test_generated_codes_are_distinct_and_shaped_as_asked(count, length, prefix):
    codes = generate_codes(count, length=length, prefix=prefix)
    assert len(codes) == count
    assert len(set(codes)) == count
    for code in codes:
        assert code.startswith(prefix)
        body = code[len(prefix) :]
        assert len(body) == length
        assert set(body) <= set(DEFAULT_ALPHABET)


def test_the_default_alphabet_has_no_look_alike_characters():
    assert not LOOKALIKES & set(DEFAULT_ALPHABET)


@given(seed=st.integers(0, 2**32))
@settings(max_examples=20)
def test_a_weak_random_source_that_repeats_still_yields_distinct_codes(seed):
    rng = random.Random(seed)
    pool = [rng.randbytes(64) for _ in range(3)]  # only three distinct chunks: many duplicates

    def repetitive(n: int) -> bytes:
        return (rng.choice(pool) * (n // 64 + 1))[:n]

    codes = generate_codes(
        50, length=6, randbytes=lambda n: rng.randbytes(n) if rng.random() < 0.5 else repetitive(n)
    )
    assert len(set(codes)) == 50


def test_characters_are_drawn_without_modulo_bias():
    text = random_characters(210_000, DEFAULT_ALPHABET)
    counts = [text.count(c) for c in DEFAULT_ALPHABET]
    expected = len(text) / len(DEFAULT_ALPHABET)
    assert all(abs(n - expected) < expected * 0.05 for n in counts)


@pytest.mark.parametrize("alphabet", ["ABCDEFGHJK0", "short", "ABCDEFGHJKA", "ABCDEFGHJK!"])
def test_unsuitable_alphabets_are_refused(alphabet):
    with pytest.raises(InvalidGeneration):
        validate_alphabet(alphabet)


def test_a_request_too_big_for_the_code_space_is_refused():
    with pytest.raises(InvalidGeneration):
        generate_codes(10_000_000, length=6)


@given(st.text(min_size=1, max_size=40))
def test_a_mask_never_shows_more_than_four_characters(code):
    shown = mask(code).replace("****-", "").replace("****", "")
    assert len(shown) <= 4
    assert code.endswith(shown)
