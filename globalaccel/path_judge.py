"""Is an answered address lawful for a country? Each address names its edge and the center that edge
forwards to, so the whole path is judged (ResidencyPolicy.path_violation). For readers of live answers that
hold addresses, not routes: a server answering a network both of whose countries' rules apply."""

from __future__ import annotations

from functools import lru_cache

from globalaccel.topology import Topology


class PathJudge:
    def __init__(self, topology: Topology) -> None:
        self._paths = topology.path_by_address
        self._residency = topology.residency
        self.allows = lru_cache(maxsize=65_536)(self._allows)

    def _allows(self, country: str, address: str) -> bool:
        path = self._paths.get(address)
        if path is None:
            return False  # an address the stack does not know leads nowhere we can vouch for
        edge, center = path
        return self._residency.path_violation(country, edge.country, edge.role, center) is None
