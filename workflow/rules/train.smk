rule train:
    input:
        config=part("train/{model}"),
    output:
        weights=f"{R}/models/{{model}}/weights.npz",
        metrics=f"{R}/models/{{model}}/training.json",
    log:
        f"{R}/logs/train/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{model}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nsp train --config {input.config:q} --model {wildcards.model:q} --out {output.weights:q} "
        "--metrics {output.metrics:q} --threads {threads} 2> {log:q}"
