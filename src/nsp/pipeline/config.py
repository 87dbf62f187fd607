"""The pipeline config: YAML checked against a JSON schema, with defaults filled in.

The schema (``nsp/pipeline/data/config.schema.yaml``, also ``workflow/schemas/``)
documents every key; ``config/README.md`` explains them. Errors name the
offending key, e.g. ``config key models.cnn.epochs: -1 is less than the
minimum of 0``.
"""

from __future__ import annotations

import copy
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import yaml

from nsp import external, plugins
from nsp.pipeline import lock
from nsp.storage.files import atomic_output
from nsp.zoo import INPUT_SHAPES
from nsp.errors import ConfigError

SCHEMA_PATH = Path(str(files("nsp.pipeline") / "data" / "config.schema.yaml"))


def schema(transforms: bool = True) -> dict:
    """The config schema; the figure kinds come from the figure registry, the transforms and their options
    from the transform registry (not filled in with ``transforms=False``, for parts of a config without
    transforms)."""
    from nsp.pipeline.figures import FIGURES
    out = yaml.safe_load(SCHEMA_PATH.read_text())
    out["properties"]["figures"]["items"] = {"enum": list(FIGURES)}
    if not transforms:
        return out
    from nsp.transforms import TRANSFORMS
    out["properties"]["transforms"]["properties"] = {
        name: {**cls.options_schema, "description": cls.options_schema.get("description", cls.description)}
        for name, cls in TRANSFORMS.items()}
    out["properties"]["models"]["additionalProperties"]["properties"]["transforms"]["items"] = {"enum": sorted(TRANSFORMS)}
    out["properties"]["causes"]["properties"]["transforms"]["items"] = {"enum": sorted(TRANSFORMS)}
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


#: names of models and datasets: they become parts of file paths and of the jobs' command lines
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
#: the longest name: a figure's file name joins a kind, a model and a series (a file name holds 255 bytes)
MAX_NAME = 64
#: a name ending in one text repeated this often: Snakemake takes such a path part for a rule that would
#: feed itself forever (its PeriodicWildcardError), so the name could never be planned
PERIODIC = re.compile(r"(.+?)\1{19,}$")
#: model names that would be folders of other outputs (results/figures/paper holds the paper figures)
RESERVED = ("paper",)


def _check_names(config: dict) -> None:
    """Model and dataset names safe in paths and commands; a results folder that is neither empty nor a
    file-system root."""
    for section in ("models", "datasets"):
        entries = config.get(section)
        for name in entries if isinstance(entries, dict) else ():
            if not isinstance(name, str) or not NAME.match(name):
                raise ConfigError(f"config key {section}: the name {name!r} is not accepted: a name is letters, "
                                  f"digits, '_' and '-', with single dots inside (it becomes part of file paths "
                                  f"and commands)")
            if len(name) > MAX_NAME:
                raise ConfigError(f"config key {section}: the name {name[:20]}... ({len(name)} characters) is "
                                  f"too long: names have at most {MAX_NAME} characters (they become parts of "
                                  f"file names)")
            periodic = PERIODIC.search(name)
            if periodic:
                raise ConfigError(f"config key {section}: the name {name!r} is not accepted: it ends in "
                                  f"{periodic.group(1)!r} repeated {len(periodic.group(0)) // len(periodic.group(1))} "
                                  f"times, which Snakemake refuses as a path part (fewer than 20 repeats are "
                                  f"accepted)")
            if section == "models" and name in RESERVED:
                raise ConfigError(f"config key models: the name {name!r} is reserved (results/figures/{name} "
                                  f"holds the paper figures); choose another model name")
    results = config.get("results", "results")
    if isinstance(results, str) and (not results.strip() or Path(results).resolve() == Path(results).resolve().parent):
        raise ConfigError(f"config key results: {results!r} is not accepted: the results folder must be named and "
                          f"must not be a file-system root")


def validate(config: dict) -> dict:
    """A copy of ``config`` with defaults filled in; ConfigError naming the first bad key."""
    config = copy.deepcopy(config or {})
    if isinstance(config, dict):
        plugins.load(config.get("plugins"))       # first: they may add transforms, figure kinds, sources
    if isinstance(config, dict) and config.get(PART_KEY):
        return _validate_part(config)
    if isinstance(config, dict):
        _check_names(config)
    from nsp.transforms import TRANSFORMS
    transforms = config.get("transforms") if isinstance(config, dict) else None
    for name in transforms if isinstance(transforms, dict) else ():
        if name not in TRANSFORMS:
            raise ConfigError(f"config key transforms.{name}: unknown transform; accepted: {', '.join(sorted(TRANSFORMS))}")
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
        if arch not in INPUT_SHAPES and ":" not in arch:
            raise ConfigError(f"config key models.{name}.architecture: {arch!r} is neither a zoo architecture "
                              f"({', '.join(INPUT_SHAPES)}), timm:<name>, torchvision:<name> nor module:Class")
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
        runs = transforms_of(config)[name]
        if model["layers"] is not None and runs:
            raise ConfigError(f"config key models.{name}.layers: only these layers' activations are stored, but "
                              f"the model runs the transforms {', '.join(runs)}, which need every node; set "
                              f"models.{name}.transforms: [] (statistics and pages of the stored layers only), "
                              f"or remove models.{name}.layers to store every layer")
    return config


