rule extract_graph:
    input:
        config=part("extract-graph/{model}"),
        weights=weights,
    output:
        f"{R}/models/{{model}}/graph.h5",
    log:
        f"{R}/logs/extract_graph/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/extract_graph/{{model}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=30,
    shell:
        "nsp extract-graph --config {input.config:q} --model {wildcards.model:q} --weights {input.weights:q} "
        "--out {output:q} --threads {threads} 2> {log:q}"


rule compute_transformer:
    input:
        config=part("compute-transformer/{transform}"),
        graph=f"{R}/models/{{model}}/graph.h5",
    output:
        f"{R}/models/{{model}}/transformer_{{transform}}.h5",
    log:
        f"{R}/logs/compute_transformer/{{model}}/{{transform}}.log",
    benchmark:
        f"{R}/benchmarks/compute_transformer/{{model}}/{{transform}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.compute_transformer_mb(
            input.graph, wildcards.transform, config["transforms"][wildcards.transform], attempt),
        runtime=60,
    shell:
        "nsp compute-transformer --config {input.config:q} --graph {input.graph:q} --transform {wildcards.transform:q} "
        "--out {output:q} --threads {threads} 2> {log:q}"
