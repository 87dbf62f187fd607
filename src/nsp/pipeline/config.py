"""The pipeline config: YAML checked against a JSON schema, with defaults filled in.

The schema (``nsp/pipeline/data/config.schema.yaml``, also ``workflow/schemas/``)
documents every key; ``config/README.md`` explains them. Errors name the
offending key, e.g. ``config key models.cnn.epochs: -1 is less than the
minimum of 0``.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path

import jsonschema
import yaml

from nsp import external
from nsp.pipeline import datasets
from nsp.storage.files import atomic_output
from nsp.transforms import TRANSFORMS
from nsp.zoo import ARCHITECTURES

SCHEMA_PATH = Path(str(files("nsp.pipeline") / "data" / "config.schema.yaml"))


class ConfigError(ValueError):
    """A config that does not follow the schema or refers to something undefined."""


def schema() -> dict:
    """The config schema; the transforms and their options come from the transform registry."""
    out = yaml.safe_load(SCHEMA_PATH.read_text())
    out["properties"]["transforms"]["properties"] = {
        name: {**cls.options_schema, "description": cls.options_schema.get("description", cls.description)}
        for name, cls in TRANSFORMS.items()}
    out["properties"]["models"]["additionalProperties"]["properties"]["transforms"]["items"] = {"enum": list(TRANSFORMS)}
    return out


def _with_defaults(cls):
    """``cls`` extended to fill in defaults while it validates.

    A missing property gets a copy of its default *before* the object's
    properties are checked, so the check descends into the new entry and fills
    its own nested defaults in the same pass (e.g. ``visualize: {}`` gets
    ``label``, ``scale`` and ``cmap``); entries of ``additionalProperties``
    maps (each model, each dataset) are filled when the check reaches them.
    """
    validate_properties = cls.VALIDATORS["properties"]

    def fill(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": fill})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate(config: dict) -> dict:
    """A copy of ``config`` with defaults filled in; ConfigError naming the first bad key."""
    config = copy.deepcopy(config or {})
    transforms = config.get("transforms") if isinstance(config, dict) else None
    for name in transforms if isinstance(transforms, dict) else ():
        if name not in TRANSFORMS:
            raise ConfigError(f"config key transforms.{name}: unknown transform; accepted: {', '.join(TRANSFORMS)}")
    # one pass: checks the config and fills every default, nested ones included
    errors = sorted(_Validator(schema()).iter_errors(config), key=lambda e: (list(map(str, e.path)), e.message))
    if errors:
        error = errors[0]
        raise ConfigError(f"config key {_key(error.path)}: {error.message}")
    for name, model in config["models"].items():
        if model["dataset"] not in config["datasets"]:
            raise ConfigError(f"config key models.{name}.dataset: {model['dataset']!r} is not a dataset of "
                              f"this config (defined: {', '.join(config['datasets'])})")
        arch = model.get("architecture", name)
        model["architecture"] = arch
        if arch not in ARCHITECTURES and ":" not in arch:
            raise ConfigError(f"config key models.{name}.architecture: {arch!r} is neither a zoo architecture "
                              f"({', '.join(ARCHITECTURES)}), timm:<name>, torchvision:<name> nor module:Class")
        if external.is_named(arch):
            if not external.NAME.match(arch.partition(":")[2]):
                raise ConfigError(f"config key models.{name}.architecture: {arch!r}: a model name is letters, "
                                  f"digits, '_', '.' and '-'")
            if model["input_shape"] is None:
                raise ConfigError(f"config key models.{name}.input_shape: a named model ({arch}) needs the shape "
                                  f"of one sample (batch axis excluded), e.g. [3, 32, 32]")
        elif ":" in arch and (model["weights"] is None or model["input_shape"] is None):
            raise ConfigError(f"config key models.{name}: a user model ({arch}) needs weights and input_shape")
        for transform in model["transforms"] or []:
            if transform not in config["transforms"]:
                raise ConfigError(f"config key models.{name}.transforms: {transform!r} is not configured under "
                                  f"transforms (configured: {', '.join(config['transforms'])})")
    return config


def load(path) -> dict:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return validate(raw)


def dump(config: dict, path) -> None:
    """Write a (validated) config as YAML with sorted keys, atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(config, sort_keys=True))


def transforms_of(config: dict) -> dict:
    """The transforms each model runs, in the order of the config's transforms section."""
    return {model: [t for t in config["transforms"] if spec["transforms"] is None or t in spec["transforms"]]
            for model, spec in config["models"].items()}


def shard_counts(config: dict) -> dict:
    """Number of shards of each model's dataset."""
    sizes = {name: datasets.count(spec, name) for name, spec in config["datasets"].items()}
    return {model: len(datasets.shard_bounds(sizes[spec["dataset"]], config["shard_size"]))
            for model, spec in config["models"].items()}
