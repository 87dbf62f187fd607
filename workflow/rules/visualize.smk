rule visualize:
    input:
        config=CONFIG,
        activations=f"{R}/activations/{{model}}/{{dataset}}/shard_0.h5",
        spectra=expand(f"{R}/spectra/{{{{model}}}}/{{{{dataset}}}}/{{transform}}/shard_0.h5", transform=TRANSFORMS),
    output:
        pattern=report(f"{R}/figures/{{model}}/{{dataset}}/pattern.pdf", caption="../report/pattern.rst",
                       category="Patterns", subcategory="{model}"),
        spectra=report(expand(f"{R}/figures/{{{{model}}}}/{{{{dataset}}}}/spectrum_{{transform}}.pdf",
                              transform=TRANSFORMS),
                       caption="../report/spectrum.rst", category="Patterns", subcategory="{model}"),
    log:
        f"{R}/logs/visualize/{{model}}_{{dataset}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nsp visualize --config {input.config} --activations {input.activations} --spectra {input.spectra} "
        "--out {output.pattern} 2> {log}"
