"""Audit reports: JSON for machines; Markdown, a self-contained HTML page (with an inline SVG world map of
where each country's live answers went: globalaccel.audit.worldmap) and CSV for people."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from globalaccel.audit.findings import AuditReport, Scenario
from globalaccel.audit.worldmap import world_map_svg
from globalaccel.topology import Topology


def to_markdown(report: AuditReport) -> str:
    data = report.to_json()
    lines = [f"# Compliance audit: stack {report.stack} (source: {report.source})", "",
             f"**{report.verdict}**: {len(report.violations)} residency violations, {len(report.drift)} drift findings, "
             f"{report.countries} countries ({data['summary']['served']} served, {data['summary']['fail_closed']} fail closed by "
             f"rule, {data['summary']['lost_service']} lost service, {data['summary']['not_locatable']} not locatable), "
             f"table `{report.table_hash[:16]}`, rules `{report.rules.get('hash', '?')}`.", ""]
    lines += _scope_markdown(report)
    if report.violations:
        lines += ["## Violations", "", "| kind | subject | evidence |", "|---|---|---|"]
        lines += [f"| {v.kind} | {v.subject} | {v.evidence.replace('|', '/')} |" for v in report.violations]
        lines.append("")
    if report.drift:
        lines += ["## Drift (live state differs from the table; no answer left the allowed set)", "", "| kind | subject | evidence |",
                  "|---|---|---|"]
        lines += [f"| {v.kind} | {v.subject} | {v.evidence.replace('|', '/')} |" for v in report.drift]
        lines.append("")
    if report.scenarios:
        lines += ["## What-if scenarios: where traffic goes", "",
                  "| scenario | violations | countries losing service | where traffic goes |", "|---|---|---|---|"]
        lines += [f"| {s.name} | {s.violations} | {', '.join(s.countries_losing_service) or '-'} | {_moves(s, '<br>')} |"
                  for s in report.scenarios]
        lines.append("")
    if report.data_stores:
        lines += ["## Data stores", "", "| store | center | region | problems |", "|---|---|---|---|"]
        for d in report.data_stores:
            lines.append(f"| {d.get('bucket') or d.get('resource')} | {d.get('center')} | {d.get('region', '-')} | "
                         f"{', '.join(d.get('problems', [])) or 'none'} |")
        lines.append("")
    if report.decision_log:
        lines += ["## Decision log", "", _log_text(report.decision_log), ""]
    if report.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in report.notes), ""]
    lines += _rules_markdown(report.rules)
    lines += ["## Countries: verdict and evidence", "",
              "| country | rule | mode | table's center | status | asked | answers seen -> edge -> center |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.country} | {r.rule} | {r.mode} | {r.center or '-'} | {r.status} | {r.asked} | {'<br>'.join(r.paths) or '-'} |"
              for r in report.results]
    return "\n".join(lines) + "\n"


def _moves(scenario: Scenario, sep: str) -> str:
    return sep.join(f"{move}: {' '.join(countries)}" for move, countries in scenario.moves_by_path().items()) or "-"


def _log_text(log: dict[str, Any]) -> str:
    head = log.get("head") or {}
    anchors = log.get("anchors") or {}
    checked = "; ".join(f"{where}: length {a.get('length')}, hash {a.get('hash')}" for where, a in anchors.items())
    return (f"{log['entries']} entries in {log['path']}, chain {'intact' if log['chain_intact'] else 'BROKEN'}; head: length "
            f"{head.get('length')}, hash {head.get('hash')}. "
            + (f"Checked against the anchored heads ({checked}); {log.get('beyond_anchor')} entries lie beyond the newest anchor "
               "and are protected only by the chain until the next publish anchors them. An anchor in the zone detects tampering "
               "by whoever can change the log but not the zone." if anchors else
               "No anchor: the live zone holds no _globalaccel-log record and no --log-anchor was given, so a log cut short or "
               "re-chained cannot be told from an intact one; keep this head and pass this report as the anchor next time."))


def _scope_text(report: AuditReport) -> list[str]:
    cov, scope = report.coverage, report.scope
    out = []
    if cov:
        out.append(f"Verified {cov['verified_demand_share']:.4%} of demand (required {cov['required_share']:.2%}, and every strict "
                   f"country). Not verified: {' '.join(cov['unverified']) or 'none'}"
                   f"{'; strict among them: ' + ' '.join(cov['strict_unverified']) if cov['strict_unverified'] else ''}.")
    if scope:
        manifests = scope.get("manifests")
        out.append(f"Examined: answers from the {scope.get('answers')} source; what-if: {scope.get('what_if') or 'not run'}; "
                   f"S3 buckets: {'all of the account' if scope.get('s3') else 'not examined (--s3)'}; Kubernetes manifests: "
                   + (f"{manifests['documents']} objects from {manifests['folder']}, {manifests['examined']} data stores examined, "
                      f"not data stores: {manifests['not_data_stores'] or 'none'}" if manifests else "not examined (--manifests)") + ".")
    return out


def _scope_markdown(report: AuditReport) -> list[str]:
    prov = report.provenance
    lines = []
    if report.coverage or report.scope:
        lines += ["## Scope and coverage", "", *_scope_text(report), ""]
    if prov:
        lines += ["## Provenance", "", f"- time: {prov['time']}", f"- tool: {prov['tool']}, commit {prov['commit']}",
                  f"- rules: `{prov['rules_hash']}`",
                  f"- this report: sha256 `{report.to_json()['report_sha256']}` (of audit.json's content)"]
        lines += [f"- {name}: sha256 `{digest}`" for name, digest in prov["input_sha256"].items()]
        lines.append("")
    return lines


def _rule_rows(rules: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in rules.get("rules", []):
        dated = r["effective_from"] or r["effective_until"]
        period = " to ".join(x or "..." for x in (r["effective_from"], r["effective_until"])) if dated else ""
        rows.append([r["name"], r["mode"], " ".join(r["centers"]) or "-", " ".join(r["terminate_in"]) or "nowhere but at home",
                     " ".join(r["never_transit"]) or "-", r["basis"], r["source"], " ".join(r["urls"]),
                     r["reviewed"] or "NOT RE-CHECKED", period, " ".join(r["countries"])])
    return rows


RULE_HEAD = ["rule", "mode", "centers", "terminate in", "never transit", "basis", "source", "links", "reviewed", "in force",
             "countries"]


def _rules_markdown(rules: dict[str, Any]) -> list[str]:
    if not rules:
        return []
    lines = ["## Residency rules judged against", "",
             f"Rules `{rules['hash']}` from {rules['file']}, as of {rules['as_of']}. "
             f"Countries on the default rule: {' '.join(rules['default_countries']) or 'none'}. "
             f"Rules not re-checked against their sources: {', '.join(rules['unreviewed']) or 'none'}.", "",
             "| " + " | ".join(RULE_HEAD) + " |", "|" + "---|" * len(RULE_HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in _rule_rows(rules)]
    lines += [f"- {u['date']}: {u['country']} moves from {u['from']} to {u['to']}" for u in rules.get("upcoming", [])]
    return [*lines, ""]


def to_html(report: AuditReport, topology: Topology) -> str:
    data = report.to_json()
    ok = data["compliant"]

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    sections = [
        f"<h1>Compliance audit: stack {html.escape(report.stack)}</h1>",
        f'<p class="verdict {"ok" if ok else "bad"}" id="verdict">{report.verdict}: '
        f"{len(report.violations)} residency violations, {len(report.drift)} drift findings; {report.countries} countries, "
        f"{data['summary']['served']} served, {data['summary']['fail_closed']} fail closed by rule, "
        f"{data['summary']['lost_service']} lost service, {data['summary']['not_locatable']} not locatable. Source: "
        f"{html.escape(report.source)}; table {report.table_hash[:16]}; rules {html.escape(str(report.rules.get('hash', '?')))}.</p>",
        '<h2>Where traffic goes</h2><figure id="map">' + world_map_svg(topology, report) + "</figure>",
    ]
    prov = report.provenance
    if report.coverage or report.scope:
        sections.append("<h2>Scope and coverage</h2>" + "".join(f"<p id=coverage>{html.escape(t)}</p>" if i == 0 else
                                                               f"<p>{html.escape(t)}</p>" for i, t in enumerate(_scope_text(report))))
    if prov:
        sections.append("<h2>Provenance</h2>" + table(["item", "value"], [
            ["time", prov["time"]], ["tool", prov["tool"]], ["commit", prov["commit"]], ["rules", prov["rules_hash"]],
            ["this report (sha256 of audit.json's content)", data["report_sha256"]],
            *[[f"sha256 {name}", digest] for name, digest in prov["input_sha256"].items()]]))
    if report.violations:
        sections.append("<h2>Violations</h2>" + table(["kind", "subject", "evidence"],
                                                      [[v.kind, v.subject, v.evidence] for v in report.violations]))
    if report.drift:
        sections.append("<h2>Drift</h2><p>Live state differs from the table; no answer left the allowed set.</p>"
                        + table(["kind", "subject", "evidence"], [[v.kind, v.subject, v.evidence] for v in report.drift]))
    if report.scenarios:
        sections.append("<h2>What-if scenarios: where traffic goes</h2>" + table(
            ["scenario", "violations", "countries losing service", "where traffic goes"],
            [[s.name, str(s.violations), ", ".join(s.countries_losing_service) or "-", _moves(s, "; ")] for s in report.scenarios]))
    if report.data_stores:
        sections.append("<h2>Data stores</h2>" + table(
            ["store", "center", "region", "problems"],
            [[str(d.get("bucket") or d.get("resource")), str(d.get("center")), str(d.get("region", "-")),
              ", ".join(d.get("problems", [])) or "none"] for d in report.data_stores]))
    if report.decision_log:
        sections.append(f"<h2>Decision log</h2><p id=log>{html.escape(_log_text(report.decision_log))}</p>")
    if report.notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    if report.rules:
        rules = report.rules
        sections.append(f"<h2>Residency rules judged against</h2><p id=rules>Rules {html.escape(rules['hash'])} as of "
                        f"{html.escape(rules['as_of'])}; default rule for {len(rules['default_countries'])} countries: "
                        f"{html.escape(' '.join(rules['default_countries']))}. Not re-checked: "
                        f"{html.escape(', '.join(rules['unreviewed']) or 'none')}.</p>" + table(RULE_HEAD, _rule_rows(rules)))
    sections.append("<h2 id=countries>Countries: verdict and evidence</h2>" + table(
        ["country", "rule", "mode", "table's center", "status", "asked", "answers seen -> edge -> center"],
        [[r.country, r.rule, r.mode, r.center or "-", r.status, r.asked, "; ".join(r.paths) or "-"] for r in report.results]))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}.verdict{font-size:18px;padding:8px}"
             ".ok{background:#e6f4ea}.bad{background:#fce8e6}figure{margin:0}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>globalaccel audit: {html.escape(report.stack)}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def to_csv(report: AuditReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["country", "rule", "mode", "center", "status", "allowed_centers", "answers", "asked", "paths"])
    for r in report.results:
        writer.writerow([r.country, r.rule, r.mode, r.center or "", r.status, " ".join(r.allowed_centers), " ".join(r.answers),
                         r.asked, "; ".join(r.paths)])
    return out.getvalue()


def write_all(report: AuditReport, topology: Topology, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "audit.json": json.dumps(report.to_json(), indent=2),
        "audit.md": to_markdown(report),
        "audit.html": to_html(report, topology),
        "countries.csv": to_csv(report),
        "map.svg": world_map_svg(topology, report),
    }
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths
