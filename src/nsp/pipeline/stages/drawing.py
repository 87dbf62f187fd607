"""The stages that draw: visualize (one sample's pattern, its spectra and its pattern filtered by causes, page
by page) and figures (one paper figure of a registered kind, :mod:`nsp.pipeline.figures`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsp.errors import ConfigError, InputError, StorageError
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import check_provenance, log, pairs, read_json, require_files
from nsp.storage.files import atomic_output


def visualize(args, cfg) -> None:
    """Draw the configured sample's activation pattern and its spectra, one page per layer."""
    from contextlib import ExitStack

    from nsp import storage
    from nsp.plotting import figures as plotting
    from nsp.plotting import pages
    options = cfg["visualize"]
    if (args.transformer is None) != (args.filtered_out is None):
        raise InputError("--filtered-out (the pattern of the sample's largest coefficients) needs --transformer, "
                         "and --transformer is only for it")
    if not args.out and not args.spectra and not args.filtered_out:
        raise InputError("nothing to draw: give --out (the pattern), --spectra and/or --filtered-out")
    outs = args.spectra_out
    if args.spectra and outs is None:
        outs = [None] * len(args.spectra)
    spectra_outs = pairs(args.spectra, outs, "spectra files", "--spectra-out")
    for name, path in [("--out", args.out), ("--filtered-out", args.filtered_out)] + \
            [("--spectra-out", out) for out in outs or []]:
        if path is not None and Path(path).suffix != ".pdf":
            raise InputError(f"{name} {path}: the pages are a PDF; give a name ending in .pdf")
    require_files(activations=args.activations, spectra=args.spectra, transformer=args.transformer)
    with ExitStack() as files:     # the files stay open: each page reads its layer of the one sample
        batch = files.enter_context(storage.open_signals(args.activations, "activations"))
        if not batch.values.shape[0]:
            raise StorageError(f"--activations {args.activations} holds no samples")
        label = options["label"]
        if batch.labels is None:       # no labels: the shard's first sample
            index, label = 0, "none"
        else:
            hits = np.flatnonzero(batch.labels == label)
            if not hits.size:
                held = np.unique(batch.labels)
                more = f" (and {held.size - 10} more)" if held.size > 10 else ""
                raise ConfigError(f"config key visualize.label: no sample of {args.activations} has label {label}; "
                                  f"its labels are {', '.join(map(str, held[:10]))}{more}")
            index = int(hits[0])
        selection = pages.select_layers(batch.stored_table.names, options.get("layers"),
                                        what="config key visualize.layers")
        spectra = []                   # every file checked before any page is written
        for path, out in spectra_outs:
            stored = files.enter_context(storage.open_signals(path, "spectra"))
            _check_spectra(args.activations, batch, path, stored)
            spectra.append((stored, out or Path(args.out or ".").parent / f"spectrum_{stored.transform_type}.pdf"))
        if args.out:
            columns = batch.stored_table                 # the stored layers (models.<m>.layers), or all
            pages.pattern_pdf(pages.SampleLayers(batch.values, index, columns), columns.names, args.out,
                              options["scale"], options["cmap"], select=selection)
        if args.filtered_out:
            _filtered(args, batch, index, options, selection)
        for stored, out in spectra:
            if stored.values.shape[1] == stored.layers.n_nodes:
                floor = None if stored.noise_floor is None else stored.noise_floor[index]
                pages.spectrum_pdf(pages.SampleLayers(stored.values, index, stored.layers, floor), stored.layers.names,
                                   out, stored.transform_type, stored.eigenvalues, select=selection,
                                   floored=floor is not None)
            else:                      # a partial Laplacian basis: coefficients have no layer layout
                values = stored.values[index]
                title = f"Laplacian spectrum ({values.size} lowest eigenvalues): |coefficient| against eigenvalue"
                plotting.write_pdf([plotting.eigenvalue_figure(stored.eigenvalues, values, title)], out)
    log(args, f"sample {int(batch.sample_ids[index])} (label {label}); {selection.summary()}")


