"""Codes sealed for the delivery service: only the private key opens them, and the key can rotate."""

from __future__ import annotations

import re
import uuid

import pytest

from chassis.sealed_codes import CodeOpener, CodeSealer, SealError, new_key_pair, public_key_of
from contracts.values import SEALED_CODE_PATTERN

CODE = "ORCH-7F3K-9Q2M"


def test_a_sealed_code_opens_with_the_private_key_and_hides_the_code() -> None:
    private, public = new_key_pair("k1")
    code_id = uuid.uuid4()
    sealed = CodeSealer(public).seal(CODE, code_id)
    assert CODE not in sealed
    assert sealed.startswith("x25519.k1.")
    assert CodeOpener([private]).open(sealed, code_id).get_secret_value() == CODE


def test_sealing_the_same_code_twice_gives_two_different_seals() -> None:
    _, public = new_key_pair("k1")
    code_id = uuid.uuid4()
    sealer = CodeSealer(public)
    assert sealer.seal(CODE, code_id) != sealer.seal(CODE, code_id)


def test_a_sealed_code_matches_the_contract_pattern() -> None:
    _, public = new_key_pair("k-2026_01")
    assert re.fullmatch(SEALED_CODE_PATTERN, CodeSealer(public).seal(CODE, uuid.uuid4()))


def test_a_seal_copied_onto_another_code_does_not_open() -> None:
    private, public = new_key_pair("k1")
    sealed = CodeSealer(public).seal(CODE, uuid.uuid4())
    with pytest.raises(SealError, match="does not open"):
        CodeOpener([private]).open(sealed, uuid.uuid4())


def test_another_key_pair_cannot_open_a_seal() -> None:
    _, public = new_key_pair("k1")
    other_private, _ = new_key_pair("k1")
    code_id = uuid.uuid4()
    with pytest.raises(SealError):
        CodeOpener([other_private]).open(CodeSealer(public).seal(CODE, code_id), code_id)


def test_after_a_rotation_codes_sealed_under_the_previous_key_still_open() -> None:
    old_private, old_public = new_key_pair("k1")
    new_private, new_public = new_key_pair("k2")
    code_id = uuid.uuid4()
    before = CodeSealer(old_public).seal(CODE, code_id)
    after = CodeSealer(new_public).seal(CODE, code_id)
    opener = CodeOpener([new_private, old_private])
    assert opener.open(before, code_id).get_secret_value() == CODE
    assert opener.open(after, code_id).get_secret_value() == CODE
    with pytest.raises(SealError, match=r"'k1'.*not configured"):
        CodeOpener([new_private]).open(before, code_id)


def test_a_tampered_seal_does_not_open() -> None:
    private, public = new_key_pair("k1")
    code_id = uuid.uuid4()
    sealed = CodeSealer(public).seal(CODE, code_id)
    tampered = sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB")
    with pytest.raises(SealError):
        CodeOpener([private]).open(tampered, code_id)


def test_the_public_key_is_derived_from_the_private_one() -> None:
    private, public = new_key_pair("k7")
    assert public_key_of(private) == public


@pytest.mark.parametrize("key", ["", "k1", "k1:not base64!", "k1:AAAA", "bad id:" + "A" * 44])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(SealError):
        CodeSealer(key)


def test_an_opener_needs_a_key() -> None:
    with pytest.raises(SealError, match="no seal private key"):
        CodeOpener([None, ""])


def test_keys_never_show_in_a_repr() -> None:
    private, public = new_key_pair("k1")
    assert private.split(":")[1] not in repr(CodeOpener([private]))
    assert repr(CodeSealer(public)) == "CodeSealer(key_id='k1')"
