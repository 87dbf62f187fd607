"""The Snakemake pipeline end to end on a tiny config, in temporary copies of the working folder."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import nsp
from nsp import storage, zoo
from nsp.pipeline import config as nsp_config, datasets
from nsp.tracing import record

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = {
    "results": "results",
    "shard_size": 25,
    "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625, "limit": 60},
                 "photos": {"source": "sklearn-photos", "scale": 0.004, "limit": 30}},
    "models": {
        "mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1},
        "res": {"architecture": "residual_cnn", "dataset": "digits", "trace": "ops", "epochs": 1},
        "vgg": {"architecture": "vgg_cifar", "dataset": "photos", "options": {"width": 1, "stages": 2},
                "trace": "ops", "epochs": 1, "transforms": ["standard", "sem"]},
    },
    "transforms": {"standard": {}, "laplacian": {"k": 20}, "sem": {}},
    "causes": {"transforms": ["sem", "laplacian"], "samples": 12, "reconstruct_samples": 3, "fractions": [0.2, 0.5],
               "sparsity": 5},
    "figures": ["compaction", "energy", "contributions", "reconstruction"],
}

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed next to this Python")


def run(folder, *args, check=True):
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"),
                          "--directory", str(folder), *args], capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def workspace(tmp_path, name, config):
    folder = tmp_path / name
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def digests(folder):
    results = folder / "results"
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file()
            and p.relative_to(results).parts[0] not in ("logs", "benchmarks")}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    two = workspace(base, "cores2", TINY)
    run(two, "--cores", "2", "--quiet")
    one = workspace(base, "cores1", TINY)
    run(one, "--cores", "1", "--quiet")
    return two, one


def test_every_expected_file_with_the_right_shapes(tiny_runs):
    folder, _ = tiny_runs
    r = folder / "results"
    for model in ("mlp", "res"):
        for name in ("weights.npz", "training.json", "graph.h5", "transformer_standard.h5", "transformer_laplacian.h5"):
            assert (r / "models" / model / name).is_file()
        graph = storage.read_graph(r / "models" / model / "graph.h5")
        n = graph.n_nodes
        sizes = []
        for shard in range(3):
            acts = storage.read_signals(r / "activations" / model / "digits" / f"shard_{shard}.h5", "activations")
            assert acts.values.shape[1] == n and acts.values.dtype == np.float32
            sizes.append(acts.values.shape[0])
            std = storage.read_signals(r / "spectra" / model / "digits" / "standard" / f"shard_{shard}.h5")
            lap = storage.read_signals(r / "spectra" / model / "digits" / "laplacian" / f"shard_{shard}.h5")
            assert std.values.shape == (sizes[-1], n) and lap.values.shape == (sizes[-1], 20)
            assert np.array_equal(std.sample_ids, acts.sample_ids) and np.array_equal(lap.labels, acts.labels)
            sem = storage.read_signals(r / "spectra" / model / "digits" / "sem" / f"shard_{shard}.h5")
            assert sem.noise_floor.shape == (sizes[-1], len(acts.layers)) and std.noise_floor is None
            assert (sem.noise_floor[:, 0] == 0).all() and (sem.noise_floor[:, 1:] > 0).all()
        assert sizes == [25, 25, 10]
        for name in ("pattern.pdf", "spectrum_standard.pdf", "spectrum_laplacian.pdf", "filtered_sem.pdf",
                     "filtered_laplacian.pdf"):
            assert (r / "figures" / model / "digits" / name).stat().st_size > 1000
        summary = (r / "summary" / model / "digits" / "summary.json").read_text()
        assert '"test_accuracy"' in summary and '"compaction_share"' in summary
        stats = json.loads(summary)
        assert stats["sem"]["noise_floor"] is True and stats["standard"]["noise_floor"] is False
        means = storage.read_signals(r / "summary" / model / "digits" / "class_means_laplacian.h5")
        assert means.values.shape == (10, 20) and np.array_equal(means.sample_ids, np.arange(10))  # truncated basis
    for name in ("compaction", "energy_mlp", "energy_res", "energy_vgg"):
        assert all((r / "figures" / "paper" / f"{name}.{ext}").is_file() for ext in ("pdf", "png", "caption.md"))
        assert f'<img src="{name}.png"' in (r / "figures" / "paper" / "index.html").read_text()
    assert (r / "benchmarks" / "collect_activations" / "mlp" / "digits" / "shard_0.tsv").is_file()
    # the CIFAR-sized net runs only its configured transform, on the factored path
    vgg = r / "models" / "vgg"
    assert not (vgg / "transformer_laplacian.h5").exists() and not (r / "spectra" / "vgg" / "photos" / "laplacian").exists()
    with storage.open_file(vgg / "transformer_standard.h5", "transformer") as f:
        assert f["transform"].attrs["encoding-type"] == "nsp.factored-transform"
    assert "factored:" in (r / "logs" / "compute_transformer" / "vgg" / "standard.log").read_text()
    acts = storage.read_signals(r / "activations" / "vgg" / "photos" / "shard_1.h5")
    assert acts.values.shape == (5, storage.read_graph(vgg / "graph.h5").n_nodes)
    assert acts.labels.tolist() == [1, 0, 1, 0, 1]                        # tiles 25..29 alternate photographs
    assert (r / "figures" / "vgg" / "photos" / "spectrum_standard.pdf").is_file()
    assert not (r / "figures" / "vgg" / "photos" / "spectrum_laplacian.pdf").exists()
    assert sorted(p.name for p in (r / "summary" / "vgg" / "photos").glob("class_means_*.h5")) == \
        ["class_means_activations.h5", "class_means_sem.h5", "class_means_standard.h5"]
    means = storage.read_signals(r / "summary" / "mlp" / "digits" / "class_means_standard.h5")
    spectra = [storage.read_signals(r / "spectra" / "mlp" / "digits" / "standard" / f"shard_{i}.h5") for i in range(3)]
    values, labels = np.concatenate([b.values for b in spectra]), np.concatenate([b.labels for b in spectra])
    assert means.transform_type == "standard" and means.sample_ids.tolist() == sorted(set(labels.tolist()))
    for row, label in zip(means.values, means.sample_ids):
        assert np.allclose(row, values[labels == label].mean(axis=0), rtol=1e-12, atol=1e-15)
    # sem: c = (I - A) s from the network's weights; on the first linear layer of the MLP, its bias
    sem = storage.read_signals(r / "spectra" / "mlp" / "digits" / "sem" / "shard_0.h5")
    mlp_graph = storage.read_graph(r / "models" / "mlp" / "graph.h5")
    bias = np.load(r / "models" / "mlp" / "weights.npz")["fc1.bias"]
    first = mlp_graph.kinds.index("linear")
    assert np.allclose(sem.values[:, mlp_graph.offsets[first]:mlp_graph.offsets[first + 1]], bias[None, :], atol=1e-5)
    assert (r / "figures" / "vgg" / "photos" / "spectrum_sem.pdf").is_file()


def test_outputs_equal_the_library_called_directly(tiny_runs):
    folder, _ = tiny_runs
    r = folder / "results"
    config = nsp_config.load(r / "config.resolved.yaml")
    net = zoo.load_weights(zoo.build("residual_cnn"), r / "models" / "res" / "weights.npz")
    inputs, labels = datasets.load(config["datasets"]["digits"])
    x = datasets.for_model(inputs[25:50], (1, 8, 8))
    direct = record(net, x, "ops").values()
    shard = storage.read_signals(r / "activations" / "res" / "digits" / "shard_1.h5")
    assert np.array_equal(shard.values, direct) and shard.labels.tolist() == labels[25:50].tolist()
    graph = storage.read_graph(r / "models" / "res" / "graph.h5")
    for kind in ("standard", "laplacian"):
        transformer = storage.read_transformer(r / "models" / "res" / f"transformer_{kind}.h5")
        spectra = storage.read_signals(r / "spectra" / "res" / "digits" / kind / "shard_1.h5")
        direct = transformer.transform(shard.values)
        if kind == "standard":                     # sparse products: the same sums in the same order
            assert np.array_equal(spectra.values, direct)
        else:                                      # dense BLAS: the jobs ran with 1 thread, this test may not
            assert np.allclose(spectra.values, direct, rtol=1e-12, atol=1e-12 * np.abs(direct).max())
    fresh = nsp.StandardTransform().fit(graph)
    assert (fresh.mobius != storage.read_transformer(r / "models" / "res" / "transformer_standard.h5").mobius).nnz == 0


def test_causes_records_against_the_library(tiny_runs):
    """The causes jobs: per-layer shares of the predicted logit that sum to it, equal to the library's, and
    reconstruction errors; the summary holds the records and the captions quote them."""
    folder, _ = tiny_runs
    r = folder / "results"
    for model, dataset in (("mlp", "digits"), ("res", "digits"), ("vgg", "photos")):
        summary = json.loads((r / "summary" / model / dataset / "summary.json").read_text())
        expected = ["sem"] if model == "vgg" else ["laplacian", "sem"]
        assert sorted(summary["causes"]) == expected
        for transform in expected:
            record = json.loads((r / "summary" / model / dataset / f"causes_{transform}.json").read_text())
            assert summary["causes"][transform] == record and record["samples"] == 12
            rec = record["reconstruction"]
            assert rec["fractions"] == [0.2, 0.5] and len(rec["errors"]) == 2 and len(rec["errors"][0]) == 3
            assert rec["method"] == ("lowpass" if transform == "laplacian" else "omp")
            assert ("contributions" in record) == (transform == "sem")
    record = json.loads((r / "summary" / "mlp" / "digits" / "causes_sem.json").read_text())
    shard = storage.read_signals(r / "activations" / "mlp" / "digits" / "shard_0.h5")
    sem = storage.read_transformer(r / "models" / "mlp" / "transformer_sem.h5")
    s = shard.values[:12].astype(np.float64)
    names, offsets = sem.layer_offsets()
    predicted = s[:, offsets[-2]:].argmax(axis=1)
    direct = np.stack([sem.contributions(s[b], [offsets[-2] + int(p)], per_layer=True)[0] for b, p in
                       enumerate(predicted)])
    got = np.array(record["contributions"]["shares"])
    assert record["contributions"]["predicted"] == predicted.tolist()
    assert np.allclose(got, direct, rtol=1e-12, atol=1e-12)
    assert np.allclose(got.sum(axis=1), s[np.arange(12), offsets[-2] + predicted], rtol=1e-9, atol=1e-9)
    assert record["contributions"]["completeness_error"] < 1e-9
    caption = (r / "figures" / "paper" / "contributions.caption.md").read_text()
    mean = np.array(record["contributions"]["mean"]) / np.mean(np.abs(record["contributions"]["logit"]))
    top = int(np.argmax(mean))
    assert f"sem (12 samples): {names[top]} {mean[top]:.3g}" in caption
    caption = (r / "figures" / "paper" / "reconstruction.caption.md").read_text()
    assert f"- mlp at 50% observed: laplacian {summary_error(r, 'mlp', 'laplacian'):.3g} (lowpass, 5 " in caption


def summary_error(r, model, transform) -> float:
    return json.loads((r / "summary" / model / "digits" / "summary.json").read_text())["causes"][transform][
        "reconstruction"]["mean_error"][-1]


def test_cores_do_not_change_a_single_byte(tiny_runs):
    two, one = tiny_runs
    a, b = digests(two), digests(one)
    assert len(a) >= 45 and a == b


def test_every_job_writes_its_log(tiny_runs):
    folder, _ = tiny_runs
    logs = sorted((folder / "results" / "logs").rglob("*.log"))
    rules = {p.relative_to(folder / "results" / "logs").parts[0].removesuffix(".log") for p in logs}
    assert rules == {"train", "extract_graph", "compute_transformer", "collect_activations", "transform", "causes",
                     "visualize", "visualize_spectrum", "visualize_filtered", "summarize", "class_means", "figures"}
    # figures: one log per paper figure
    empty = [str(p) for p in logs if p.stat().st_size == 0]     # visualize: both drawing rules
    assert not empty, empty
    cfg = nsp_config.validate(TINY)                 # the config's parts, written when the workflow read it
    assert (folder / "results" / "config" / "train" / "mlp.yaml").read_text() == nsp_config.part_text(cfg, "train/mlp")
    assert (folder / "results" / "config.resolved.yaml").read_text() == nsp_config.dump_text(cfg)


def test_second_run_does_nothing(tiny_runs):
    folder, _ = tiny_runs
    out = run(folder, "-n", "--cores", "2")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_lint_and_default_dry_run(tmp_path):
    folder = tmp_path / "default"
    (folder / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", folder / "config" / "config.yaml")
    lint = run(folder, "--lint")
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    dry = run(folder, "-n", "--quiet", "rules")
    counts = dict(line.split()[:2] for line in (dry.stdout + dry.stderr).splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    # 5 models x 4 shards of the 1,797 digits, 3 transforms; 2 models x 1 shard of 200 photo tiles, standard and sem
    assert counts["collect_activations"] == "22" and counts["transform"] == "64"
    assert counts["compute_transformer"] == "19" and counts["train"] == "7" and counts["paper_all_models"] == "5"
    assert counts["paper_per_model"] == "14" and counts["paper_per_series"] == "26"
    assert counts["visualize"] == "7" and counts["visualize_spectrum"] == "19" and counts["visualize_filtered"] == "19"
    assert counts["causes"] == "19"                          # every transform each model runs
    assert counts["class_means"] == "26" and "config_part" not in counts     # parts: written, not jobs
    assert counts["paper_gallery"] == "1"


def test_a_config_file_on_the_command_line_is_the_whole_experiment(tmp_path):
    folder = tmp_path / "own"
    (folder / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", folder / "config" / "config.yaml")     # the default, present
    own = {"results": "mine", "shard_size": 25, "datasets": {"digits": TINY["datasets"]["digits"]},
           "models": {"only": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1}},
           "transforms": {"standard": {}}}
    (folder / "my.yaml").write_text(yaml.safe_dump(own))
    dry = run(folder, "-n", "--configfile", str(folder / "my.yaml"))
    text = dry.stdout + dry.stderr
    counts = dict(line.split()[:2] for line in text.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    # one model, one transform, 60 digits in shards of 25
    assert counts["train"] == "1" and counts["extract_graph"] == "1" and counts["compute_transformer"] == "1"
    assert counts["collect_activations"] == "3" and counts["transform"] == "3" and counts["visualize_spectrum"] == "1"
    assert "mine/models/only/weights.npz" in text and "results/" not in text
    default = dict(line.split()[:2] for line in run(folder, "-n").stdout.splitlines()
                   if len(line.split()) == 2 and line.split()[1].isdigit())
    assert default["train"] == "7"                         # without --configfile: the default experiment


def plan(folder, config) -> dict:
    """Rule -> number of jobs a dry run plans after ``config`` replaced the folder's config."""
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    out = run(folder, "-n", "--quiet", "rules")
    return {line.split()[0]: int(line.split()[1]) for line in (out.stdout + out.stderr).splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit() and line.split()[0] != "total"}