def _filtered(args, batch, index: int, options: dict, selection) -> None:
    """The pages of the sample's pattern synthesised from its largest coefficients only (``visualize.keep``
    of them): ``Transform.filter`` with the transformer, beside the relative error to the pattern."""
    from nsp import storage
    from nsp.plotting import pages
    fitted = storage.read_transformer(args.transformer)
    if batch.stored_layers is not None:
        raise StorageError(f"--transformer {args.transformer} cannot filter --activations {args.activations}: those "
                           f"hold {len(batch.stored_layers)} of the {len(batch.layers)} layers only")
    check_provenance(fitted, batch, args.transformer, args.activations)
    signal = np.asarray(batch.values[index], dtype=np.float64)
    kept = max(1, int(round(options["keep"] * fitted.n_coefficients)))
    filtered = fitted.filter(signal, kept)
    error = np.linalg.norm(filtered - signal) / max(np.linalg.norm(signal), 1e-300)
    note = (f"the pattern synthesised from its {kept:,} largest {fitted.label or fitted.type} coefficients only "
            f"({options['keep']:.1%} of {fitted.n_coefficients:,}); relative error to the pattern {error:.3g}")
    pages.pattern_pdf(pages.SampleLayers(filtered[None], 0, batch.layers), batch.layers.names, args.filtered_out,
                      options["scale"], options["cmap"], select=selection, note=note)
    log(args, note)


