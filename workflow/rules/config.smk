# The config's parts (what each stage's jobs read: results/config/<part>.yaml) and the whole config (for
# the record: results/config.resolved.yaml) are written when the workflow reads the config, each only where
# its text changed. A changed part is then newer than the outputs of the jobs that read it, so exactly
# those jobs rerun, with or without Snakemake's records in .snakemake/.
for _written in nsp_config.sync_parts(config, R, hold=workflow.is_main_process):
    print(f"nsp: wrote {_written}", file=sys.stderr)
