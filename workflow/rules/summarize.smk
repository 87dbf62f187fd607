rule summarize:
    input:
        config=CONFIG,
        activations=lambda w: shards(f"{R}/activations/{{model}}/{{dataset}}/shard_{{shard}}.h5", w.model),
        spectra=lambda w: shards(f"{R}/spectra/{{model}}/{{dataset}}/{{transform}}/shard_{{shard}}.h5", w.model,
                                 transform=TRANSFORMS_OF[w.model]),
        metrics=training_metrics,
    output:
        summary=f"{R}/summary/{{model}}/{{dataset}}/summary.json",
        class_means=directory(f"{R}/summary/{{model}}/{{dataset}}/class_means"),
    params:
        metrics=metrics_option,
    log:
        f"{R}/logs/summarize/{{model}}_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/summarize/{{model}}_{{dataset}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=30,
    shell:
        "nsp summarize --config {input.config:q} --model {wildcards.model:q} --activations {input.activations:q} "
        "--spectra {input.spectra:q} {params.metrics} --out {output.summary:q} --class-means-dir {output.class_means:q} "
        "--threads {threads} 2> {log:q}"
