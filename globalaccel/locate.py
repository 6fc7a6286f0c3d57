"""Where a client network is: its cell and the countries whose rules apply, and for how wide a network
that holds (the ECS scope, RFC 7871).

Two locators answer `locate(address, source_prefix_len) -> (Location | None, scope)`:

- `NetworkMap`: a city-level IP geolocation database in the MaxMind DB format (the stack's `cells.networks`),
  read whole into sorted ranges. Each network's record (GeoIP2-City shape: country iso_code, location) is
  placed in the nearest cell of its country. The country dataset (iptocc) is asked too: where it names
  another country, both countries' rules apply (`Location.countries`). Networks the database does not
  hold are unlocatable: no answer (the documented default; never a guess from a neighbour).
- `CountryLocator`: the country dataset alone (stacks without a network database): the country's
  principal cell.

The scope is the prefix length of the network the answer was decided for: the matched range when the
client's source prefix lies inside one, and longer than the source prefix when the source prefix spans
several ranges. A resolver caching by scope (RFC 7871 7.3.1) then never reuses an answer for a network it
was not computed for. An answer for a source prefix that spans several ranges is decided for the first
range, under the rules of every country found in the source prefix (no range of it is left unlawful), and
not at all when part of it is unlocatable.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import iptocc
import maxminddb
import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.country_grid import ipv4_country_grid as ipv4_country_grid
from globalaccel.errors import ConfigError
from globalaccel.topology import Topology

# IPv6 is judged at a network's first and last address (and across it: v6_probes); IPv4 by the /24 grid
# (globalaccel.country_grid).
COUNTRY_SCOPE = {4: 24, 6: 48}  # scope of a country-dataset answer: the grain at which that dataset is constant
# A source prefix spanning more ranges than this is answered as unlocatable (a /8 of scattered networks).
MAX_SPAN_RANGES = 4096


@dataclass(frozen=True)
class Location:
    cell: str | None  # None: the principal cell of countries[0] (country-level locators)
    countries: tuple[str, ...]  # whose rules apply: the cell's country first

    @property
    def key(self) -> str:
        return "|".join((self.cell or "", *self.countries))


class Locator(Protocol):
    def locate(self, address: str, srclen: int | None = None) -> tuple[Location | None, int]:
        """(where the network address/srclen is, or None; the ECS scope). srclen None: the whole address."""
        ...

    def locate_prefix(self, family: int, first: int, srclen: int) -> tuple[Location | None, int]:
        """`locate` for a network given as integers: family 4 or 6 (IPv4-mapped IPv6 excluded), its first
        address with no bits beyond srclen set. The embedded server's per-query path: no text, no objects."""
        ...


