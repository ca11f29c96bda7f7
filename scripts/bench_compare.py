#!/usr/bin/env python3
"""Compares a fresh benchmark run against the baseline recorded in
BENCHMARKS.md (section "Regression baseline") and reports regressions.

Not a CI gate: the machine is noisy, so it prints a verdict per figure and
exits 0 unless --fail-on-regression is given. Each baseline row names its
own tolerance.

Figures:
  criterion:<group>/<bench>     criterion median, ns (lower is better)
  bench:<scenario>:ratio        botectl bench --compare ratio, boted / direct
                                measured in the same run (higher is better)
  bench:<scenario>:cpu          router CPU per message, us (lower is better)
  bench:<scenario>:dropped      presettled messages dropped (must stay 0)

Usage:
  scripts/bench_compare.py                  # everything (~5 minutes)
  scripts/bench_compare.py --only criterion # micro-benchmarks only
  scripts/bench_compare.py --only bench --runs 5
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "Regression baseline"

# botectl bench arguments of each scenario a baseline row may name.
SCENARIOS = {
    "1router-unsettled": ["--messages", "300000"],
    "1router-presettled": ["--messages", "300000", "--presettled"],
    "chain-unsettled": ["--chain", "3", "--messages", "300000"],
    "chain-presettled": ["--chain", "3", "--messages", "300000", "--presettled"],
}

# The criterion bench (package, bench target) that produces each group.
CRITERION = {
    "hot_path": ("bote-amqp", "codec"),
    "message": ("bote-amqp", "codec"),
    "routes": ("bote-topology", "routes"),
}


class Row:
    def __init__(self, key, baseline, unit, tolerance, line):
        self.key = key
        self.baseline = baseline
        self.unit = unit
        self.tolerance = tolerance
        self.line = line

    @property
    def higher_is_better(self):
        return self.key.endswith(":ratio")


def parse_baseline(path):
    """The rows of the baseline table: | key | baseline | unit | tolerance |."""
    rows = []
    in_section = False
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("## "):
            in_section = SECTION.lower() in line.lower()
            continue
        if not in_section or not line.startswith("|"):
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("key", "") or set(cells[0]) <= set("-: "):
            continue
        try:
            baseline = float(cells[1].replace(",", ""))
            tolerance = float(cells[3].rstrip("%")) / 100.0
        except ValueError:
            sys.exit(f"{path}:{n}: baseline row {cells[0]!r}: baseline and tolerance must be numbers")
        rows.append(Row(cells[0], baseline, cells[2], tolerance, n))
    if not rows:
        sys.exit(f"{path}: no rows found in the section '{SECTION}'")
    return rows


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout


def criterion_figures(rows):
    """Runs each needed criterion bench once and reads the medians."""
    wanted = [r.key.split(":", 1)[1] for r in rows if r.key.startswith("criterion:")]
    benches = {}
    for name in wanted:
        group = name.split("/", 1)[0]
        if group not in CRITERION:
            sys.exit(f"criterion group {group!r} of {name!r} is not in CRITERION of {__file__}")
        benches.setdefault(CRITERION[group], []).append(name)
    figures = {}
    for (package, bench), names in benches.items():
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        run(["cargo", "bench", "-p", package, "--bench", bench, "--", "--warm-up-time", "1",
             "--measurement-time", "3", pattern])
        for name in names:
            estimates = target_dir() / "criterion" / name / "new" / "estimates.json"
            try:
                data = json.loads(estimates.read_text())
            except OSError as e:
                sys.exit(f"{estimates}: criterion left no estimate for {name}: {e}")
            figures["criterion:" + name] = data["median"]["point_estimate"]
    return figures


def bench_figures(rows, runs):
    """Runs each needed botectl scenario `runs` times; medians."""
    scenarios = sorted({r.key.split(":")[1] for r in rows if r.key.startswith("bench:")})
    if not scenarios:
        return {}
    run(["cargo", "build", "--release", "-p", "bote-node", "-p", "botectl", "--bins"])
    botectl = str(target_dir() / "release" / "botectl")
    figures = {}
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            sys.exit(f"bench scenario {scenario!r} is not in SCENARIOS of {__file__}")
        ratios, cpus, dropped = [], [], 0
        for _ in range(runs):
            out = run([botectl, "bench", "--compare", "--spawn", "--json", *SCENARIOS[scenario]])
            report = json.loads(out)
            routed = report["runs"][-1]
            if routed["problems"]:
                sys.exit(f"bench {scenario}: {routed['problems']}")
            ratios.append(report["ratio"])
            if routed.get("router"):
                cpus.append(routed["router"]["cpu_us_per_message"])
            dropped += routed["dropped"]
        figures[f"bench:{scenario}:ratio"] = statistics.median(ratios)
        if cpus:
            figures[f"bench:{scenario}:cpu"] = statistics.median(cpus)
        figures[f"bench:{scenario}:dropped"] = dropped
    return figures


def verdict(row, now):
    if row.key.endswith(":dropped"):
        return "ok" if now <= row.baseline else "REGRESSION"
    if row.baseline == 0:
        return "ok"
    change = (now - row.baseline) / row.baseline
    worse = -change if row.higher_is_better else change
    if worse > row.tolerance:
        return "REGRESSION"
    if worse < -row.tolerance:
        return "better"
    return "ok"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["criterion", "bench"])
    parser.add_argument("--runs", type=int, default=3, help="paired bench runs per scenario (median)")
    parser.add_argument("--baseline", type=Path, default=BENCHMARKS)
    parser.add_argument("--fail-on-regression", action="store_true")
    args = parser.parse_args()

    rows = parse_baseline(args.baseline)
    if args.only:
        rows = [r for r in rows if r.key.startswith(args.only + ":")]
    figures = {}
    figures.update(criterion_figures(rows))
    figures.update(bench_figures(rows, args.runs))

    regressions = 0
    print(f"{'figure':58} {'baseline':>10} {'now':>10} {'change':>8}  verdict")
    for row in rows:
        now = figures.get(row.key)
        if now is None:
            print(f"{row.key:58} {row.baseline:>10g} {'-':>10} {'':>8}  not measured")
            continue
        change = (now - row.baseline) / row.baseline * 100 if row.baseline else 0.0
        v = verdict(row, now)
        regressions += v == "REGRESSION"
        shown = f"{now:,.0f}" if now >= 1000 else f"{now:.4g}"
        print(f"{row.key:58} {row.baseline:>10g} {shown:>10} {change:>+7.1f}%  {v}"
              f"  ({row.unit}, tolerance {row.tolerance:.0%}, {args.baseline.name}:{row.line})")
    print(f"\n{regressions} regression(s) beyond tolerance. The machine is noisy: re-run "
          "before believing one, and compare ratios, which carry their own baseline.")
    return 1 if regressions and args.fail_on_regression else 0


if __name__ == "__main__":
    sys.exit(main())
