"""How much memory a step may use, and the error for a step that would not fit.

nsp estimates what a memory-heavy step needs from the graph before it starts and refuses with the figure
rather than let the kernel kill the process. The budget is the smallest of: ``NSP_MEMORY_MB`` where set,
the memory limit of this process's cgroup (what SLURM and containers enforce), the memory the kernel
reports available (``MemAvailable``) and the room left under ``RLIMIT_AS``.
"""

from __future__ import annotations

import os
import resource

from nsp.errors import ConfigError, MemoryBudgetError

GB = 1 << 30


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroup_room() -> int | None:
    """Bytes the cgroup (v2 or v1) of this process may still allocate, where it has a limit."""
    own = _read("/proc/self/cgroup") or ""
    for line in own.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":                                   # cgroup v2
            mount, limit, usage = "/sys/fs/cgroup", "memory.max", "memory.current"
        elif "memory" in controllers.split(","):                # cgroup v1
            mount, limit, usage = "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        # the process's own group, or the mount's root where a cgroup namespace hides the path (containers)
        for base in (mount + path.rstrip("/"), mount):
            text = _read(os.path.join(base, limit))
            if text is None:
                continue
            if text.strip() == "max" or int(text) >= 1 << 60:  # no limit (v1 writes a huge number)
                break
            used = _read(os.path.join(base, usage))
            return max(int(text) - (int(used) if used else 0), 0)
    return None


def _available() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _address_room() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmSize:"):
            return max(soft - int(line.split()[1]) * 1024, 0)
    return soft


def budget() -> int:
    """Bytes a step of this process may allocate (see the module docstring); at least 64 MiB."""
    figures = [_cgroup_room(), _available(), _address_room()]
    setting = os.environ.get("NSP_MEMORY_MB")
    if setting:
        try:
            figures.append(int(float(setting) * (1 << 20)))
        except ValueError:
            raise ConfigError(f"NSP_MEMORY_MB must be a number of megabytes; got {setting!r}") from None
    known = [f for f in figures if f is not None]
    return max(min(known), 64 << 20) if known else 1 << 62


def gb(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB"


def check(need: int, what: str, alternatives: str, limit: int | None = None) -> None:
    """Raise :class:`MemoryBudgetError` where ``need`` bytes exceed ``limit`` (default: :func:`budget`)."""
    limit = budget() if limit is None else limit
    if need > limit:
        raise MemoryBudgetError(f"{what} needs at least {gb(need)} of memory; this process may use "
                                f"{gb(limit)} (NSP_MEMORY_MB, the cgroup/SLURM limit or the free memory). "
                                f"{alternatives}")