class _StrictLoader(yaml.SafeLoader):
    """YAML without aliases (a few lines of them can expand to gigabytes) and without repeated keys (the
    later one would silently win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted "
                              f"in a config; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path):
    """The YAML of a config file, read strictly (no aliases, no repeated keys); ConfigError naming the file."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None


def load(path, stage: str | None = None) -> dict:
    """Read and validate a YAML config file: a whole config, or the part of ``stage`` (:func:`part`)."""
    path = Path(path)
    config = validate(read_yaml(path))
    owner = str(config.get(PART_KEY, "")).partition("/")[0]
    if stage is not None and owner and owner != stage:
        raise ConfigError(f"config file {path} is the part of stage {owner}; stage {stage} reads the whole "
                          f"config or its own part")
    return config


def dump_text(config: dict) -> str:
    """A (validated) config as YAML with sorted keys."""
    return yaml.safe_dump(config, sort_keys=True)


def dump(config: dict, path) -> None:
    """Write a (validated) config as YAML with sorted keys, atomically."""
    write_text(dump_text(config), path)


# --- the part of a config each stage reads ---------------------------------------------------------------

#: marks a stage's part of a config (see :func:`part`)
PART_KEY = "part"

_NETWORK = ("architecture", "options", "input_shape", "dataset", "trace")
#: stage -> (top-level keys it reads, keys of its model's entry it reads); every stage loads the plugins
STAGE_KEYS = {
    "train": (("plugins", "seed", "datasets", "models"),
              ("architecture", "options", "input_shape", "dataset", "epochs", "batch_size", "learning_rate")),
    "extract-graph": (("plugins", "models"), _NETWORK),
    "collect-activations": (("plugins", "shard_size", "device", "datasets", "models"), (*_NETWORK, "layers")),
    "compute-transformer": (("plugins", "transforms"), ()),
    "transform": (("plugins", "device"), ()),
    "visualize": (("plugins", "visualize"), ()),
    "summarize": (("plugins", "summary"), ()),
    "causes": (("plugins", "seed", "causes"), ()),
    "figures": (("plugins",), ()),          # the plugins: they may add figure kinds
}
#: the stages whose part is one model's, and the one whose part is one transform's
MODEL_STAGES = ("train", "extract-graph", "collect-activations")


def part_names(config: dict) -> list[str]:
    """The parts of a validated config, named ``<stage>`` or ``<stage>/<model or transform>``."""
    names = [f"{stage}/{model}" for stage in MODEL_STAGES for model in config["models"]]
    names += [f"compute-transformer/{t}" for t in config["transforms"]]
    return names + [stage for stage in STAGE_KEYS if stage not in MODEL_STAGES and stage != "compute-transformer"]


def part(config: dict, name: str) -> dict:
    """What the stage of part ``name`` (:func:`part_names`) reads of a validated config, and nothing else.

    A stage run on its part gives what it gives on the whole config; the pipeline writes each part to
    its own file, so a job reruns when, and only when, what it reads has changed.
    """
    stage, _, subject = name.partition("/")
    if stage not in STAGE_KEYS:
        raise ConfigError(f"no config part {name!r}: a part is one of {', '.join(STAGE_KEYS)} (with /<model> "
                          f"for {', '.join(MODEL_STAGES)}, /<transform> for compute-transformer)")
    top, model_keys = STAGE_KEYS[stage]
    out = {PART_KEY: name, **{key: config[key] for key in top if key not in ("datasets", "models", "transforms")}}
    if stage in MODEL_STAGES:
        spec = config["models"][subject]
        out["models"] = {subject: {key: spec[key] for key in model_keys}}
        if "datasets" in top:
            out["datasets"] = {spec["dataset"]: config["datasets"][spec["dataset"]]}
    if stage == "compute-transformer":
        out["transforms"] = {subject: config["transforms"][subject]}
    return copy.deepcopy(out)


def part_text(config: dict, name: str) -> str:
    """:func:`part` as YAML (sorted keys): equal texts mean equal parts."""
    return dump_text(part(config, name))


