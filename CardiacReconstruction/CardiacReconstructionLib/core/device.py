"""Choosing the torch device: 'auto' prefers CUDA, and everything falls back to the CPU."""

from __future__ import annotations

from .errors import InputError

DEVICE_CHOICES = ("auto", "cuda", "cpu")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a CUDA device is usable, else 'cpu'; 'cuda' without one is an error."""
    device = (device or "auto").lower()
    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise InputError(f"Unknown device {device!r}; expected one of {', '.join(DEVICE_CHOICES)}.")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device == "auto":
        return "cpu"
    raise InputError("CUDA was requested but no CUDA device is available to this PyTorch "
                     f"({torch.__version__}); choose 'auto' or 'cpu'.")


def describe() -> str:
    """One line for users: detected device, torch version and CUDA build."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    cuda = torch.version.cuda or "none (CPU build)"
    if torch.cuda.is_available():
        dev = f"CUDA: {torch.cuda.get_device_name(0)}"
    else:
        dev = "CPU only"
    return f"{dev}; torch {torch.__version__}, CUDA build {cuda}"
