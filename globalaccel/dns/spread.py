"""Which address a client is given first, so that clients who connect to the first address only (most
stub resolvers and devices do) spread over a cell's edges by the router's weights.

A cell's answer is its addresses best first, each with a share (the router's weight, per mille). Each
client network is given one of them first, chosen by a hash of the network the answer is valid for: the ECS
scope's network, so that every client a caching resolver may hand the answer to was given the same one. The
rest follow in the cell's order. Across many networks the first addresses follow the shares.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

_MULTIPLIER = 0x9E3779B97F4A7C15  # Fibonacci hashing: neighbouring networks land far apart
_MASK = (1 << 64) - 1


def network_key(family: int, first: int, scope: int) -> int:
    """The identity of the network an answer is scoped to: its first address cut to `scope` bits."""
    bits = 32 if family == 4 else 128
    host = bits - min(scope, bits)
    return ((first >> host) << 8 | scope) << 1 | (family == 6)


def pick(cumulative: Sequence[int], key: int) -> int:
    """The index whose share the network `key` falls into; `cumulative` are the running totals of shares."""
    folded = (key ^ (key >> 64)) & _MASK
    point = ((folded * _MULTIPLIER) & _MASK) % cumulative[-1]
    return bisect.bisect_right(cumulative, point)


def running_totals(shares: Sequence[int]) -> tuple[int, ...]:
    return tuple(itertools.accumulate(shares))


def first_by_share(addresses: tuple[str, ...], shares: Sequence[int], key: int) -> tuple[str, ...]:
    """`addresses` with the one `key` falls to moved first, the rest in their order."""
    if len(shares) != len(addresses) or len(addresses) < 2:
        return addresses
    i = pick(running_totals(shares), key)
    return (addresses[i], *addresses[:i], *addresses[i + 1 :])


def shares_of(weights: Sequence[float]) -> tuple[int, ...]:
    """The router's weights (shares of a cell's demand) as whole per-mille shares, each at least 1."""
    return tuple(max(1, round(w * 1000)) for w in weights)