def _network(address: str, srclen: int | None) -> tuple[int, int, int, int]:
    """(family, bits, first address, last address) of address/srclen."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:a.b.c.d is an IPv4 client (a server bound to :: sees IPv4 sources so): locate it as IPv4.
        ip, srclen = ip.ipv4_mapped, None if srclen is None else max(0, srclen - 96)
    bits = ip.max_prefixlen
    length = bits if srclen is None else min(srclen, bits)
    host = bits - length
    first = (int(ip) >> host) << host
    return ip.version, bits, first, first + (1 << host) - 1


def country_of(address: str) -> str | None:
    try:
        code = iptocc.country_code(address)
    except (ValueError, TypeError):
        return None
    return code if isinstance(code, str) and code else None


def _mapped(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None


def _in_family_of(address: str, result: tuple[Location | None, int]) -> tuple[Location | None, int]:
    """A scope for an IPv4-mapped address counts IPv6 bits: located as IPv4, its scope gains the 96 bits of
    ::ffff:0:0/96 (else a resolver would read scope 24 as ::/24 and reuse the answer for every mapped client)."""
    return (result[0], result[1] + 96) if _mapped(address) else result


class CountryLocator:
    """The country dataset alone: a country's principal cell, scope = the dataset's grain."""

    def __init__(self, countries: Iterable[str] | None) -> None:
        self.countries = None if countries is None else frozenset(countries)

    def locate(self, address: str, srclen: int | None = None) -> tuple[Location | None, int]:
        return _in_family_of(address, self._locate(address, srclen))

    def locate_prefix(self, family: int, first: int, srclen: int) -> tuple[Location | None, int]:
        make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        return self._locate(str(make(first)), srclen)

    def _locate(self, address: str, srclen: int | None) -> tuple[Location | None, int]:
        family, bits, first, last = _network(address, srclen)
        make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        code = country_of(str(make(first)))
        scope = COUNTRY_SCOPE[family]
        if code is None or (self.countries is not None and code not in self.countries):
            return None, scope
        if family == 4:
            # Through the /24 grid: every country of every /24 the source prefix touches applies.
            grid, codes = ipv4_country_grid()
            cells = np.unique(grid[first >> 8 : (last >> 8) + 1])
            found = {c for i in cells for c in codes[int(i)]}
            if 0 in cells or "" in found:
                return None, scope  # part of it is unlocatable
            if found == {code}:
                return Location(None, (code,)), max(bits - (last - first).bit_length(), 0) if last - first >= 255 else scope
            return Location(None, (code, *sorted(found - {code}))), scope
        if last > first:
            other = country_of(str(make(last)))
            if other is None:
                return None, scope
            return Location(None, (code,) if other == code else (code, other)), scope
        return Location(None, (code,)), scope


# ---- the network database ---------------------------------------------------------------------------------
V6_PROBES = 4096  # most points of one IPv6 network the country dataset is asked about


def v6_probes(first: int, last: int) -> list[int]:
    """Where to ask the country dataset about an IPv6 network: its ends and every /48 in it (the smallest
    assignment the RIRs delegate), or every /32 when there are too many /48s, or evenly spread points. What
    changes country between two probes is not seen: the one approximation left, and said in the README."""
    points = {first, last}
    for grain in (80, 96):  # host bits of a /48, of a /32
        count = ((last - first) >> grain) + 1
        if count <= V6_PROBES:
            points.update(first + (i << grain) for i in range(count))
            return sorted(points)
    step = (last - first) // V6_PROBES
    points.update(first + i * step for i in range(V6_PROBES))
    return sorted(points)


class _Ranges:
    """Sorted, non-overlapping CIDR ranges of one address family."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.prefix: list[int] = []
        self.loc: list[int] = []

    def add(self, first: int, last: int, prefixlen: int, loc: int) -> None:
        self.starts.append(first)
        self.ends.append(last)
        self.prefix.append(prefixlen)
        self.loc.append(loc)

    def sort(self) -> None:
        order = sorted(range(len(self.starts)), key=self.starts.__getitem__)
        self.starts = [self.starts[i] for i in order]
        self.ends = [self.ends[i] for i in order]
        self.prefix = [self.prefix[i] for i in order]
        self.loc = [self.loc[i] for i in order]
        for i in range(1, len(self.starts)):
            if self.starts[i] <= self.ends[i - 1]:
                raise ValueError(f"overlapping networks at range {i}")


def _gap_scope(first: int, bits: int, lo: int, hi: int, at_least: int) -> int:
    """The shortest prefix length >= at_least whose block around `first` lies within [lo, hi]."""
    for length in range(at_least, bits + 1):
        host = bits - length
        start = (first >> host) << host
        if start >= lo and start + (1 << host) - 1 <= hi:
            return length
    return bits


