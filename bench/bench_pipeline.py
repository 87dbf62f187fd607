"""Benchmark: the pipeline as a researcher runs it, with --cores 2 (by default).

In one run, in temporary folders:

1. the default pipeline end to end on a fresh results folder: wall time, and per rule the number of jobs
   and their summed and longest times (Snakemake's benchmark files);
2. a no-op rerun (nothing to do): wall time of ``snakemake`` itself;
3. the jobs a figure option (``visualize.cmap``) reruns, counted by a dry run, then run and timed;
4. the start-up CPU time of the jobs of each stage: a one-model experiment on two digits (``epochs: 0``), where
   each job's work is negligible; every job's command is run again alone and its CPU time (user + system,
   from ``wait4``) is the cost of starting it.

The reference in the same run: the serial sum of the jobs' times against the wall time (the speed-up from
running jobs side by side).

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

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = {"results": "results", "shard_size": 500,
        "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625, "limit": 2}},
        "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 0}},
        "transforms": {"standard": {}, "laplacian": {"k": 8}, "sem": {}},
        "figures": ["compaction", "energy", "sparsity", "class_means"]}


def snakemake(folder: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    out = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
                          str(folder), *args], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start, out.stdout + out.stderr


def jobs_by_rule(text: str) -> dict:
    return {line.split()[0]: int(line.split()[1]) for line in text.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit() and line.split()[0] != "total"}


def benchmarks(results: Path) -> dict:
    """rule -> list of (seconds, cpu seconds) of its jobs."""
    per_rule = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        per_rule[rule].append((float(row["s"]), float(row["cpu_time"])))
    return per_rule


def workspace(config: dict | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="nsp-pipeline-"))
    (folder / "config").mkdir()
    if config is None:
        shutil.copy(REPO / "config" / "config.yaml", folder / "config" / "config.yaml")
    else:
        (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    cores = ("--cores", str(args.cores))

    folder = workspace(None)
    wall, _ = snakemake(folder, *cores, "--quiet")
    per_rule = benchmarks(folder / "results")
    total = sum(s for times in per_rule.values() for s, _ in times)
    print(f"1. default config, --cores {args.cores}, fresh results: {wall:.1f} s wall ({wall / 60:.2f} min; goal 2 min)")
    print(f"   {'rule':<22} {'jobs':>4} {'sum s':>8} {'max s':>7} {'cpu s':>7}")
    for rule, times in sorted(per_rule.items(), key=lambda item: -sum(s for s, _ in item[1])):
        print(f"   {rule:<22} {len(times):>4} {sum(s for s, _ in times):>8.1f} {max(s for s, _ in times):>7.1f} "
              f"{sum(c for _, c in times):>7.1f}")
    print(f"   benchmarked jobs: {total:.1f} s serial; serial / wall = {total / wall:.2f} (reference: 1 = no overlap)")

    noop, text = snakemake(folder, *cores)
    assert "Nothing to be done" in text, text[-2000:]
    print(f"2. no-op rerun: {noop:.1f} s wall (goal 5 s)")

    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    config["visualize"]["cmap"] = "magma"
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    _, text = snakemake(folder, *cores, "-n", "--quiet", "rules")
    planned = jobs_by_rule(text)
    rerun, _ = snakemake(folder, *cores, "--quiet")
    print(f"3. visualize.cmap changed: {sum(planned.values())} jobs rerun "
          f"({', '.join(f'{n} {rule}' for rule, n in sorted(planned.items()))}) in {rerun:.1f} s wall; "
          f"goal: only drawing jobs (+ config part, record, 'all')")

    tiny = workspace(TINY)
    snakemake(tiny, *cores, "--quiet")
    _, text = snakemake(tiny, "-n", "-p", "--forceall")
    commands = [line.split("Shell command: ", 1)[1] for line in text.splitlines() if "Shell command: nsp " in line]
    per_stage = defaultdict(list)
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:                 # each job alone, its inputs in place: user + system CPU time
        process = subprocess.Popen(["bash", "-c", command], cwd=tiny, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        if status:
            sys.exit(f"failed: {command}")
        per_stage[command.split()[1]].append(usage.ru_utime + usage.ru_stime)
    print("4. start-up CPU per job: each job of a one-model experiment on 2 digits (epochs 0), rerun alone "
          "(goal 0.7 s where no network runs)")
    network = {"train", "extract-graph", "collect-activations"}
    floor = subprocess.Popen([sys.executable, "-c", "import nsp.pipeline.cli"])
    usage = os.wait4(floor.pid, 0)[2]
    print(f"   {'(loading the CLI)':<22} {usage.ru_utime + usage.ru_stime:.2f} s: the floor of every job "
          f"(Python, NumPy, YAML, jsonschema)")
    for stage, cpu in sorted(per_stage.items()):
        cpu.sort()
        print(f"   {stage:<22} {len(cpu):>2} jobs, cpu s min {cpu[0]:.2f} median {cpu[len(cpu) // 2]:.2f} "
              f"max {cpu[-1]:.2f}{'  (runs the network)' if stage in network else ''}")
    print(f"   results in {folder} and {tiny}")


if __name__ == "__main__":
    main()
