"""The audit map: every country's outline, filled by where its live answers actually went.

Outlines come from the `countryinfo` package's GeoJSON (MIT; read offline from the installed package).
Each country is filled with the colour of the center its answered addresses lead to (an answer's address
names its edge and the center that edge forwards to), grey and hatched where its rule refuses service
(fail closed), white with an orange border where it lost service, white where it was not verified, and
outlined in black dashes where a residency violation names it: no country disappears from the map.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import json
from collections.abc import Iterable
from typing import Any

from globalaccel.audit.findings import AuditReport
from globalaccel.topology import Topology

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
W, H = 1000, 500


def xy(lat: float, lon: float) -> tuple[float, float]:
    return (lon + 180.0) / 360.0 * W, (90.0 - lat) / 180.0 * H


@functools.lru_cache(maxsize=1)
def outlines() -> dict[str, list[list[list[float]]]]:
    """ISO alpha-2 -> rings ([lon, lat] points) of the country's polygons."""
    out: dict[str, list[list[list[float]]]] = {}
    for item in (importlib.resources.files("countryinfo") / "data").iterdir():
        if not item.name.endswith(".json"):
            continue
        data: dict[str, Any] = json.loads(item.read_text(encoding="utf-8"))
        code = (data.get("ISO") or {}).get("alpha2")
        if not code:
            continue
        rings: list[list[list[float]]] = []
        for feature in (data.get("geoJSON") or {}).get("features") or []:
            geometry = feature.get("geometry") or {}
            polygons = [geometry.get("coordinates")] if geometry.get("type") == "Polygon" else geometry.get("coordinates") or []
            for polygon in polygons:
                rings.extend(polygon or [])
        if rings:
            out[str(code).upper()] = rings
    return out


def _path(rings: Iterable[list[list[float]]]) -> str:
    parts = []
    for ring in rings:
        points = [xy(lat, lon) for lon, lat in ring]
        if len(points) >= 3:
            parts.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points) + " Z")
    return " ".join(parts)


def world_map_svg(topology: Topology, report: AuditReport) -> str:
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(topology.center_ids)}
    violating = {v.country or v.subject for v in report.violations}
    paths = topology.path_by_address
    shapes = outlines()
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             f'aria-label="Where each country\'s live answers went">',
             '<defs><pattern id="closed" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
             '<rect width="4" height="4" fill="#bbb"/><line x1="0" y1="0" x2="0" y2="4" stroke="#777" stroke-width="1.5"/>'
             '</pattern></defs>', f'<rect width="{W}" height="{H}" fill="#eef3f8"/>']
    for r in report.results:
        reached = sorted({paths[a][1] for a in r.answers if a in paths})
        if r.status == "served" and reached:
            # Filled with the table's center where the answers reach it (the others are its failover chain).
            main = r.center if r.center in reached else reached[0]
            fill, stroke, what = colour.get(main, "#999"), "#fff", f"answers go to {main} (may fail over to: " \
                f"{', '.join(c for c in reached if c != main) or 'none'})"
        elif r.status == "fail_closed":
            fill, stroke, what = "url(#closed)", "#fff", "fails closed (its rule refuses service)"
        elif r.status == "lost_service":
            fill, stroke, what = "#fff", "#ff7f0e", "LOST SERVICE: the table serves it, live state answers nothing"
        else:
            fill, stroke, what = "#fff", "#bbb", r.status.replace("_", " ")
        width = 0.4
        dash = ""
        if r.country in violating:  # black dashes: visible on every fill colour
            stroke, width, what, dash = "#000", 2.2, what + "; RESIDENCY VIOLATION", ' stroke-dasharray="4 2"'
        title = f"<title>{html.escape(r.country)}: {html.escape(what)}</title>"
        if r.country in shapes:
            parts.append(f'<path d="{_path(shapes[r.country])}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash} '
                         f'data-country="{r.country}">{title}</path>')
        else:  # too small for an outline in the data: a dot at its centroid, so it is still on the map
            country = topology.countries[r.country]
            x, y = xy(country.lat, country.lon)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{fill}" stroke="{stroke}" stroke-width="{max(width, 0.6)}" '
                         f'data-country="{r.country}">{title}</circle>')
    for center in topology.centers:
        x, y = xy(center.lat, center.lon)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour[center.id]}" stroke="#000" stroke-width="1.5"/>')
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" font-family="sans-serif" font-size="12" '
                     f'stroke="#fff" stroke-width="3" paint-order="stroke">{html.escape(center.id)}</text>')
    legend_y = H - 14
    for i, center_id in enumerate(topology.center_ids):
        parts.append(f'<rect x="{10 + i * 112}" y="{legend_y - 8}" width="10" height="10" fill="{colour[center_id]}"/>'
                     f'<text x="{24 + i * 112}" y="{legend_y + 1}" font-family="sans-serif" font-size="11">{html.escape(center_id)}</text>')
    parts.append(f'<text x="{14 + len(topology.center_ids) * 112}" y="{legend_y + 1}" font-family="sans-serif" font-size="11">'
                 'hatched: fails closed; white: not verified; orange edge: lost service; black dashes: violation</text>')
    parts.append("</svg>")
    return "\n".join(parts)
