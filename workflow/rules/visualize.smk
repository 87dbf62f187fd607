rule visualize:
    input:
        config=part("visualize"),
        activations=f"{R}/activations/{{model}}/{{dataset}}/shard_0.h5",
    output:
        report(f"{R}/figures/{{model}}/{{dataset}}/pattern.pdf", caption="../report/pattern.rst",
               category="Patterns", subcategory="{model}"),
    log:
        f"{R}/logs/visualize/{{model}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/visualize/{{model}}/{{dataset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp visualize --config {input.config:q} --activations {input.activations:q} --out {output:q} 2> {log:q}"


rule visualize_spectrum:
    input:
        config=part("visualize"),
        activations=f"{R}/activations/{{model}}/{{dataset}}/shard_0.h5",
        spectra=f"{R}/spectra/{{model}}/{{dataset}}/{{transform}}/shard_0.h5",
    output:
        report(f"{R}/figures/{{model}}/{{dataset}}/spectrum_{{transform}}.pdf", caption="../report/spectrum.rst",
               category="Patterns", subcategory="{model}"),
    log:
        f"{R}/logs/visualize_spectrum/{{model}}/{{dataset}}/{{transform}}.log",
    benchmark:
        f"{R}/benchmarks/visualize_spectrum/{{model}}/{{dataset}}/{{transform}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp visualize --config {input.config:q} --activations {input.activations:q} --spectra {input.spectra:q} "
        "--spectra-out {output:q} 2> {log:q}"


rule visualize_filtered:
    input:
        config=part("visualize"),
        activations=f"{R}/activations/{{model}}/{{dataset}}/shard_0.h5",
        transformer=f"{R}/models/{{model}}/transformer_{{transform}}.h5",
    output:
        report(f"{R}/figures/{{model}}/{{dataset}}/filtered_{{transform}}.pdf", caption="../report/filtered.rst",
               category="Patterns", subcategory="{model}"),
    log:
        f"{R}/logs/visualize_filtered/{{model}}/{{dataset}}/{{transform}}.log",
    benchmark:
        f"{R}/benchmarks/visualize_filtered/{{model}}/{{dataset}}/{{transform}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: nsp_resources.transform_mb(input.activations, input.transformer,
                                                                            attempt),
        runtime=10,
    shell:
        "nsp visualize --config {input.config:q} --activations {input.activations:q} "
        "--transformer {input.transformer:q} --filtered-out {output:q} 2> {log:q}"
