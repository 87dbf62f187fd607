"""The ``nsp`` command line: one subcommand per registered stage (:data:`nsp.pipeline.stages.STAGES`).

Every stage is a thin layer over the library; the Snakemake rules in ``workflow/`` call these commands, and
each also works by hand (``--help``). This module builds the parser from the registry, loads the config and
runs the stage. An :class:`nsp.errors.NspError` (bad input: a config key, a missing or damaged file, an
option, an output the file system refuses) is printed as one line, ``nsp <stage>: error: ...``, with exit
status 2. Any other exception is a bug and keeps its traceback (exit status 1). SIGTERM exits with status
143 and leaves no partial output (:mod:`nsp.pipeline.sigterm`).
"""

from __future__ import annotations

import argparse
import os
import sys

from nsp import __version__, plugins
from nsp.errors import NspError
from nsp.pipeline import config as configuration
from nsp.pipeline.sigterm import exit_on_sigterm
from nsp.pipeline.stages import STAGES
from nsp.pipeline.stages.common import distinct_outputs

#: the help of ``--config``, by whether the stage needs one
CONFIG_HELP = {"required": "pipeline config (YAML)",
               "optional": "pipeline config (YAML), or this stage's part of one: the plugins it lists are loaded"}


#: the most torch/BLAS threads a job may ask for (as config key threads)
MAX_THREADS = 1024


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {MAX_THREADS}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered stage, in the registry's order (call it after loading plugins)."""
    parser = argparse.ArgumentParser(prog="nsp", description="Neural-network signal processing: activation "
                                     "patterns of PyTorch networks as signals on their neuron DAG.")
    parser.add_argument("--version", action="version", version=f"nsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for stage in STAGES.values():
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        if stage.config != "none":
            p.add_argument("--config", required=stage.config == "required", help=CONFIG_HELP[stage.config])
        p.add_argument("--threads", type=_threads, default=1, help=f"torch and BLAS threads, 1 to {MAX_THREADS} (default 1)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        for option in stage.options:
            settings = dict(option.settings)
            if callable(settings.get("choices")):
                settings["choices"] = settings["choices"]()
            p.add_argument(*option.flags, **settings)
    return parser


def _load_plugins(argv: list) -> None:
    """Import the plugins that the ``--config`` file in ``argv`` lists, before the parser is built, so that
    the stages, figure kinds and other entries they add are offered as choices."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    path = pre.parse_known_args(argv)[0].config
    if path:
        config = configuration.read_yaml(path)
        plugins.load(config.get("plugins") if isinstance(config, dict) else None)


def main(argv=None) -> int:
    """Run ``nsp`` with the arguments ``argv`` (default: the process's); returns the exit status."""
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")   # jobs on cluster file systems (NFS, Lustre)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = f"nsp {argv[0]}" if argv and not argv[0].startswith("-") else "nsp"
    unraisablehook = sys.unraisablehook
    sigterm = exit_on_sigterm()
    try:
        try:
            _load_plugins(argv)
            args = build_parser().parse_args(argv)
            command = f"nsp {args.command}"
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):     # torch, wherever the stage imports it
                os.environ[name] = str(args.threads)
            distinct_outputs(args)
            cfg = configuration.load(args.config, args.command) if getattr(args, "config", None) else None
            STAGES[args.command].function(args, cfg)
        except Exception as err:
            if sigterm["signal"]:                # an error that the SIGTERM caused
                return 128 + sigterm["signal"]
            if not isinstance(err, NspError):
                raise
            print(f"{command}: error: {err}", file=sys.stderr)
            return 2
        return 128 + sigterm["signal"] if sigterm["signal"] else 0   # a SIGTERM whose SystemExit got lost
    finally:
        sys.unraisablehook = unraisablehook


if __name__ == "__main__":
    sys.exit(main())
