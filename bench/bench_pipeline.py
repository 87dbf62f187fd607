"""Benchmark: the default pipeline end to end with --cores 2 on a fresh results folder.

Copies config/config.yaml into a temporary folder, runs Snakemake there, and
prints the wall time, then per rule the number of jobs and their summed and
longest times from the benchmark files. The serial sum against the wall time
is the speed-up that sharding gives in the same run.

    .venv/bin/python bench/bench_pipeline.py [--cores 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    snakemake = Path(sys.executable).with_name("snakemake")
    folder = Path(tempfile.mkdtemp(prefix="nsp-pipeline-"))
    (folder / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", folder / "config" / "config.yaml")
    env = {**os.environ, "PATH": f"{snakemake.parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run([str(snakemake), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(folder),
                    "--cores", str(args.cores), "--quiet"], check=True, env=env)
    wall = time.perf_counter() - start
    per_rule = defaultdict(list)
    for tsv in sorted((folder / "results" / "benchmarks").rglob("*.tsv")):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        per_rule[tsv.parent.name].append(float(row["s"]))
    print(f"default config, --cores {args.cores}, fresh results: {wall:.1f} s wall ({wall / 60:.1f} min)")
    print(f"  {'rule':<22} {'jobs':>4} {'sum s':>8} {'max s':>7}")
    total = 0.0
    for rule, times in sorted(per_rule.items(), key=lambda item: -sum(item[1])):
        total += sum(times)
        print(f"  {rule:<22} {len(times):>4} {sum(times):>8.1f} {max(times):>7.1f}")
    print(f"  benchmarked jobs: {total:.1f} s serial; wall / serial = {wall / total:.2f}")
    print(f"  results in {folder}")


if __name__ == "__main__":
    main()
