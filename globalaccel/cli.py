"""The `globalaccel` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from globalaccel.errors import ConfigError
from globalaccel.topology import load_stack

DEFAULT_STACKS = Path("stacks")


def _add_stack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS, help="folder holding the stack files (default: stacks)")


def cmd_plan(args: argparse.Namespace) -> int:
    from globalaccel.plan import compute_plan, render_text

    topology = load_stack(args.stack, args.stacks_dir)
    _, summary = compute_plan(topology)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(render_text(summary))
    return 1 if summary["residency_violations"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="globalaccel", description="Residency-constrained latency routing for a global device cloud.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="compute the routing table for a stack and summarise it")
    _add_stack_args(plan)
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"globalaccel: invalid configuration:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
