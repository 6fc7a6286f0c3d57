"""`globalaccel rules diff`: what a change of the residency rules does, before it ships.

Given two rule sets (two files, or the stack's file at two git revisions) it lists each country whose
rule, allowed centers or allowed edges change, and the demand that moves: the country's population
when its computed route (all centers and edges healthy) differs between the two rule sets.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from globalaccel.errors import ConfigError, Problem, UsageError
from globalaccel.residency import ResidencyPolicy
from globalaccel.residency_file import load_residency
from globalaccel.routing.summary import route_table
from globalaccel.topology import Topology


def read_rules(spec: str, topology: Topology) -> tuple[ResidencyPolicy, str]:
    """`spec` is a file path, or `REV:` (the stack's residency file at git revision REV), or
    `REV:PATH` (PATH at REV, relative to the repository root). Returns the policy and a label."""
    path = Path(spec)
    if path.is_file():
        return _load(path, topology), str(path)
    rev, sep, rel = spec.partition(":")
    if not sep:
        raise UsageError(f"{spec!r}: neither a file nor REV: / REV:PATH (a git revision)")
    current = Path(topology.residency.source_file)
    root = _git(["rev-parse", "--show-toplevel"], current.parent).strip()
    rel = rel or str(current.resolve().relative_to(Path(root).resolve()))
    text = _git(["show", f"{rev}:{rel}"], Path(root))
    label = f"{rev}:{rel}"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / Path(rel).name
        file.write_text(text, encoding="utf-8")
        try:
            return _load(file, topology), label
        except ConfigError as exc:  # name the revision, not the temporary copy
            problems = [dataclasses.replace(p, file=label) if p.file == str(file) else p for p in exc.problems]
            problems.insert(0, Problem(label, None, "schema", "this revision's rules do not load under the current schema "
                                    "(e.g. written before terminate_in/never_transit/url existed): compare files instead"))
            raise ConfigError(problems) from exc


def _git(args: list[str], cwd: Path) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise UsageError(f"git {' '.join(args)}: {detail.strip()}") from exc


def _load(file: Path, topology: Topology) -> ResidencyPolicy:
    as_of = topology.residency.as_of
    return load_residency(file, {c.id: c.country for c in topology.centers}, topology.countries, as_of)


def diff_rules(topology: Topology, old: ResidencyPolicy, new: ResidencyPolicy, labels: tuple[str, str]) -> dict[str, Any]:
    world_old = dataclasses.replace(topology, residency=old)
    world_new = dataclasses.replace(topology, residency=new)
    table_old = route_table(world_old)
    table_new = route_table(world_new)
    demand = {c.id: c.demand for c in topology.cells}
    total = sum(demand.values()) or 1.0
    centers = topology.center_ids
    changes: list[dict[str, Any]] = []
    for code in sorted(topology.countries):
        r_old, r_new = old.rule_for(code), new.rule_for(code)
        c_old, c_new = set(old.permitted_centers(code, centers)), set(new.permitted_centers(code, centers))
        e_old = {e.id for e in topology.edges if r_old.edge_allowed(e.country, e.role, code)}
        e_new = {e.id for e in topology.edges if r_new.edge_allowed(e.country, e.role, code)}
        cells = [c.id for c in topology.cells if c.country == code]
        moved = [cid for cid in cells if (table_old.routes[cid].center, table_old.routes[cid].edge_ids)
                 != (table_new.routes[cid].center, table_new.routes[cid].edge_ids)]
        if r_old.canonical() == r_new.canonical() and not moved:
            continue
        changes.append({
            "country": code, "rule": [r_old.name, r_new.name], "mode": [r_old.mode.value, r_new.mode.value],
            "centers_added": sorted(c_new - c_old), "centers_removed": sorted(c_old - c_new),
            "edges_added": len(e_new - e_old), "edges_removed": len(e_old - e_new),
            "route": [_route(table_old.routes[cells[0]]), _route(table_new.routes[cells[0]])] if cells else None,
            "demand_moving": sum(demand[c] for c in moved), "demand_share_moving": round(sum(demand[c] for c in moved) / total, 6),
        })
    return {
        "stack": topology.stack, "old": {"rules": labels[0], "hash": old.rules_hash}, "new": {"rules": labels[1], "hash": new.rules_hash},
        "as_of": str(old.as_of), "countries_changed": len(changes),
        "demand_share_moving": round(sum(c["demand_share_moving"] for c in changes), 6), "changes": changes,
    }


def _route(route: Any) -> str:
    return f"{route.center} via {len(route.answers)} edges" if route.center else route.reason


def render_diff(diff: dict[str, Any]) -> str:
    lines = [f"rules diff for stack {diff['stack']} as of {diff['as_of']}",
             f"  old {diff['old']['rules']} ({diff['old']['hash']})", f"  new {diff['new']['rules']} ({diff['new']['hash']})",
             f"  {diff['countries_changed']} countries change; {diff['demand_share_moving']:.2%} of demand moves", ""]
    for c in diff["changes"]:
        rule = c["rule"][0] if c["rule"][0] == c["rule"][1] else f"{c['rule'][0]} -> {c['rule'][1]}"
        centers = " ".join([*(f"+{x}" for x in c["centers_added"]), *(f"-{x}" for x in c["centers_removed"])]) or "centers same"
        lines.append(f"{c['country']:<4}{rule:<48}{centers:<36}edges +{c['edges_added']} -{c['edges_removed']}  "
                     f"{c['route'][0]} -> {c['route'][1]}  demand {c['demand_share_moving']:.2%}")
    return "\n".join(lines)
