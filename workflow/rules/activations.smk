rule collect_activations:
    input:
        config=part("collect-activations/{model}"),
        weights=weights,
    output:
        f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5",
    log:
        f"{R}/logs/collect_activations/{{model}}_{{dataset}}_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/collect_activations/{{model}}_{{dataset}}_{{shard}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=30,
    shell:
        "nsp collect-activations --config {input.config:q} --model {wildcards.model:q} --weights {input.weights:q} "
        "--shard {wildcards.shard:q} --out {output:q} --threads {threads} 2> {log:q}"
