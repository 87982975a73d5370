"""Device choice (CUDA, then Apple MPS, then CPU) and the autocast precision to run at."""
from __future__ import annotations

import functools
import platform
from typing import Optional

import torch

from .errors import InputError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; `cpu`, `cuda`, `cuda:N`, `mps` are checked to exist."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device '{name}' is not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device '{name}': CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not _mps_available():
        raise InputError(f"device '{name}': Apple MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device '{name}' is not supported (auto, cpu, cuda, cuda:N, mps)")
    return device


def autocast_dtype(device: torch.device, precision: str = "auto") -> Optional[torch.dtype]:
    """The autocast dtype, or None for plain float32.

    `auto` means fp16 on CUDA, bf16 on a CPU that computes in bf16 natively (`cpu_has_native_bf16`), float32
    elsewhere (MPS, older CPUs, where bf16 is emulated and slower). On CUDA fp16 keeps 10 mantissa bits where
    bf16 keeps 7: measured on an H100 (Training/benchmarks/results/translate_cuda_h100.json) bf16 autocast put
    errors of up to a third of the intensity range into a CycleGAN ResNet's output, fp16 under 4 %, for 10-25 %
    more speed; on an H200 with the shipped 1 mm models (translate_cuda_h200.json) bf16 erred by up to 2.5
    and 7.9 % of the range, fp16 by 0.19 and 1.2 %, as much as CUDA's own float32 (TF32 convolutions). CPU
    autocast has no fp16 path worth taking, so there `auto` is bf16; a card measured to lose accuracy in bf16
    says `precision: fp32` (Training/benchmarks/benchmark_precision.py).
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision '{precision}' is unknown ({', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if device.type == "mps":
        return torch.float16 if precision == "fp16" else None
    return torch.float16 if precision == "fp16" else torch.bfloat16


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the processor has bf16 arithmetic (x86: AVX512-BF16 or AMX-BF16; Arm: BF16), as Linux's
    /proc/cpuinfo reports it; False where it cannot be told (other systems), so nothing is guessed."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        return False
    return False


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_devices() -> list:
    """[(name, label)] for a device chooser: auto, every CUDA GPU with its memory, MPS, CPU."""
    choices = [("auto", "Auto")]
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        choices.append((f"cuda:{index}", f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"))
    if _mps_available():
        choices.append(("mps", "Apple MPS"))
    choices.append(("cpu", "CPU"))
    return choices
