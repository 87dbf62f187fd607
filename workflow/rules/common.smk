# Names and small input functions shared by the rules (no rules here).
import os
import re
import shlex
import sys
import sysconfig

# Jobs run the nsp of the Python that runs Snakemake: its scripts folder (a venv's bin) comes first on the
# PATH that jobs inherit, so `.venv/bin/snakemake` works without the venv on PATH (cluster jobs too: sbatch
# passes the environment on, and each job's Snakemake sets it again).
os.environ.update(PATH=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))

R = config["results"]
CONFIG = f"{R}/config.resolved.yaml"                      # the whole experiment, for the record
ENV = "../../environment.yml"
MODELS = list(config["models"])
TRANSFORMS = list(config["transforms"])
TRANSFORMS_OF = nsp_config.transforms_of(config)           # model -> the transforms it runs
CAUSES_OF = nsp_config.causes_of(config)                   # model -> the transforms whose causes it analyses
SERIES_OF = {m: nsp_config.series(TRANSFORMS_OF[m]) for m in MODELS}   # activations, then its transforms
SHARDS = nsp_config.shard_counts(config)
DATASET = {m: spec["dataset"] for m, spec in config["models"].items()}
PAPER = nsp_config.figure_names(config["figures"], SERIES_OF)   # the paper figures, by file name


def part(name):
    """The file of a stage's part of the config: what its jobs read, and all that reruns them (written by
    rules/config.smk when the workflow reads the config)."""
    return f"{R}/config/{name}.yaml"


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    dataset="|".join(map(re.escape, config["datasets"])),
    transform="|".join(map(re.escape, TRANSFORMS)),
    series="|".join(map(re.escape, ["activations", *TRANSFORMS])),
    shard=r"\d+",


def weights(wildcards):
    """A user model's weights file, or the weights the train rule writes."""
    return config["models"][wildcards.model]["weights"] or f"{R}/models/{wildcards.model}/weights.npz"


def shards(pattern, model, **extra):
    """Every shard file of a model's dataset."""
    return expand(pattern, model=model, dataset=DATASET[model], shard=range(SHARDS[model]), **extra)


def series_shards(wildcards):
    """The shards of one series of a model: its activations, or one transform's spectra."""
    if wildcards.series == "activations":
        return shards(f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5", wildcards.model)
    return shards(f"{R}/spectra/{{model}}/{{dataset}}/{wildcards.series}/shard_{{shard}}.h5", wildcards.model)


def training_metrics(wildcards):
    return [] if config["models"][wildcards.model]["weights"] else [f"{R}/models/{wildcards.model}/training.json"]


def metrics_option(wildcards, input):
    return f"--metrics {shlex.quote(input.metrics[0])}" if input.metrics else ""


def causes_records(wildcards):
    """The records of nsp causes of a model, one per transform whose causes it analyses."""
    return [f"{R}/summary/{wildcards.model}/{wildcards.dataset}/causes_{t}.json" for t in CAUSES_OF[wildcards.model]]


def causes_option(wildcards, input):
    return " ".join(["--causes", *map(shlex.quote, input.causes)]) if input.causes else ""
