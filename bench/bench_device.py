"""Every registered transform on a torch device against the same transform on the CPU.

Prints, per transform, the largest coefficient-wise difference between the device path and the NumPy/SciPy
path (relative to each coefficient's own magnitude, floored at 1e-300), the round trip on the device, and
forward times on both. Run where a GPU is: ``python bench/bench_device.py [device]`` (default cuda).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

import nsp
from nsp import zoo


def timed(fn, repeats: int = 3):
    fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def coefficientwise(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)))


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    torch.manual_seed(0)
    cases = [("digits_cnn", zoo.build("digits_cnn").eval(), (1, 8, 8), "ops", ["standard", "laplacian", "sem"]),
             ("vgg width 4", zoo.VGGNet(width=4).eval(), (3, 32, 32), "children", ["standard", "sem"])]
    print(f"device {device} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'}), "
          f"torch {torch.__version__}")
    for name, net, shape, trace, types in cases:
        x = torch.rand((64, *shape))
        signals = nsp.record(net, x, trace).values(np.float64)
        core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1], trace=trace))
        print(f"{name}: {core.n_nodes:,} nodes, batch {signals.shape[0]}")
        for type in types:
            transform = nsp.make_transform(type).fit(core)
            t_cpu, cpu = timed(lambda: transform.transform(signals))
            t_dev, dev = timed(lambda: transform.transform(signals, device=device))
            back = transform.inverse_transform(dev, device=device)
            scale = np.max(np.abs(signals))
            print(f"  {type:<10} {transform.summary()}")
            print(f"             device vs CPU: coefficient-wise rel. diff {coefficientwise(dev, cpu):.1e}, "
                  f"{np.max(np.abs(dev - cpu)) / np.max(np.abs(cpu)):.1e} of max|c|; "
                  f"round trip on device {np.max(np.abs(back - signals)) / scale:.1e} of max|s|; "
                  f"forward {t_cpu * 1e3:.1f} ms CPU, {t_dev * 1e3:.1f} ms {device} (ratio {t_cpu / t_dev:.1f}x)")


if __name__ == "__main__":
    main()
