"""Compare the rounds of ``benchmarks/loop/scribbles.py --parts rounds`` across variants (issue #9 §2:
"paint here next" against random strokes, and the settings of the rounds after the first).

Each ``NAME=FILE.json[@PART]`` names the rounds cases of one variant (``PART``: ``rounds`` or
``rounds+TAG``; default ``rounds``). For every set and variant the table gives the mean mIoU per
round over images, the rounds where a strategy beats (a) random strokes, and the paired
difference to (a) over images × rounds 1–last with its 95% t interval (points of %); then the
paired difference of each variant's (a) rounds to the first variant's (the random strokes are the
same in every variant: same seeds)::

    python -m benchmarks.loop.rounds_report defaults=docs/results/scribbles.json \\
        later-ema=/tmp/sv/v6/nist-phase.json@rounds+later-ema0.9 \\
        --out docs/results/variants/scribbles/later-rounds.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from benchmarks.harness.report import write_or_print  # noqa: E402
from benchmarks.harness.stats import paired_difference  # noqa: E402
from benchmarks.loop.scribbles import STRATEGIES  # noqa: E402


def load(specs: list[str]) -> dict[str, dict[tuple[str, str], dict[str, dict[tuple, float]]]]:
    """{variant: {(set, condition): {strategy: {(image, round): mIoU}}}}, variants in the order given."""
    out: dict = {}
    for spec in specs:
        name, _, where = spec.partition("=")
        path, _, part = where.partition("@")
        cases = json.loads(Path(path).read_text())["cases"]
        found = out.setdefault(name, defaultdict(lambda: defaultdict(dict)))
        for key, case in cases.items():
            case_part, dataset, condition, index = key.split("/")
            if case_part != (part or "rounds"):
                continue
            for strategy, history in case["strategies"].items():
                for entry in history:
                    found[(dataset, condition)][strategy][(index, entry["round"])] = entry["miou"]
    return out


def round_means(runs: dict[tuple, float]) -> dict[int, float]:
    """{round: mean mIoU over the images}."""
    by_round = defaultdict(list)
    for (_, r), value in runs.items():
        by_round[r].append(value)
    return {r: sum(v) / len(v) for r, v in sorted(by_round.items())}


def _interval(d) -> str:
    if d is None:
        return "–"
    mean, low, high, n = d
    verdict = "" if low > 0 or high < 0 else ", not distinguishable"
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] (n={n}{verdict})"


def report(variants: dict, against: str | None = None) -> list[str]:
    """The tables; ``against``: a strategy every other one is also paired with (a column more)."""
    extra = f" − ({against}), rounds 1–5 |" if against else ""
    lines = ["| case | variant | strategy | " + " | ".join(f"round {r}" for r in range(6))
             + " | beats (a) in rounds | − (a), rounds 1–5 |" + extra,
             "|---|---|---|" + "---|" * (8 + bool(against))]
    cases = sorted({case for found in variants.values() for case in found})
    for case in cases:
        for name, found in variants.items():
            strategies = found.get(case, {})
            random = strategies.get("a", {})
            for key in (k for k in STRATEGIES if k in strategies):
                runs = strategies[key]
                means, random_means = round_means(runs), round_means(random)
                later = {k: v for k, v in runs.items() if k[1] > 0}
                wins = [r for r in means if r > 0 and means[r] > random_means.get(r, float("inf"))]
                cells = [f"{means[r]:.3f}" if r in means else "–" for r in range(6)]
                diff = "" if key == "a" else _interval(paired_difference(later, random))
                beats = "" if key == "a" else (", ".join(map(str, wins)) or "none")
                if against:
                    other = strategies.get(against, {})
                    versus = "" if key == against or not other else _interval(paired_difference(later, other))
                    diff += f" | {versus}"
                lines.append(f"| {case[0]}, {case[1]} | {name} | ({key}) {STRATEGIES[key]} | "
                             + " | ".join(cells) + f" | {beats} | {diff} |")
    first = next(iter(variants))
    lines += ["", (f"Gain over round 0 (the same settings in every variant, so its differences are the clock's "
                   f"noise), each variant − `{first}`, same strokes for (a), images × rounds 1–5, points of %:"), "",
              "| case | variant | strategy | difference of the gains |", "|---|---|---|---|"]
    for case in cases:
        for key in STRATEGIES:
            base = gains(variants[first].get(case, {}).get(key, {}))
            for name, found in list(variants.items())[1:]:
                mine = gains(found.get(case, {}).get(key, {}))
                if base and mine:
                    lines.append(f"| {case[0]}, {case[1]} | {name} | ({key}) | "
                                 f"{_interval(paired_difference(mine, base))} |")
    lines += ["", ("What a user sees from one press of Train to the next, over the strategies every variant of the "
                   "case ran, images and rounds 1–5: how often a round ends more than 0.02 below the round before, "
                   "its worst drop, and the mean change per round:"), "",
              "| case | variant | strategies | rounds | worse by > 0.02 | worst drop | mean change |",
              "|---|---|---|---|---|---|---|"]
    for case in cases:
        shared = set.intersection(*(set(found[case]) for found in variants.values() if case in found))
        for name, found in variants.items():
            changes = [runs[(image, r)] - runs[(image, r - 1)] for key, runs in found.get(case, {}).items()
                       if key in shared for (image, r) in runs if r > 0 and (image, r - 1) in runs]
            if changes:
                lines.append(f"| {case[0]}, {case[1]} | {name} | {', '.join(sorted(shared))} | {len(changes)} "
                             f"| {sum(c < -0.02 for c in changes)} "
                             f"| {-min(changes):.3f} | {sum(changes) / len(changes):+.3f} |")
    return lines


def gains(runs: dict[tuple, float]) -> dict[tuple, float]:
    """{(image, round ≥ 1): mIoU − the image's round-0 mIoU}."""
    return {(image, r): v - runs[(image, 0)] for (image, r), v in runs.items() if r > 0 and (image, 0) in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", metavar="NAME=FILE.json[@PART]")
    parser.add_argument("--out", type=Path, help="write the tables here (default: print them)")
    parser.add_argument(
        "--against", choices=sorted(STRATEGIES), help="also pair every strategy with this one"
    )
    args = parser.parse_args(argv)
    write_or_print(report(load(args.variants), args.against), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
