rule collect_activations:
    input:
        config=part("collect-activations/{model}"),
        weights=weights,
        graph=f"{R}/models/{{model}}/graph.h5",     # read for the job's resources only
    output:
        f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5",
    log:
        f"{R}/logs/collect_activations/{{model}}/{{dataset}}/shard_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/collect_activations/{{model}}/{{dataset}}/shard_{{shard}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.collect_activations_mb(
            input.graph, config["shard_size"], SHARDS[wildcards.model] * config["shard_size"], attempt),
        runtime=lambda wildcards, input, attempt: nsp_resources.collect_activations_runtime(
            input.graph, config["shard_size"], attempt),
    shell:
        "nsp collect-activations --config {input.config:q} --model {wildcards.model:q} --weights {input.weights:q} "
        "--shard {wildcards.shard:q} --out {output:q} --threads {threads} 2> {log:q}"
