rule summarize:
    input:
        config=part("summarize"),
        activations=lambda w: shards(f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5", w.model),
        spectra=lambda w: shards(f"{R}/spectra/{{model}}/{{dataset}}/{{transform}}/shard_{{shard}}.h5", w.model,
                                 transform=TRANSFORMS_OF[w.model]),
        metrics=training_metrics,
        causes=causes_records,
    output:
        f"{R}/summary/{{model}}/{{dataset}}/summary.json",
    params:
        metrics=metrics_option,
        causes=causes_option,
    log:
        f"{R}/logs/summarize/{{model}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/summarize/{{model}}/{{dataset}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.summarize_mb(input.activations, input.spectra, attempt),
        runtime=30,
    shell:
        "nsp summarize --config {input.config:q} --model {wildcards.model:q} --activations {input.activations:q} "
        "--spectra {input.spectra:q} {params.metrics} {params.causes} --out {output:q} --threads {threads} 2> {log:q}"


rule class_means:
    input:
        series_shards,
    output:
        f"{R}/summary/{{model}}/{{dataset}}/class_means_{{series}}.h5",
    log:
        f"{R}/logs/class_means/{{model}}/{{dataset}}/{{series}}.log",
    benchmark:
        f"{R}/benchmarks/class_means/{{model}}/{{dataset}}/{{series}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.class_means_mb(input, attempt),
        runtime=10,
    shell:
        "nsp class-means --signals {input:q} --out {output:q} 2> {log:q}"
