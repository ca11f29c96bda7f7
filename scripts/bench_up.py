#!/usr/bin/env python3
"""Time `botectl up` to a converged mesh (every router's /api/v1/topology
lists every router) and the mesh's total RSS, for the BENCHMARKS.md
"botectl up" section. Each case runs RUNS times in a fresh run directory
and is brought down after; the baseline is one lone router (no mesh).

    scripts/bench_up.py [--botectl target/release/botectl] [--runs 3]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    ("baseline: 1 router", ["--generate", "full", "1"]),
    ("examples/line3.toml (3 routers)", [os.path.join(ROOT, "examples", "line3.toml")]),
    ("examples/ring10.toml (10 routers, ring + 3 chords)", [os.path.join(ROOT, "examples", "ring10.toml")]),
    ("--generate random:3 100 (100 routers, 150 links)", ["--generate", "random:3", "100"]),
]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--botectl", default=os.path.join(ROOT, "target", "release", "botectl"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("BOTED", os.path.join(os.path.dirname(args.botectl), "boted"))
    for name, up_args in CASES:
        readies, walls, rsss = [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
                run_dir = os.path.join(tmp, "run")
                start = time.monotonic()
                r = subprocess.run([args.botectl, "up", *up_args, "--run-dir", run_dir, "-q", "--timeout", "120"],
                                   capture_output=True, text=True, env=env, timeout=180)
                wall = time.monotonic() - start
                try:
                    if r.returncode != 0:
                        print(f"{name}: up failed: {r.stderr}", file=sys.stderr)
                        continue
                    ready = float(re.search(r"ready in ([0-9.]+) s", r.stdout).group(1))
                    with open(os.path.join(run_dir, "mesh.json")) as f:
                        pids = [x["pid"] for x in json.load(f)["routers"]]
                    rsss.append(sum(rss_kib(p) for p in pids) / 1024)
                    readies.append(ready)
                    walls.append(wall)
                finally:
                    subprocess.run([args.botectl, "down", run_dir], capture_output=True, env=env, timeout=60)
        if readies:
            print(f"{name}: ready {min(readies):.2f}/{sorted(readies)[len(readies)//2]:.2f}/{max(readies):.2f} s "
                  f"(min/median/max of {len(readies)}), command wall median {sorted(walls)[len(walls)//2]:.2f} s, "
                  f"total RSS median {sorted(rsss)[len(rsss)//2]:.1f} MiB")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
