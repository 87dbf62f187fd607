"""The causes stage: what made one model's patterns, with one fitted transform.

For the first ``causes.samples`` samples of the dataset it writes a JSON record with

- ``contributions`` (a transform with coefficients at the nodes): each sample's predicted class (the
  largest value of the last layer), the share of each layer's coefficients in that class's logit
  (``Transform.contributions(..., per_layer=True)``), their mean over the samples of each predicted
  class, and the completeness error (the shares' sum against the logit);
- ``reconstruction``: for each fraction in ``causes.fractions``, the relative error of patterns
  reconstructed from that fraction of their neurons (chosen at random with the config's seed), by
  greedy pursuit with ``causes.sparsity`` coefficients (low-pass for a transform whose coefficients are
  not nodes), with the warnings the reconstruction gave; skipped, with the reason, on graphs of more than
  ``causes.max_nodes`` neurons or where memory does not allow it.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from nsp.errors import MemoryBudgetError, StorageError
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import check_provenance, log, require_files, write_json


def causes(args, cfg) -> None:
    from nsp import storage
    require_files(transformer=args.transformer, activations=args.activations)
    settings = cfg["causes"]
    fitted = storage.read_transformer(args.transformer)
    signals, labels = _first_samples(args.activations, settings["samples"], fitted, args.transformer)
    out = {"model": args.model, "transform": fitted.type, "nodes": int(fitted.n), "samples": len(signals)}
    start = time.perf_counter()
    if fitted.coefficients_at_nodes and fitted.layer_offsets() is not None and len(signals):
        out["contributions"] = contributions(fitted, signals, labels)
        log(args, f"{fitted.type}: contributions of {len(signals)} samples ({time.perf_counter() - start:.1f} s)")
    start = time.perf_counter()
    out["reconstruction"] = reconstruction(fitted, signals[:settings["reconstruct_samples"]], settings,
                                           cfg.get("seed", 0))
    skipped = out["reconstruction"].get("skipped")
    log(args, f"{fitted.type}: reconstruction {'skipped: ' + skipped if skipped else 'done'} "
              f"({time.perf_counter() - start:.1f} s)")
    write_json(args.out, out)


def _first_samples(paths, count: int, fitted, transformer_path) -> tuple:
    """The first ``count`` samples of the activation shards (float64) and their labels (or None)."""
    from nsp import storage
    from nsp.pipeline import batching
    values, labels = [], []
    for path in paths:
        for batch in storage.iter_signals(path, "activations", batching.TRANSFORM_BYTES):
            if batch.stored_layers is not None:
                raise StorageError(f"--activations {path} holds {len(batch.stored_layers)} of the "
                                   f"{len(batch.layers)} layers of its network; causes need every node")
            check_provenance(fitted, batch, transformer_path, path)
            take = min(count - sum(map(len, values)), batch.values.shape[0])
            values.append(np.asarray(batch.values[:take], dtype=np.float64))
            labels.append(None if batch.labels is None else np.asarray(batch.labels[:take]))
            if sum(map(len, values)) >= count:
                break
        if sum(map(len, values)) >= count:
            break
    signals = np.concatenate(values) if values else np.zeros((0, fitted.n))
    known = labels and all(lab is not None for lab in labels)
    return signals, (np.concatenate(labels).astype(int) if known else None)


def contributions(fitted, signals: np.ndarray, labels) -> dict:
    """Each sample's predicted class and the per-layer shares of its logit."""
    names, offsets = fitted.layer_offsets()
    logits = np.arange(offsets[-2], offsets[-1])
    predicted = signals[:, logits].argmax(axis=1)
    classes = np.unique(predicted)            # one backward pass per predicted class, batched over the samples
    everything = fitted.contributions(signals, logits[classes], per_layer=True)     # (samples, classes, layers)
    shares = everything[np.arange(len(signals)), np.searchsorted(classes, predicted)]
    logit = signals[np.arange(len(signals)), logits[predicted]]
    scale = max(float(np.abs(logit).max(initial=0)), 1e-300)
    by_class = {str(int(c)): shares[predicted == c].mean(axis=0).tolist() for c in np.unique(predicted)}
    return {"layers": list(names), "predicted": predicted.tolist(),
            "labels": None if labels is None else labels.tolist(), "shares": shares.tolist(),
            "logit": logit.tolist(), "mean": shares.mean(axis=0).tolist(), "by_class": by_class,
            "completeness_error": float(np.abs(shares.sum(axis=1) - logit).max(initial=0) / scale)}


def reconstruction(fitted, signals: np.ndarray, settings: dict, seed: int) -> dict:
    """Relative errors of reconstructions from each configured fraction of the neurons."""
    from nsp.transforms.sampling import ReconstructionWarning
    n = fitted.n
    if n > settings["max_nodes"]:
        return {"skipped": f"a graph of {n:,} neurons (causes.max_nodes is {settings['max_nodes']:,})"}
    if not len(signals):
        return {"skipped": "no samples"}
    method = "omp" if fitted.coefficients_at_nodes else "lowpass"
    k = min(settings["sparsity"], fitted.n_coefficients)
    rng = np.random.default_rng(seed)
    norms = np.maximum(np.linalg.norm(signals, axis=1), 1e-300)
    errors, messages = [], []
    for fraction in settings["fractions"]:
        observed = np.sort(rng.choice(n, max(1, int(round(fraction * n))), replace=False))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReconstructionWarning)
                estimate = fitted.reconstruct(signals[:, observed], observed, k, method=method)
        except MemoryBudgetError as err:
            return {"skipped": str(err)}
        errors.append((np.linalg.norm(estimate - signals, axis=1) / norms).tolist())
        messages += [f"{fraction:g}: {w.message}" for w in caught if issubclass(w.category, ReconstructionWarning)]
    return {"method": method, "sparsity": int(k), "fractions": list(settings["fractions"]), "errors": errors,
            "mean_error": [float(np.mean(e)) for e in errors], "warnings": messages}


CAUSES = Stage("causes", causes, "per-layer contributions to the predicted class and reconstruction from sampled "
               "neurons, for one model and one fitted transform (JSON)", (
                   option("--model", required=True),
                   option("--transformer", required=True),
                   option("--activations", nargs="+", required=True, help="the model's activation shards"),
                   option("--out", required=True)))
