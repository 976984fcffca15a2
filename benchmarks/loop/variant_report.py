"""Compare a fine-tuning variant of ``benchmarks/loop/scribbles.py --parts budgets --tag TAG`` with
the untagged runs (the dock's defaults when they were measured) in the same JSON (issue #9 §2):
per case, the mIoU of the last preview shown by each budget and the steps made in the longest,
then the paired difference variant − baseline over the cases at each budget with its 95% t
interval (points of %). ``--base-tag``: the baseline is itself a tagged variant (the former
defaults, say); ``--tag ''``: the variant is the untagged runs::

    python -m benchmarks.loop.variant_report docs/results/variants/scribbles/b4x10.json --tag b4x10 \\
        --out docs/results/variants/scribbles/b4x10.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.harness.report import write_or_print  # noqa: E402
from benchmarks.harness.stats import paired_difference  # noqa: E402


def _part(tag: str) -> str:
    return f"budgets+{tag}" if tag else "budgets"


def load(paths: list[Path], tag: str, base_tag: str = "") -> tuple[dict, dict, list[dict]]:
    """({case: finetune result} of the baseline, the same of the variant, the commands), a case
    being (set, condition, image)."""
    base, variant, commands = {}, {}, []
    for path in paths:
        stored = json.loads(path.read_text())
        commands += stored.get("commands", [])
        for key, case in stored["cases"].items():
            part, dataset, condition, index = key.split("/")
            if "finetune" not in case:
                continue
            if part == _part(base_tag):
                base[(dataset, condition, index)] = case["finetune"]
            elif part == _part(tag):
                variant[(dataset, condition, index)] = case["finetune"]
    return base, variant, commands


def _score(result: dict, budget: str) -> float | None:
    shown = result["preview"].get(budget)
    return None if shown is None else shown["miou"]


def report(base: dict, variant: dict, tag: str, commands: list[dict], base_tag: str = "") -> list[str]:
    cases = sorted(set(base) & set(variant))
    budgets = sorted({b for k in cases for arm in (base, variant) for b in arm[k]["preview"]}, key=float)
    name, base_name = tag or "untagged", base_tag or "untagged"
    lines = [f"# Variant `{name}` against `{base_name}`, same run", "", "Commands:", ""]
    lines += [f"    {c['command']}" for c in commands] + [""]
    header = " | ".join(f"{float(b):g} s" for b in budgets)
    lines += [f"| case | arm | first preview (s) | steps | {header} |",
              "|---|---|---|---|" + "---|" * len(budgets)]
    for key in cases:
        for arm, results in ((base_name, base), (name, variant)):
            r = results[key]
            cells = [f"{s:.3f}" if (s := _score(r, b)) is not None else "–" for b in budgets]
            lines.append(f"| {key[0]}, {key[1]}, image {key[2]} | {arm} | {r['first_preview']:.1f} | "
                         f"{r['steps']} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired difference `{name}` − `{base_name}` over the cases, mIoU points, 95% t interval "
              "('–' where a case had nothing to show yet):", "",
              "| budget | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|"]
    for b in budgets:
        a = {k: s for k in cases if (s := _score(variant[k], b)) is not None}
        d = {k: s for k in cases if (s := _score(base[k], b)) is not None}
        diff = paired_difference(a, d)
        if diff is None:
            lines.append(f"| {float(b):g} s | {len(set(a) & set(d))} | – | – | – |")
            continue
        mean, low, high, n = diff
        verdict = "better" if low > 0 else "worse" if high < 0 else "not distinguishable"
        lines.append(f"| {float(b):g} s | {n} | {mean:+.1f} | [{low:+.1f}, {high:+.1f}] | {verdict} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="scribbles.py outputs holding both arms")
    parser.add_argument("--tag", required=True, help="the variant's --tag ('': the untagged runs)")
    parser.add_argument("--base-tag", default="", help="the baseline's --tag (default: the untagged runs)")
    parser.add_argument("--out", type=Path, help="write the report here (default: print it)")
    args = parser.parse_args(argv)
    if args.tag == args.base_tag:
        parser.error("--tag and --base-tag name the same runs")
    base, variant, commands = load(args.json, args.tag, args.base_tag)
    if not set(base) & set(variant):
        names = [repr(t) if t else "the untagged runs" for t in (args.base_tag, args.tag)]
        parser.error(f"no case holds both {names[0]} and {names[1]}")
    write_or_print(report(base, variant, args.tag, commands, args.base_tag), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
