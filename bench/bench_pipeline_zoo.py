"""Benchmark: the whole pipeline on the models users bring (timm and torchvision architectures).

One experiment, in a temporary folder, with ``--cores 2`` (by default) and ``--keep-going``: every model
below on the bundled photographs (32x32 tiles; ``--samples`` of them, default 16), trained for 0 epochs (random
weights), through every stage: graph, the standard and sem transforms (and the Laplacian one, ``k = 16``, on
the smaller CNNs), activations, spectra, pattern and spectrum pages, summaries, class means and the paper
figures. Printed per model and stage: the job's wall time and peak memory (Snakemake's benchmark files,
``max_rss``), the activations' MB per sample, and for a job that failed the last line of its log (a refusal
names its reason). The reference in the same run: the forward pass alone (collect-activations) against
every other stage of the same model.

    .venv/bin/python bench/bench_pipeline_zoo.py [--cores 2] [--samples 16] [--only resnet18,vit]

Needs the ``models`` extra. Goal on a 2-core machine: every stage completes or refuses at once with a clear
message; no stage above 4 GB; no drawing job above 30 s.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
VIT = {"img_size": 32, "patch_size": 8}
SWIN = {"img_size": 32, "patch_size": 4, "window_size": 4, "embed_dim": 24, "depths": [1, 1, 1],
        "num_heads": [1, 1, 1]}
#: name -> (architecture, options, families); input 3x32x32, 2 classes
MODELS = {
    "resnet18": ("timm:resnet18", {}, "CNN"),
    "regnetx": ("timm:regnetx_002", {}, "CNN"),
    "mobilenetv3": ("timm:mobilenetv3_small_050", {}, "MobileNet"),
    "efficientnet": ("timm:efficientnet_b0", {}, "MobileNet"),
    "densenet": ("timm:densenet121", {}, "DenseNet"),
    "convnext": ("timm:convnext_atto", {}, "ConvNeXt"),
    "vit": ("timm:vit_tiny_patch16_224", VIT, "ViT"),
    "deit": ("timm:deit_tiny_patch16_224", VIT, "ViT"),
    "swin": ("timm:swin_tiny_patch4_window7_224", SWIN, "Swin"),
    "mixer": ("timm:mixer_s16_224", {"img_size": 32}, "Mixer"),
    "resmlp": ("timm:resmlp_12_224", {"img_size": 32}, "Mixer"),
    "tv_resnet18": ("torchvision:resnet18", {}, "CNN"),
    "tv_mobilenet_v2": ("torchvision:mobilenet_v2", {}, "MobileNet"),
    "tv_shufflenet": ("torchvision:shufflenet_v2_x0_5", {}, "CNN"),
}
LAPLACIAN = {"regnetx", "mobilenetv3"}
STAGES = ["train", "extract_graph", "compute_transformer", "collect_activations", "transform", "visualize",
          "visualize_spectrum", "summarize", "class_means"]


def config(names: list, samples: int) -> dict:
    models = {}
    for name in names:
        architecture, options, _ = MODELS[name]
        models[name] = {"architecture": architecture, "options": dict(options, num_classes=2), "dataset": "photos",
                        "input_shape": [3, 32, 32], "trace": "ops", "epochs": 0,
                        "transforms": ["standard", "sem"] + (["laplacian"] if name in LAPLACIAN else [])}
    return {"results": "results", "shard_size": samples,
            "datasets": {"photos": {"source": "sklearn-photos", "limit": samples, "scale": 1 / 255}},
            "models": models, "transforms": {"standard": {}, "sem": {}, "laplacian": {"k": 16}},
            "figures": ["compaction", "energy", "sparsity", "class_means"]}


def model_of(relative: Path) -> str:
    """The model of a log or benchmark file, from its path under logs/ or benchmarks/: the folder after the
    rule's (<rule>/<model>/...), or the file's name (<rule>/<model>.tsv)."""
    return relative.parts[1] if len(relative.parts) > 2 else relative.stem


def benchmarks(results: Path) -> dict:
    """(rule, model) -> list of (seconds, max_rss MB)."""
    out = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "NA", "-") else float("nan")
        model = model_of(tsv.relative_to(results / "benchmarks"))
        out[rule, model].append((float(row["s"]), rss))
    return out


def failures(results: Path, done: dict) -> dict:
    """(rule, model) -> the last line of the log of a job that wrote no benchmark (it failed)."""
    out = {}
    for log in sorted((results / "logs").rglob("*.log")):
        rule = log.relative_to(results / "logs").parts[0]
        model = model_of(log.relative_to(results / "logs"))
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if model and rule in STAGES and (rule, model) not in done:
            out[rule, model] = lines[-1][:300] if lines else "(empty log)"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--only", default="", help="comma-separated model names of this script")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    folder = Path(tempfile.mkdtemp(prefix="nsp-pipeline-zoo-"))
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config(names, args.samples)))
    start = time.perf_counter()
    run = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
                          str(folder), "--cores", str(args.cores), "--keep-going", "--quiet"],
                         capture_output=True, text=True, env={**os.environ, "NSP_CONFIG": "config/config.yaml"})
    wall = time.perf_counter() - start
    results = folder / "results"
    times = benchmarks(results)
    failed = failures(results, times)
    print(f"{len(names)} models, {args.samples} samples each, --cores {args.cores}: {wall / 60:.1f} min wall, "
          f"snakemake exit {run.returncode}")
    print(f"{'model':<16}{'family':<10}" + "".join(f"{s[:13]:>15}" for s in STAGES) + f"{'MB/sample':>11}"
          f"{'rest/fwd':>9}")
    worst_rss, worst_draw = 0.0, 0.0
    for name in names:
        cells = []
        for stage in STAGES:
            jobs = times.get((stage, name))
            if jobs:
                seconds, rss = sum(s for s, _ in jobs), max(r for _, r in jobs)
                cells.append(f"{seconds:>7.1f}s{rss / 1024:>5.1f}G")
                worst_rss = max(worst_rss, rss)
                if stage.startswith("visualize"):
                    worst_draw = max(worst_draw, max(s for s, _ in jobs))
            else:
                cells.append(f"{'FAIL' if (stage, name) in failed else '-':>15}")
        shards = list((results / "activations" / name).rglob("*.h5"))
        mb = sum(p.stat().st_size for p in shards) / 2**20 / args.samples if shards else float("nan")
        forward = sum(s for s, _ in times.get(("collect_activations", name), []))
        rest = sum(s for stage in STAGES if stage != "collect_activations" for s, _ in times.get((stage, name), []))
        ratio = f"{rest / forward:>9.1f}" if forward else f"{'-':>9}"
        print(f"{name:<16}{MODELS[name][2]:<10}" + "".join(f"{c:>15}" for c in cells) + f"{mb:>11.2f}" + ratio)
    print(f"largest peak memory of a job: {worst_rss / 1024:.2f} GB (goal <= 4); slowest drawing job: "
          f"{worst_draw:.1f} s (goal <= 30)")
    for (rule, model), line in sorted(failed.items()):
        print(f"  {model} {rule}: {line}")
    print(f"results in {results}")


if __name__ == "__main__":
    main()