def sync_parts(config: dict, results, hold: bool = True) -> list[str]:
    """Write each part of a validated config to ``<results>/config/<part>.yaml`` and the whole config to
    ``<results>/config.resolved.yaml``, each only where the file is missing or its text differs; returns the
    paths written.

    The workflow calls this when it reads the config. A part whose text changed is then newer than the
    outputs of the jobs that read it, so exactly those jobs rerun, whatever Snakemake's records in
    ``.snakemake/`` say or whether they exist (another clone, a cleaned cache). ``hold``: take the results
    folder's lock (:mod:`nsp.pipeline.lock`) for the rest of this process, as the workflow's main process
    does, and refuse to rewrite the parts that another holder of the lock runs with (jobs that parse the
    workflow again pass False: they run for the holder).
    """
    results = Path(results)
    wanted = {results / "config.resolved.yaml": dump_text(config)}
    wanted.update({results / "config" / f"{name}.yaml": part_text(config, name) for name in part_names(config)})
    changed = {path: text for path, text in wanted.items() if not _holds(path, text)}
    if hold and not lock.claim(results) and changed:
        raise ConfigError(f"results folder {results} is in use by another nsp workflow run with another config "
                          f"({next(iter(changed))} differs); wait for that run to end, or set config key "
                          f"results to another folder")
    for path, text in changed.items():
        write_text(text, path)
    return [str(path) for path in changed]


def _holds(path: Path, text: str) -> bool:
    """Whether the file at ``path`` reads as ``text``."""
    try:
        return path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


def write_text(text: str, path, log=None) -> None:
    """Write ``text`` to ``path`` atomically (and say so in ``log``, a file, when given)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)
    if log is not None:
        Path(log).write_text(f"wrote {path}\n")


def _validate_part(config: dict) -> dict:
    """A stage's part checked against the schema; it was written with every default, so none is filled in
    and no key is added (a key the stage reads is missing: ConfigError)."""
    name = config[PART_KEY]
    stage = str(name).partition("/")[0]
    if stage not in STAGE_KEYS:
        raise ConfigError(f"config key {PART_KEY}: {name!r} is not a stage's part ({', '.join(STAGE_KEYS)})")
    top, model_keys = STAGE_KEYS[stage]
    config.setdefault("plugins", [])          # the one key a part may leave out (written by hand: none)
    full = schema(transforms="transforms" in config)
    for key in set(config) - {PART_KEY}:
        if key not in top:
            raise ConfigError(f"config key {key}: not read by stage {stage} (its part has {', '.join(top)})")
    for key in top:
        if key not in config:
            raise ConfigError(f"config key {key}: missing from the part of stage {stage}")
    for model, spec in (config.get("models") or {}).items():
        missing = [k for k in model_keys if not isinstance(spec, dict) or k not in spec]
        if missing:
            raise ConfigError(f"config key models.{model}: {', '.join(missing)} missing from the part of "
                              f"stage {stage}")
    part_schema = {**full, "required": [], "properties": {**full["properties"], PART_KEY: {"type": "string"}}}
    errors = sorted(jsonschema.Draft202012Validator(part_schema).iter_errors(config),
                    key=lambda e: (list(map(str, e.path)), e.message))
    if errors:
        raise ConfigError(f"config key {_key(errors[0].path)}: {errors[0].message}")
    return config


def causes_of(config: dict) -> dict:
    """The transforms whose causes each model's analysis takes (``causes.transforms`` among those it runs)."""
    wanted = config["causes"]["transforms"]
    return {model: [t for t in runs if t in wanted] for model, runs in transforms_of(config).items()}


def transforms_of(config: dict) -> dict:
    """The transforms each model runs, in the order of the config's transforms section."""
    return {model: [t for t in config["transforms"] if spec["transforms"] is None or t in spec["transforms"]]
            for model, spec in config["models"].items()}


def series(transforms) -> list[str]:
    """The series a model's statistics cover, in their fixed order: activations, then its transforms in
    the order of the registry (the built-in ones first), then any other by name."""
    from nsp.transforms import TRANSFORMS
    return ["activations", *[t for t in TRANSFORMS if t in transforms],
            *sorted(t for t in set(transforms) - set(TRANSFORMS) - {"activations"})]


def figure_names(wanted, models: dict) -> list[str]:
    """The names of the paper figures of the figure kinds ``wanted`` for ``models`` (model -> its series),
    kind after kind in the order of the figure registry (:mod:`nsp.pipeline.figures`): ``compaction``,
    ``energy_<model>``, ``sparsity_<model>``, ``class_means_<model>_<series>``, then the plugins' kinds.
    Each is written as ``<name>.pdf`` and ``<name>.png``; two figures of one name are a ConfigError."""
    from nsp.pipeline.figures import FIGURES
    names, kind_of = [], {}
    for kind in FIGURES.values():
        for name in kind.figure_names(models) if kind.name in wanted else ():
            if name in kind_of:
                raise ConfigError(f"config key figures: the figure {name} would be drawn twice, by the figure kinds "
                                  f"{kind_of[name]} and {kind.name}; leave one of them out or rename a model")
            kind_of[name] = kind.name
            names.append(name)
    return names


def shard_counts(config: dict) -> dict:
    """Number of shards of each model's dataset."""
    from nsp.pipeline import datasets
    sizes = {name: datasets.count(spec, name) for name, spec in config["datasets"].items()}
    return {model: len(datasets.shard_bounds(sizes[spec["dataset"]], config["shard_size"]))
            for model, spec in config["models"].items()}
