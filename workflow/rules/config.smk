rule resolve_config:
    localrule: True
    output:
        CONFIG,
    params:
        config=config,
    log:
        f"{R}/logs/resolve_config.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    run:
        nsp_config.dump(params.config, output[0])
        Path(log[0]).write_text(f"wrote {output[0]}\n")