class NetworkMap:
    """Client network -> Location, from a MaxMind DB city database placed onto the stack's cells."""

    def __init__(self, ranges: Mapping[int, _Ranges], locations: Sequence[Location], source: str) -> None:
        self._ranges = ranges
        self.locations = tuple(locations)
        self.source = source

    @property
    def networks(self) -> int:
        return sum(len(r.starts) for r in self._ranges.values())

    def ranges(self, family: int) -> list[tuple[str, Location]]:
        """Every network of one family (CIDR text) with its location, in address order."""
        r = self._ranges[family]
        make = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
        return [(str(make((start, prefixlen))), self.locations[loc])
                for start, prefixlen, loc in zip(r.starts, r.prefix, r.loc, strict=True)]

    def sample_networks(self, per_location: int = 2) -> dict[Location, list[str]]:
        """Up to `per_location` networks (CIDR text) of every location the map holds: where audits and tests
        ask from, so that what they ask is what the database places."""
        out: dict[Location, list[str]] = {}
        for family, r in sorted(self._ranges.items()):
            cls_ = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
            for start, prefixlen, loc in zip(r.starts, r.prefix, r.loc, strict=True):
                mine = out.setdefault(self.locations[loc], [])
                if len(mine) < per_location:
                    mine.append(str(cls_((start, prefixlen))))
        return out

    @classmethod
    def from_mmdb(cls, path: Path, cells: Sequence[Cell]) -> NetworkMap:
        try:
            reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError.single(path, None, "cells.networks", f"not a readable MaxMind DB file: {exc}") from exc
        placer = _CellPlacer(cells)
        grid, codes = ipv4_country_grid()
        locations: list[Location] = []
        index: dict[Location, int] = {}
        ranges = {4: _Ranges(), 6: _Ranges()}

        def loc_id(location: Location) -> int:
            if location not in index:
                index[location] = len(locations)
                locations.append(location)
            return index[location]

        v6: list[tuple[int, int, int, str | None, str]] = []
        with reader:
            for network, record in reader:
                placed = placer.place(record)
                if placed is None:
                    continue  # a country the stack does not route: unlocatable
                cell_id, home = placed
                first = int(network.network_address)
                last = first + network.num_addresses - 1
                if network.version == 6:
                    v6.append((first, last, network.prefixlen, cell_id, home))
                    continue
                lo, hi = first >> 8, (last >> 8) + 1
                # Split the network where the country dataset changes country (at its /24 grain).
                cuts = [lo, hi] if hi - lo == 1 else [lo, *(lo + 1 + np.flatnonzero(np.diff(grid[lo:hi]))).tolist(), hi]
                for a, b in itertools.pairwise(cuts):
                    countries: tuple[str, ...] = (home, *(c for c in codes[int(grid[a])] if c and c != home))
                    if len(cuts) == 2:  # one country throughout (the common case): the network as it is
                        ranges[4].add(first, last, network.prefixlen, loc_id(Location(cell_id, countries)))
                        continue
                    sub_first, sub_last = max(first, a << 8), min(last, (b << 8) - 1)
                    for block in ipaddress.summarize_address_range(ipaddress.IPv4Address(sub_first), ipaddress.IPv4Address(sub_last)):
                        ranges[4].add(int(block.network_address), int(block.broadcast_address), block.prefixlen,
                                      loc_id(Location(cell_id, countries)))
        # IPv6: the country dataset at each network's first and last address and across it (v6_probes), in one batch.
        probes = [v6_probes(lo_, hi_) for lo_, hi_, *_ in v6]
        found = iter(iptocc.country_code([str(ipaddress.IPv6Address(x)) for points in probes for x in points]))
        for points, (first, last, prefixlen, cell_id, home) in zip(probes, v6, strict=True):
            seen = {next(found) for _ in points} - {None, "", home}
            countries = (home, *sorted(str(c) for c in seen if c))
            ranges[6].add(first, last, prefixlen, loc_id(Location(cell_id, countries)))
        for r in ranges.values():
            r.sort()
        return cls(ranges, locations, str(path))

    def locate(self, address: str, srclen: int | None = None) -> tuple[Location | None, int]:
        return _in_family_of(address, self._locate(address, srclen))

    def locate_prefix(self, family: int, first: int, srclen: int) -> tuple[Location | None, int]:
        bits = 32 if family == 4 else 128
        last = first + (1 << (bits - min(srclen, bits))) - 1
        r = self._ranges[family]
        i = bisect.bisect_right(r.starts, first) - 1
        if i >= 0 and r.ends[i] >= last:
            return self.locations[r.loc[i]], r.prefix[i]  # the common case, as in _locate_block, without the call
        return self._locate_block(family, bits, first, last)

    def _locate(self, address: str, srclen: int | None) -> tuple[Location | None, int]:
        return self._locate_block(*_network(address, srclen))

    def _locate_block(self, family: int, bits: int, first: int, last: int) -> tuple[Location | None, int]:
        length = bits - (last - first).bit_length()
        r = self._ranges[family]
        i = bisect.bisect_right(r.starts, first) - 1
        inside = i >= 0 and r.ends[i] >= first
        if inside and r.ends[i] >= last:
            return self.locations[r.loc[i]], r.prefix[i]  # the whole source prefix lies in one range
        if not inside:
            gap_lo = r.ends[i] + 1 if i >= 0 else 0
            nxt = i + 1
            gap_hi = r.starts[nxt] - 1 if nxt < len(r.starts) else (1 << bits) - 1
            if gap_hi >= last:
                return None, _gap_scope(first, bits, gap_lo, gap_hi, 0)  # wholly unlocatable
            # Unlocatable at its start and located further on: no answer, valid only for this source prefix.
            return None, _gap_scope(first, bits, gap_lo, gap_hi, length + 1)
        # The source prefix spans several ranges: the first range's cell, under every country found in it.
        j_end = bisect.bisect_right(r.starts, last)
        if j_end - i > MAX_SPAN_RANGES:
            return None, r.prefix[i]
        countries: list[str] = []
        covered = first - 1
        for j in range(i, j_end):
            if r.starts[j] > covered + 1:
                return None, r.prefix[i]  # a hole in the source prefix: part of it is unlocatable
            covered = r.ends[j]
            for code in self.locations[r.loc[j]].countries:
                if code not in countries:
                    countries.append(code)
        if covered < last:
            return None, r.prefix[i]
        head = self.locations[r.loc[i]]
        return Location(head.cell, (head.countries[0], *(c for c in countries if c != head.countries[0]))), r.prefix[i]


