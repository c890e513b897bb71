"""A worker's share of a dataset: ``--shard I/N`` picks the items whose key hashes to I modulo N.

The hash (BLAKE2b of the key) depends on the key alone, not on the order items are listed in or on
how many there are, so N workers given the same list (or the same files listed in another order)
partition it exactly, and a worker restarted alone takes the same share. Shares are numbered from 0,
as SLURM's and PBS's array indices and GNU parallel's ``{%}`` - 1 are.
"""
from __future__ import annotations

import hashlib
import re


def parse(text: str) -> tuple[int, int]:
    """``(I, N)`` of ``"I/N"`` with 0 <= I < N; a clear error otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or int(match[2]) < 1 or int(match[1]) >= int(match[2]):
        raise ValueError(f"must be I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {text!r}")
    return int(match[1]), int(match[2])


def owner(key: str, count: int) -> int:
    """The share (0 .. count-1) that ``key`` belongs to."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def mine(keys, share: tuple[int, int] | None) -> list:
    """The keys of ``share`` (all of them without one), in their order."""
    if share is None:
        return list(keys)
    index, count = share
    return [k for k in keys if owner(k, count) == index]
