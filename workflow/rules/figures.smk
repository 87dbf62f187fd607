# The paper figures, one job each: a change reruns only the figures that show it. The rules know no figure
# kind by name: each takes the kinds of the figure registry (nsp.pipeline.figures.FIGURES, plugins' kinds
# included) that are drawn from one sort of input, and every job reads the figures part of the config, so that
# it loads the plugins too.

# kinds drawn from every model's summary: <kind>.pdf
rule paper_all_models:
    input:
        config=part("figures"),
        summaries=[f"{R}/summary/{m}/{DATASET[m]}/summary.json" for m in MODELS],
    output:
        pdf=f"{R}/figures/paper/{{kind}}.pdf",
        caption=f"{R}/figures/paper/{{kind}}.caption.md",
        png=report(f"{R}/figures/paper/{{kind}}.png", caption="../report/figures.rst", category="Figures"),
    wildcard_constraints:
        kind=nsp_figures.kinds_pattern("summaries"),
    log:
        f"{R}/logs/figures/{{kind}}.log",
    benchmark:
        f"{R}/benchmarks/figures/{{kind}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp figures --config {input.config:q} --kind {wildcards.kind:q} --summaries {input.summaries:q} "
        "--out {output.pdf:q} 2> {log:q}"


# kinds drawn from one model's summary: <kind>_<model>.pdf
rule paper_per_model:
    input:
        config=part("figures"),
        summary=lambda w: f"{R}/summary/{w.model}/{DATASET[w.model]}/summary.json",
    output:
        pdf=f"{R}/figures/paper/{{kind}}_{{model}}.pdf",
        caption=f"{R}/figures/paper/{{kind}}_{{model}}.caption.md",
        png=report(f"{R}/figures/paper/{{kind}}_{{model}}.png", caption="../report/figures.rst",
                   category="Figures"),
    wildcard_constraints:
        kind=nsp_figures.kinds_pattern("summary"),
    log:
        f"{R}/logs/figures/{{kind}}_{{model}}.log",
    benchmark:
        f"{R}/benchmarks/figures/{{kind}}_{{model}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp figures --config {input.config:q} --kind {wildcards.kind:q} --summaries {input.summary:q} "
        "--out {output.pdf:q} 2> {log:q}"


# kinds drawn from the class means of one series of one model: <kind>_<model>_<series>.pdf
rule paper_per_series:
    input:
        config=part("figures"),
        class_means=lambda w: f"{R}/summary/{w.model}/{DATASET[w.model]}/class_means_{w.series}.h5",
    output:
        pdf=f"{R}/figures/paper/{{kind}}_{{model}}_{{series}}.pdf",
        caption=f"{R}/figures/paper/{{kind}}_{{model}}_{{series}}.caption.md",
        png=report(f"{R}/figures/paper/{{kind}}_{{model}}_{{series}}.png", caption="../report/figures.rst",
                   category="Figures"),
    wildcard_constraints:
        kind=nsp_figures.kinds_pattern("class_means"),
    log:
        f"{R}/logs/figures/{{kind}}_{{model}}_{{series}}.log",
    benchmark:
        f"{R}/benchmarks/figures/{{kind}}_{{model}}_{{series}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp figures --config {input.config:q} --kind {wildcards.kind:q} --class-means {input.class_means:q} "
        "--model {wildcards.model:q} --out {output.pdf:q} 2> {log:q}"


# one page showing every paper figure with its caption: <results>/figures/paper/index.html
rule paper_gallery:
    input:
        figures=[f"{R}/figures/paper/{name}.png" for name in PAPER],
        captions=[f"{R}/figures/paper/{name}.caption.md" for name in PAPER],
    output:
        f"{R}/figures/paper/index.html",
    log:
        f"{R}/logs/figures/index.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "nsp gallery --figures {input.figures:q} --out {output:q} 2> {log:q}"
