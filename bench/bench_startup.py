"""Start-up of the command line and of each pipeline stage, against a reference revision.

Every pipeline job is a fresh process, so what a stage imports before it works counts once per job. This
runs ``nsp --help`` and every stage of the pipeline on a tiny model (the digits MLP, 16 samples), each in
a fresh interpreter, for this tree and for a reference revision checked out into a temporary worktree
(``--reference``, default ``HEAD``), interleaved, and prints the median wall time of each and the ratio.
On such small inputs a stage's time is almost all start-up: imports, config checks, opening files.

    python bench/bench_startup.py --reference 7f10287 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
datasets: {digits: {source: sklearn-digits, limit: 16}}
models: {mlp: {architecture: digits_mlp, dataset: digits, epochs: 1}}
transforms: {standard: {}, laplacian: {k: 8}, sem: {}}
shard_size: 16
"""
RUN = "import sys; from nsp.pipeline.cli import main; sys.exit(main())"


def stages() -> list[tuple[str, list[str]]]:
    """(label, arguments) of each command, in pipeline order (later ones read earlier ones' files)."""
    c = ["--config", "c.yaml", "--quiet"]
    out = [("nsp --help", ["--help"]),
           ("train", ["train", *c, "--model", "mlp", "--out", "w.npz", "--metrics", "m.json"]),
           ("extract-graph", ["extract-graph", *c, "--model", "mlp", "--weights", "w.npz", "--out", "g.h5"]),
           ("collect-activations", ["collect-activations", *c, "--model", "mlp", "--weights", "w.npz", "--shard",
                                    "0", "--out", "a.h5"])]
    for t in ("standard", "laplacian", "sem"):
        out.append((f"compute-transformer {t}", ["compute-transformer", *c, "--graph", "g.h5", "--transform", t,
                                                  "--out", f"t_{t}.h5"]))
        out.append((f"transform {t}", ["transform", *c, "--activations", "a.h5", "--transformer", f"t_{t}.h5",
                                        "--out", f"s_{t}.h5"]))
    out += [("summarize", ["summarize", *c, "--model", "mlp", "--activations", "a.h5", "--spectra", "s_standard.h5",
                           "s_laplacian.h5", "s_sem.h5", "--out", "summary.json"]),
            ("class-means", ["class-means", "--quiet", "--signals", "a.h5", "--out", "means.h5"]),
            ("figures energy", ["figures", "--quiet", "--kind", "energy", "--summaries", "summary.json", "--out",
                                "energy.pdf"]),
            ("visualize", ["visualize", *c, "--activations", "a.h5", "--out", "pattern.pdf"])]
    return out


def run_once(src: Path, folder: Path, args: list[str]) -> float:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HDF5_USE_FILE_LOCKING": "FALSE",
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, *args], cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0,) and args != ["--help"]:
        raise SystemExit(f"{src}: nsp {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference = tmp / "reference"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(reference),
                        args.reference], check=True)
        try:
            trees = {"this tree": ROOT / "src", f"reference {args.reference}": reference / "src"}
            folders = {}
            for name in trees:
                folders[name] = tmp / name.replace(" ", "_")
                folders[name].mkdir()
                (folders[name] / "c.yaml").write_text(CONFIG)
            times = {name: {} for name in trees}
            for label, command in stages():
                for _ in range(args.repeats):
                    for name, src in trees.items():       # interleaved: drift hits both alike
                        times[name].setdefault(label, []).append(run_once(src, folders[name], command))
            ours, ref = trees
            print(f"{'command':28s} {'this tree':>10s} {'reference':>10s} {'ratio':>7s}   (median of {args.repeats}, s)")
            for label, _ in stages():
                a, b = statistics.median(times[ours][label]), statistics.median(times[ref][label])
                print(f"{label:28s} {a:10.3f} {b:10.3f} {a / b:7.2f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(reference)], check=False)


if __name__ == "__main__":
    main()