def _check_spectra(activations, batch, path, spectra) -> None:
    """Refuse a spectra file that is not of the same graph, weights and samples as the activations."""
    def table(t):
        return f"{len(t)} layers, {t.n_nodes:,} nodes"

    if batch.stored_layers is not None:       # spectra need every layer's activations (models.<m>.layers)
        raise StorageError(f"--spectra {path} cannot be drawn beside --activations {activations}: those hold "
                           f"{len(batch.stored_layers)} of the {len(batch.layers)} layers only")
    ours, theirs = batch.layers, spectra.layers
    what = None
    if ours != theirs and table(ours) != table(theirs):
        what = f"layer tables differ ({table(ours)} in the activations; {table(theirs)} in the spectra)"
    elif ours != theirs:
        i, a, b = next((i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        what = (f"layer tables differ at layer {i} ({a.name!r}, {a.kind}, {a.shape} in the activations; "
                f"{b.name!r}, {b.kind}, {b.shape} in the spectra)")
    elif batch.weights_sha256 and spectra.weights_sha256 and batch.weights_sha256 != spectra.weights_sha256:
        what = (f"they come from different weights (sha256 {batch.weights_sha256[:12]}... in the activations, "
                f"{spectra.weights_sha256[:12]}... in the spectra)")
    elif len(batch.sample_ids) != len(spectra.sample_ids):
        what = f"{len(batch.sample_ids)} samples in the activations, {len(spectra.sample_ids)} in the spectra"
    elif not np.array_equal(batch.sample_ids, spectra.sample_ids):
        i = int(np.flatnonzero(batch.sample_ids != spectra.sample_ids)[0])
        what = (f"sample {i} has id {int(batch.sample_ids[i])} in the activations, "
                f"{int(spectra.sample_ids[i])} in the spectra")
    if what:
        raise StorageError(f"--spectra {path} does not match --activations {activations}: {what}")


#: the options each kind of figure input needs (the others it refuses)
_NEEDS = {"summaries": ("summaries",), "summary": ("summaries",), "class_means": ("class_means", "model")}


def figures(args, cfg) -> None:
    """Draw one paper figure of a registered kind and save it as PDF and PNG."""
    from nsp.pipeline.figures import FIGURES
    kind = FIGURES.lookup(args.kind)
    need = _NEEDS[kind.inputs]
    for name in ("summaries", "class_means", "model"):
        if (getattr(args, name) is not None) != (name in need):
            raise InputError(f"--kind {args.kind} {'needs' if name in need else 'takes no'} "
                             f"--{name.replace('_', '-')}")
    if kind.inputs == "summary" and len(args.summaries) != 1:
        raise InputError(f"--kind {args.kind}: one figure per model; give one summary, got {len(args.summaries)}")
    out = Path(args.out)
    if out.suffix != ".pdf":
        raise InputError(f"--out {out}: the figure's PDF (a name ending in .pdf; the PNG is written beside it)")
    require_files(summaries=args.summaries, class_means=args.class_means)
    if kind.inputs == "class_means":
        from nsp import storage
        inputs = (storage.read_signals(args.class_means), args.model)
    else:
        summaries = [read_summary(path) for path in args.summaries]
        inputs = (summaries if kind.inputs == "summaries" else summaries[0],)
    fig = kind.draw(*inputs)
    caption = kind.caption(*inputs) if kind.caption is not None else f"**{args.kind}.** {kind.help}"
    from nsp.plotting import figures as plotting
    written = plotting.save_figure(fig, out.with_name(out.stem))
    with atomic_output(caption_path(out)) as tmp:
        Path(tmp).write_text(caption.rstrip() + "\n", encoding="utf-8")
    log(args, f"{args.kind}: {', '.join(map(str, written + [caption_path(out)]))}")


def caption_path(pdf) -> Path:
    """The caption file of a paper figure: ``<name>.caption.md`` beside ``<name>.pdf``."""
    pdf = Path(pdf)
    return pdf.with_name(f"{pdf.stem}.caption.md")


def read_summary(path, option: str = "--summaries") -> dict:
    """A summary file of ``nsp summarize``, checked for what the figures read; a damaged one (or another
    JSON file) is a StorageError naming the file and what is wrong."""
    from nsp.pipeline.figures import series_of
    from nsp.statistics import PER_LAYER
    summary = read_json(path, option)
    problem = None
    if not isinstance(summary, dict):
        problem = "not a JSON object"
    elif not (isinstance(summary.get("model"), str) and isinstance(summary.get("layers"), list)
              and isinstance(summary.get("sparsity_threshold"), (int, float))):
        problem = "no model name, layer names or sparsity threshold"
    elif "activations" not in series_of(summary):
        problem = "no statistics of the activations"
    else:
        for name in series_of(summary):
            stats = summary[name]
            if not (isinstance(stats["compaction_k"], list) and isinstance(stats.get("compaction_share"), list)
                    and len(stats["compaction_k"]) == len(stats["compaction_share"])):
                problem = f"{name}: compaction_k and compaction_share are not two lists of one length"
            if not isinstance(stats.get("coefficients"), int):
                problem = f"{name}: no number of coefficients"
            for key in PER_LAYER:
                if key in stats and not _per_layer_values(stats[key], len(summary["layers"]), key):
                    each = "a row of quantiles" if key == "magnitude_quantiles" else "one value"
                    problem = f"{name}: {key} does not hold {each} per layer ({len(summary['layers'])} layers)"
    if problem:
        raise StorageError(f"{option} {path} is not a summary of nsp summarize (damaged?): {problem}")
    return summary


def _per_layer_values(values, layers: int, key: str) -> bool:
    """Whether ``values`` holds one finite number per layer (a row of four, of the quantiles, for
    ``magnitude_quantiles``)."""
    if not isinstance(values, list) or len(values) != layers:
        return False
    if key == "magnitude_quantiles":
        rows = [v for v in values if isinstance(v, list) and len(v) == 4]
        return len(rows) == layers and all(isinstance(x, (int, float)) for row in rows for x in row)
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)


VISUALIZE = Stage("visualize", visualize, "draw the configured sample's pattern and spectra (PDF, layer layout)", (
    option("--activations", required=True, help="first activations shard"),
    option("--out", help="pattern PDF"),
    option("--spectra", nargs="*", help="spectra shards of the same samples"),
    option("--spectra-out", nargs="*", dest="spectra_out",
           help="one PDF per --spectra file (default: spectrum_<type>.pdf beside --out)"),
    option("--transformer", help="a fitted transform of the same network, for --filtered-out"),
    option("--filtered-out", dest="filtered_out", help="PDF of the sample's pattern synthesised from its largest "
           "coefficients only (config key visualize.keep)")))


def _figure_kinds() -> list[str]:
    from nsp.pipeline.figures import FIGURES
    return list(FIGURES)


FIGURES_STAGE = Stage("figures", figures, "one paper figure, as PDF and PNG: energy compaction of every model, "
                      "energy or sparsity per layer of one model, or the class means of one series", (
    option("--kind", required=True, choices=_figure_kinds),
    option("--summaries", nargs="+", help="summary files (JSON): every model's for compaction, one for "
           "energy and sparsity"),
    option("--class-means", dest="class_means", help="class-means file (HDF5), for class_means"),
    option("--model", help="the model's name, for class_means"),
    option("--out", required=True, help="the PDF (the PNG is written beside it)")), config="optional")
