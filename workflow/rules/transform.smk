rule transform:
    input:
        config=part("transform"),
        activations=f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5",
        transformer=f"{R}/models/{{model}}/transformer_{{transform}}.h5",
    output:
        f"{R}/spectra/{{model}}/{{dataset}}/{{transform}}/shard_{{shard}}.h5",
    log:
        f"{R}/logs/transform/{{model}}/{{dataset}}/{{transform}}/shard_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/transform/{{model}}/{{dataset}}/{{transform}}/shard_{{shard}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.transform_mb(input.activations, input.transformer,
                                                                           attempt),
        runtime=lambda wildcards, input, attempt: nsp_resources.transform_runtime(input.activations, attempt),
    shell:
        "nsp transform --config {input.config:q} --activations {input.activations:q} "
        "--transformer {input.transformer:q} --out {output:q} --threads {threads} 2> {log:q}"