class _CellPlacer:
    """A GeoIP2-City record -> the nearest cell of its country (memoised: many networks share a place)."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self._by_country: dict[str, tuple[list[Cell], NDArray[np.float64]]] = {}
        grouped: dict[str, list[Cell]] = {}
        for cell in cells:
            grouped.setdefault(cell.country, []).append(cell)
        for code, mine in grouped.items():
            self._by_country[code] = (mine, _vectors([(c.lat, c.lon) for c in mine]))
        self._memo: dict[tuple[str, float, float], Cell] = {}

    def place(self, record: object) -> tuple[str | None, str] | None:
        """(cell id, country) for a record; cell None: the country's principal cell (a record with no
        coordinates, in a country of several cells). None: not placeable (a country the stack does not route)."""
        if not isinstance(record, dict):
            return None
        country = record.get("country") or {}
        code = country.get("iso_code") if isinstance(country, dict) else None
        if not isinstance(code, str) or code not in self._by_country:
            return None
        location = record.get("location")
        if not isinstance(location, dict):
            location = {}
        lat, lon = location.get("latitude"), location.get("longitude")
        mine, vectors = self._by_country[code]
        if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
            return (mine[0].id if len(mine) == 1 else None), code
        key = (code, float(lat), float(lon))
        if key not in self._memo:
            v = _vectors([(float(lat), float(lon))])[0]
            self._memo[key] = mine[int(np.argmax(vectors @ v))]
        cell = self._memo[key]
        return (cell.id if cell is not None else None), code


def _vectors(points: list[tuple[float, float]]) -> NDArray[np.float64]:
    out = np.empty((len(points), 3))
    for n, (lat, lon) in enumerate(points):
        la, lo = math.radians(lat), math.radians(lon)
        out[n] = (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))
    return out


def locator_for(topology: Topology) -> Locator:
    """The stack's network database when it names one, else the country dataset."""
    if topology.client_networks is not None:
        if not topology.client_networks.is_file():
            raise ConfigError.single(Path(topology.source_files[0]), None, "config.global-accel:cells.networks",
                                     f"no such file: {topology.client_networks}")
        return NetworkMap.from_mmdb(topology.client_networks, topology.cells)
    return CountryLocator(topology.countries)


def example_network(locator: Locator, country: str = "DE") -> str:
    """A network the locator places in `country`, for the hints the commands print."""
    if isinstance(locator, NetworkMap):
        for location, networks in locator.sample_networks(1).items():
            if location.countries == (country,):
                return networks[0]
    return "85.214.0.0/16"  # the country dataset places this one in Germany (tests/test_dns_embedded.py)
