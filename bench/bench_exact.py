"""Exact vs float standard transform: time per sample, the float path's error, and the round trip.

For VGG- and ResNet-style nets of about 15k, 100k and 1M neurons (random weights, random inputs), in one
run: exact and float forward time per sample (factored path), their ratio, how many primes the exact path
needed, the share of float coefficients that are not the correctly rounded value (and that are off by more
than 1e-6 relative), the peak memory of the process, and the round trip ``inverse(forward(s))`` with both
steps exact (lossy only because the spectrum is rounded to float64 in between).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch

import nsp
from nsp import zoo

CASES = [("vgg", {"width": 1}, 64), ("vgg", {"width": 8}, 64), ("resnet", {"width": 8, "blocks": 1}, 64),
         ("vgg", {"width": 80}, 16), ("resnet", {"width": 32, "blocks": 2}, 16)]


def best(fn, repeats: int = 2):
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    torch.set_num_threads(2)
    quick = "--quick" in sys.argv
    print(f"{'net':<7}{'options':<20}{'neurons':>10}{'batch':>6}{'primes':>7}{'exact ms':>10}{'float ms':>10}"
          f"{'ratio':>7}{'float wrong':>12}{'>1e-6 rel':>10}{'round trip':>11}{'peak MiB':>9}")
    for arch, options, batch in CASES[:2] if quick else CASES:
        torch.manual_seed(0)
        net = (zoo.VGGNet if arch == "vgg" else zoo.ResNet)(**options).eval()
        trace = "ops" if arch == "resnet" else "children"
        core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.rand(1, 3, 32, 32), trace=trace))
        signals = nsp.record(net, torch.rand(batch, 3, 32, 32), trace).values(np.float64)
        exact_t = nsp.StandardTransform().fit(core)
        float_t = nsp.StandardTransform(precision="float").fit(core)
        t_exact, c = best(lambda: exact_t.transform(signals), 1)
        t_float, f = best(lambda: float_t.transform(signals))
        primes = exact_t.exact_primes(signals)
        wrong = np.mean(f != c)
        far = np.mean(np.abs(f - c) > 1e-6 * np.abs(c))
        back = exact_t.inverse_transform(c)
        trip = np.max(np.abs(back - signals)) / np.max(np.abs(signals))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{arch:<7}{','.join(f'{k}={v}' for k, v in options.items()):<20}{core.n_nodes:>10,}{batch:>6}"
              f"{primes:>7}{1e3 * t_exact / batch:>10.1f}{1e3 * t_float / batch:>10.2f}{t_exact / t_float:>7.0f}"
              f"{wrong:>12.1%}{far:>10.1%}{trip:>11.1e}{peak:>9.0f}", flush=True)
    print("exact ms / float ms: forward time per sample (factored path, 2 threads); float wrong: share of float "
          "coefficients that differ from the correctly rounded exact value; round trip: max|inverse(forward(s)) "
          "- s| / max|s| with both steps exact")


if __name__ == "__main__":
    main()
