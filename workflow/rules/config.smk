rule resolve_config:
    localrule: True
    output:
        CONFIG,
    params:
        text=nsp_config.dump_text(config),
    log:
        f"{R}/logs/resolve_config.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    run:
        nsp_config.write_text(params.text, output[0], log[0])


# One file per stage's part of the config (rerun when, and only when, its text changes: Snakemake's
# params trigger), so a job reruns only when what it reads has changed.
rule config_part:
    localrule: True
    output:
        part("{part}"),
    params:
        text=lambda wildcards: nsp_config.part_text(config, wildcards.part),
    log:
        f"{R}/logs/config_part/{{part}}.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    run:
        nsp_config.write_text(params.text, output[0], log[0])
