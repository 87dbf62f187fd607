rule figures:
    input:
        config=CONFIG,
        summaries=[f"{R}/summary/{m}/{DATASET[m]}/summary.json" for m in MODELS],
        class_means=[f"{R}/summary/{m}/{DATASET[m]}/class_means" for m in MODELS],
    output:
        report(directory(f"{R}/figures/paper"), caption="../report/figures.rst", category="Figures",
               patterns=["{name}.png"]),
    log:
        f"{R}/logs/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "nsp figures --config {input.config:q} --summaries {input.summaries:q} --class-means {input.class_means:q} "
        "--out-dir {output:q} 2> {log:q}"
