# Names and small input functions shared by the rules (no rules here).
import shlex

R = config["results"]
CONFIG = f"{R}/config.resolved.yaml"
ENV = "../../environment.yml"
MODELS = list(config["models"])
TRANSFORMS = list(config["transforms"])
TRANSFORMS_OF = nsp_config.transforms_of(config)           # model -> the transforms it runs
SHARDS = nsp_config.shard_counts(config)
DATASET = {m: spec["dataset"] for m, spec in config["models"].items()}


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(config["datasets"]),
    transform="|".join(TRANSFORMS),
    shard=r"\d+",


def weights(wildcards):
    """A user model's weights file, or the weights the train rule writes."""
    return config["models"][wildcards.model]["weights"] or f"{R}/models/{wildcards.model}/weights.npz"


def shards(pattern, model, **extra):
    """Every shard file of a model's dataset."""
    return expand(pattern, model=model, dataset=DATASET[model], shard=range(SHARDS[model]), **extra)


def training_metrics(wildcards):
    return [] if config["models"][wildcards.model]["weights"] else [f"{R}/models/{wildcards.model}/training.json"]


def metrics_option(wildcards, input):
    return f"--metrics {shlex.quote(input.metrics[0])}" if input.metrics else ""
