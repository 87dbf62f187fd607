"""Checking a requested torch device before any work is done on it (torch is imported only when one is asked for)."""

from __future__ import annotations

from nsp.errors import InputError, InputTypeError

#: what :func:`torch_device` accepts, for messages
ACCEPTED = "None (NumPy on the CPU), 'cpu', 'cuda', 'cuda:N' (N a GPU index) or a torch.device of those"


def torch_device(device, what: str = "device"):
    """``device`` as a ``torch.device``, or None where it is None (NumPy on the CPU).

    Raises ValueError for a device nsp does not compute on (only the CPU and CUDA GPUs), for CUDA on a
    machine without it and for a GPU index the machine does not have; TypeError for anything but None, a
    string or a ``torch.device``. ``what`` starts the messages (the CLI names its config key).
    """
    if device is None:
        return None
    import torch
    if not isinstance(device, (str, torch.device)):
        raise InputTypeError(f"{what} must be {ACCEPTED}; got {type(device).__name__} {device!r}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise InputError(f"{what} {str(device)!r} is not a device nsp computes on; accepted: {ACCEPTED}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{what} {str(device)!r} requested but no CUDA device is available on this machine "
                             f"(torch.cuda.is_available() is False); use 'cpu' instead")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise InputError(f"{what} {str(device)!r} requested but this machine has {count} CUDA "
                             f"device{'s' if count != 1 else ''} ({have})")
    return parsed
