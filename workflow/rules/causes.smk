# What caused each model's patterns, with each transform of causes.transforms it runs: per-layer
# contributions to the predicted class and reconstruction from sampled neurons (nsp causes), read into the
# model's summary.
rule causes:
    input:
        config=part("causes"),
        transformer=lambda w: f"{R}/models/{w.model}/transformer_{w.transform}.h5",
        activations=lambda w: shards(f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5", w.model),
    output:
        f"{R}/summary/{{model}}/{{dataset}}/causes_{{transform}}.json",
    log:
        f"{R}/logs/causes/{{model}}/{{dataset}}/{{transform}}.log",
    benchmark:
        f"{R}/benchmarks/causes/{{model}}/{{dataset}}/{{transform}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.causes_mb(input.transformer, input.activations,
                                                                         config["causes"], attempt),
        runtime=30,
    shell:
        "nsp causes --config {input.config:q} --model {wildcards.model:q} --transformer {input.transformer:q} "
        "--activations {input.activations:q} --out {output:q} --threads {threads} 2> {log:q}"
