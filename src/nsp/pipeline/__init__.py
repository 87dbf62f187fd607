"""The command line (one subcommand per pipeline stage) and what it needs: config, datasets, training."""