def edited(**changes) -> dict:
    """TINY with nested changes: edited(models__mlp__epochs=2)."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in changes.items():
        *path, last = key.split("__")
        target = config
        for step in path:
            target = target.setdefault(step, {})
        target[last] = value
    return config


@pytest.mark.parametrize("changes, expected", [
    # a figure option: only the drawings
    ({"visualize__cmap": "magma"}, {"visualize": 3, "visualize_spectrum": 8, "visualize_filtered": 5}),
    ({"figures": ["compaction", "sparsity"]}, {"paper_per_model": 3}),
    # one transform's options: its transformers, spectra, causes, drawings and statistics, nothing else
    ({"transforms__laplacian__k": 10}, {"compute_transformer": 2, "transform": 6, "causes": 2,
                                        "visualize_spectrum": 2, "visualize_filtered": 2, "summarize": 2, "class_means": 2,
                                        "paper_all_models": 3, "paper_per_model": 2}),
    # one model's training: its chain only
    ({"models__mlp__epochs": 2}, {"train": 1, "extract_graph": 1, "compute_transformer": 3,
                                  "collect_activations": 3, "transform": 9, "causes": 2, "visualize": 1,
                                  "visualize_spectrum": 3, "visualize_filtered": 2, "summarize": 1, "class_means": 4, "paper_all_models": 3,
                                  "paper_per_model": 1}),
    # one model's trace mode: not its training
    ({"models__mlp__trace": "ops"}, {"extract_graph": 1, "compute_transformer": 3,
                                     "collect_activations": 3, "transform": 9, "causes": 2, "visualize": 1,
                                     "visualize_spectrum": 3, "visualize_filtered": 2, "summarize": 1, "class_means": 4,
                                     "paper_all_models": 3, "paper_per_model": 1}),
    # a new model: its jobs, and the figures that show every model
    ({"models__mlp2": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1, "transforms": ["standard"]}},
     {"train": 1, "extract_graph": 1, "compute_transformer": 1, "collect_activations": 3,
      "transform": 3, "visualize": 1, "visualize_spectrum": 1, "summarize": 1, "class_means": 2,
      "paper_all_models": 3, "paper_per_model": 1}),
    # the causes options: every causes job, the summaries and what draws them
    ({"causes__fractions": [0.5]}, {"causes": 5, "summarize": 3, "paper_all_models": 3, "paper_per_model": 3}),
    # threads, results of a fixed value: nothing but the record
    ({"threads": 2}, {}),
    # some layers of one model stored (and so no transforms): its activations and what reads them
    ({"models__mlp__layers": ["input", "fc*"], "models__mlp__transforms": []},
     {"collect_activations": 3, "visualize": 1, "summarize": 1, "class_means": 1,
      "paper_all_models": 3, "paper_per_model": 1}),
])
def test_a_config_change_reruns_only_the_jobs_that_read_it(tiny_runs, tmp_path, changes, expected):
    folder = tmp_path / "edit"
    shutil.copytree(tiny_runs[0], folder, symlinks=True)         # keeps times and Snakemake's records
    assert plan(folder, TINY) == {}
    if any(rule.startswith("paper_") for rule in expected):
        expected = {**expected, "paper_gallery": 1}         # the page that shows them
    assert plan(folder, edited(**changes)) == ({**expected, "all": 1} if expected else {})
    cfg = nsp_config.validate(edited(**changes))               # the record follows the config, in any case
    assert (folder / "results" / "config.resolved.yaml").read_text() == nsp_config.dump_text(cfg)


def test_a_changed_config_reruns_its_jobs_without_snakemakes_records(tiny_runs, tmp_path):
    """A part whose text changed is rewritten when the workflow reads the config, so a changed seed reruns
    training and what follows it although .snakemake/ (Snakemake's records of its runs) is gone; and two
    workspaces sharing one results folder each get results of their own config."""
    folder = tmp_path / "fresh"
    shutil.copytree(tiny_runs[0], folder, symlinks=True)
    shutil.rmtree(folder / ".snakemake")
    assert plan(folder, TINY) == {}
    changed = plan(folder, edited(seed=7))
    assert changed["train"] == 3 and changed["extract_graph"] == 3 and changed["summarize"] == 3
    assert nsp_config.load(folder / "results" / "config.resolved.yaml")["seed"] == 7
    assert plan(folder, TINY) == changed                       # back to seed 0: its training is gone too


def test_bad_config_key_fails_before_any_job(tmp_path):
    bad = {**TINY, "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epoch": 1}}}
    folder = workspace(tmp_path, "bad", bad)
    out = run(folder, "--cores", "1", check=False)
    assert out.returncode != 0
    assert "config key models.mlp: Additional properties are not allowed ('epoch' was unexpected)" in out.stderr
    assert not (folder / "results").exists()


def test_injection_and_traversal_names_plan_nothing(tmp_path):
    for name, models in (("inject", {"x --help;touch INJECTED;": {"architecture": "digits_mlp", "dataset": "digits"}}),
                         ("escape", {"../escaped": {"architecture": "digits_mlp", "dataset": "digits"}})):
        folder = workspace(tmp_path, name, {**TINY, "models": models})
        out = run(folder, "--cores", "1", check=False)
        assert out.returncode != 0 and "config key models: the name" in out.stderr
        assert not (folder / "results").exists() and not (folder / "INJECTED").exists()
        assert not (tmp_path / "escaped").exists() and sorted(p.name for p in folder.iterdir()) == [".snakemake", "config"]


def test_names_that_share_underscores_get_their_own_logs(tmp_path):
    """Models x and x_y on datasets y_1 and 1: joined with '_' their log names would be the same file."""
    cfg = {**TINY, "datasets": {"y_1": dict(TINY["datasets"]["digits"]), "1": dict(TINY["datasets"]["digits"])},
           "models": {"x": {"architecture": "digits_mlp", "dataset": "y_1"},
                      "x_y": {"architecture": "digits_mlp", "dataset": "1"}}}
    folder = workspace(tmp_path, "names", cfg)
    out = run(folder, "-n", "--printshellcmds", "--cores", "1")
    logs = re.findall(r" 2> '?([^' \n]+\.log)", out.stdout)
    assert len(logs) > 20 and len(set(logs)) == len(logs), sorted(logs)
    assert "results/logs/collect_activations/x/y_1/shard_0.log" in logs
    assert "results/logs/collect_activations/x_y/1/shard_0.log" in logs


@pytest.mark.skipif(shutil.which("make") is None or not (REPO / ".venv" / ".nsp-installed").exists(),
                    reason="make run needs make and the project's .venv")
def test_make_run_works_where_home_cannot_be_written(tmp_path):
    """Snakemake caches under ~/.cache and fails before reading the workflow where HOME cannot be written;
    make run then gives it a cache folder of its own."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "results": str(tmp_path / "results"), "models": {
        "mlp": TINY["models"]["mlp"]}}))
    env = {**os.environ, "HOME": "/proc/no-home"}
    env.pop("XDG_CACHE_HOME", None)
    bare = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "-n"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert bare.returncode != 0 and "/proc/no-home" in bare.stdout + bare.stderr   # what make run works around
    out = subprocess.run(["make", "-s", "run", f"CONFIG={config}", "SNAKEMAKE_ARGS=-n --quiet rules"], cwd=REPO,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train" in out.stdout and (tmp_path / "results" / "config.resolved.yaml").exists()


def test_missing_weights_file(tmp_path):
    config = {**TINY, "models": {"user": {"architecture": "digits_mlp", "dataset": "digits",
                                          "weights": "weights/missing.npz"}}}
    folder = workspace(tmp_path, "noweights", config)
    out = run(folder, "--cores", "1", check=False)
    assert out.returncode != 0 and "weights/missing.npz" in out.stderr and "Missing input files" in out.stderr
    assert not (folder / "results" / "models").exists()


def test_wrong_input_shape(tmp_path):
    config = {**TINY, "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1,
                                         "input_shape": [1, 8, 9]}}}
    folder = workspace(tmp_path, "shape", config)
    out = run(folder, "--cores", "1", check=False)
    assert out.returncode != 0
    logs = "".join(p.read_text() for p in (folder / "results" / "logs").rglob("*.log"))
    assert "model mlp: digits_mlp does not accept samples of shape (1, 8, 9) (config key models.mlp.input_shape)" in logs
    assert not list((folder / "results").rglob("*.h5")) and not list((folder / "results").rglob("*.npz"))


def test_report_with_captions(tiny_runs):
    folder, _ = tiny_runs
    run(folder, "--report", "report.html")
    html = (folder / "report.html").read_text(errors="replace")
    assert "Summary figures over all samples" in html and "compaction.png" in html
    assert "one panel per model" in html and "compaction.caption.md" in html     # the kind's text, its caption


def test_jobs_find_nsp_without_the_venv_on_path(tmp_path):
    """`.venv/bin/snakemake` run with a PATH that lacks the venv: jobs run nsp with Snakemake's interpreter."""
    one = {**TINY, "datasets": {"digits": TINY["datasets"]["digits"]}, "figures": [],
           "models": {"mlp": {**TINY["models"]["mlp"], "epochs": 0}}, "transforms": {"sem": {}}}
    folder = workspace(tmp_path, "bare", one)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != SNAKEMAKE.parent.resolve()) or "/usr/bin:/bin"
    assert shutil.which("nsp", path=env["PATH"]) is None
    out = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
                          str(folder), "--cores", "1", "--quiet", "all", "--", "results/models/mlp/graph.h5"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert storage.read_graph(folder / "results" / "models" / "mlp" / "graph.h5").n_nodes == 64 + 32 + 32 + 10
