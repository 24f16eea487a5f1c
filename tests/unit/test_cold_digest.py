"""The cold-migration verification: a hole and its zeros hash the same, a changed byte does not."""

from __future__ import annotations

import hashlib

from ferry.engine.cold import _dense, digest_of


def test_a_hole_digests_as_its_zeros() -> None:
    sparse = digest_of([b"abc", 3 * 2**20 + 5, b"xyz"])
    dense = hashlib.sha256(b"abc" + bytes(3 * 2**20 + 5) + b"xyz").hexdigest()
    assert sparse.hexdigest() == dense and sparse.size == 6 + 3 * 2**20 + 5


def test_one_changed_byte_changes_the_digest() -> None:
    assert digest_of([b"abc", 10]).hexdigest() != digest_of([b"abd", 10]).hexdigest()
    assert digest_of([b"abc", 10]).hexdigest() != digest_of([b"abc", 11]).hexdigest()


def test_dense_turns_holes_into_zero_bytes_of_the_same_length() -> None:
    chunks = list(_dense([b"a", 2**20 + 1, b"b"]))
    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == b"a" + bytes(2**20 + 1) + b"b"
