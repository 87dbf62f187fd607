# The paper figures, one job each: a change reruns only the figures that show it.
rule paper_compaction:
    input:
        [f"{R}/summary/{m}/{DATASET[m]}/summary.json" for m in MODELS],
    output:
        pdf=f"{R}/figures/paper/compaction.pdf",
        png=report(f"{R}/figures/paper/compaction.png", caption="../report/figures.rst", category="Figures"),
    log:
        f"{R}/logs/figures/compaction.log",
    benchmark:
        f"{R}/benchmarks/figures/compaction.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp figures --kind compaction --summaries {input:q} --out {output.pdf:q} 2> {log:q}"


rule paper_per_model:
    input:
        lambda w: f"{R}/summary/{w.model}/{DATASET[w.model]}/summary.json",
    output:
        pdf=f"{R}/figures/paper/{{kind}}_{{model}}.pdf",
        png=report(f"{R}/figures/paper/{{kind}}_{{model}}.png", caption="../report/figures.rst",
                   category="Figures"),
    wildcard_constraints:
        kind="energy|sparsity",
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
        "nsp figures --kind {wildcards.kind:q} --summaries {input:q} --out {output.pdf:q} 2> {log:q}"


rule paper_class_means:
    input:
        lambda w: f"{R}/summary/{w.model}/{DATASET[w.model]}/class_means_{w.series}.h5",
    output:
        pdf=f"{R}/figures/paper/class_means_{{model}}_{{series}}.pdf",
        png=report(f"{R}/figures/paper/class_means_{{model}}_{{series}}.png", caption="../report/figures.rst",
                   category="Figures"),
    log:
        f"{R}/logs/figures/class_means_{{model}}_{{series}}.log",
    benchmark:
        f"{R}/benchmarks/figures/class_means_{{model}}_{{series}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp figures --kind class_means --class-means {input:q} --model {wildcards.model:q} --out {output.pdf:q} "
        "2> {log:q}"
