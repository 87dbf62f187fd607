"""Honest resources (issue 24 item 3): each job's memory estimated from its input files' metadata, checked
against the peak RSS of the stage run as a subprocess: never below it, and not absurdly above."""

import subprocess
import sys

import pytest
import yaml

from nsp import storage
from nsp.pipeline import cli, resources

CONFIG = {
    "shard_size": 64,
    "datasets": {"photos": {"source": "sklearn-photos", "scale": 0.00392156862745098, "limit": 64},
                 "digits": {"source": "sklearn-digits", "scale": 0.0625, "limit": 64}},
    "models": {"vgg": {"architecture": "vgg_cifar", "dataset": "photos", "options": {"width": 8}, "trace": "ops"},
               "res": {"architecture": "residual_cnn", "dataset": "digits", "trace": "ops"}},
    "transforms": {"standard": {}, "sem": {}, "laplacian": {"k": 16}},
}


#: runs a command and prints its peak RSS: a small process in between, because a child started from this
#: one (fork or vfork, then exec) counts this process's resident memory in its own peak
MEASURE = ("import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:]); "
           "_, status, usage = os.wait4(child.pid, 0); print(usage.ru_maxrss); "
           "sys.exit(os.waitstatus_to_exitcode(status))")


def peak_mb(*argv) -> float:
    """Run ``nsp <argv>`` in a fresh interpreter; its peak resident memory in MB (2^20 bytes)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "nsp.pipeline.cli", *argv, "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1]) / 1024           # kilobytes on Linux


def check(estimate: int, measured: float, what: str, table: list) -> None:
    table.append(f"{what:<34} estimate {estimate:>6} MB, measured {measured:7.1f} MB")
    assert estimate >= measured, f"{what}: estimate {estimate} MB below the measured {measured:.0f} MB"
    assert estimate < 20 * measured + 500, f"{what}: estimate {estimate} MB, measured {measured:.0f} MB"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resources")
    cfg = folder / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for model in CONFIG["models"]:                      # the graphs: built in this process (not measured)
        assert cli.main(["extract-graph", "--config", str(cfg), "--model", model,
                         "--out", str(folder / f"{model}.graph.h5"), "--quiet"]) == 0
    return folder, cfg


def test_graph_metadata_gives_the_graph_counts(work):
    folder, _ = work
    for model in CONFIG["models"]:
        size, core = resources.GraphSize(folder / f"{model}.graph.h5"), storage.read_graph(folder / f"{model}.graph.h5")
        assert (size.nodes, size.edges, size.input_nodes) == (core.n_nodes, core.n_edges, core.sizes[0])
        assert not size.coo and size.incl and size.stored > 0


def test_missing_inputs_give_the_floor_and_a_retry_asks_for_more(work, tmp_path):
    folder, _ = work
    missing = str(tmp_path / "not-yet.h5")               # a dry run plans jobs before their inputs exist
    assert resources.collect_activations_mb(missing, 500, 10000) == 600
    assert resources.compute_transformer_mb(missing, "laplacian", {"k": 16}) == 300
    assert resources.transform_mb(missing, missing) == 300
    assert resources.summarize_mb([missing], [missing]) == resources.class_means_mb([missing]) == 500
    assert resources.collect_activations_runtime(missing, 500) == 30 and resources.transform_runtime(missing) == 30
    graph = folder / "vgg.graph.h5"
    one, two = (resources.collect_activations_mb(graph, 64, 64, attempt) for attempt in (1, 2))
    assert 2 * one - 100 <= two <= 2 * one
    assert resources.collect_activations_runtime(graph, 10 ** 6) > 30          # a huge shard gets more time
    assert resources.compute_transformer_mb(graph, "standard", {"method": "explicit"}) > \
        resources.compute_transformer_mb(graph, "standard", {})                 # the closure, not its factors


def test_estimates_cover_the_measured_peak_memory_of_each_stage(work):
    folder, cfg = work
    c, table = str(cfg), []
    for model, transforms in (("vgg", ("standard", "sem")), ("res", ("laplacian",))):
        graph, acts = folder / f"{model}.graph.h5", folder / f"{model}.act.h5"
        measured = peak_mb("collect-activations", "--config", c, "--model", model, "--shard", "0", "--out", str(acts))
        check(resources.collect_activations_mb(graph, 64, 64), measured, f"collect-activations {model}", table)
        spectra = []
        for transform in transforms:
            fitted, out = folder / f"{model}.{transform}.h5", folder / f"{model}.{transform}.spectra.h5"
            measured = peak_mb("compute-transformer", "--config", c, "--graph", str(graph), "--transform", transform,
                               "--out", str(fitted))
            check(resources.compute_transformer_mb(graph, transform, CONFIG["transforms"][transform]), measured,
                  f"compute-transformer {model} {transform}", table)
            measured = peak_mb("transform", "--config", c, "--activations", str(acts), "--transformer", str(fitted),
                               "--out", str(out))
            check(resources.transform_mb(acts, fitted), measured, f"transform {model} {transform}", table)
            spectra.append(str(out))
        measured = peak_mb("summarize", "--config", c, "--model", model, "--activations", str(acts),
                           "--spectra", *spectra, "--out", str(folder / f"{model}.json"))
        check(resources.summarize_mb([acts], spectra), measured, f"summarize {model}", table)
        measured = peak_mb("class-means", "--signals", spectra[0], "--out", str(folder / f"{model}.means.h5"))
        check(resources.class_means_mb(spectra), measured, f"class-means {model}", table)
    print("\n" + "\n".join(table))
