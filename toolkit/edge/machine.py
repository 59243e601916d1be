"""What a bench row was measured on: portable machine facts (psutil) and a label that tells machines apart.

psutil reads memory and core counts the same way on Linux, macOS and Windows; it has no CPU model
name, so that one is read best-effort per system (/proc/cpuinfo, sysctl, the Windows registry),
falling back to what `platform` knows.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..core.io import tool_versions

RUNTIME_PACKAGES = ("ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow", "keras", "numpy", "pillow")


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13 64-Core Processor", "Apple M2", a Pi's board), or the arch."""
    name = ""
    try:
        if sys.platform.startswith("linux"):
            info = Path("/proc/cpuinfo").read_text(errors="replace")
            # x86: "model name"; Raspberry Pi: "Model" (the board) or "Hardware"; other arm: none of them.
            for key in ("model name", "Model", "Hardware"):
                found = [
                    line.split(":", 1)[1].strip()
                    for line in info.splitlines()
                    if ":" in line and line.split(":", 1)[0].strip() == key
                ]
                if found and found[0]:
                    name = found[0]
                    break
        elif sys.platform == "darwin":
            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        elif sys.platform == "win32":
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                name = str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
    except (OSError, subprocess.SubprocessError, ImportError):
        pass  # best effort: the fallback below still names something
    return name or platform.processor() or platform.machine() or "unknown CPU"


# The CPU features that decide which kernels a runtime picks (x86: AVX2/AVX-512/VNNI/AMX; Arm: NEON
# (asimd), dot product, int8 matrix multiply, fp16, SVE): named beside every latency or parity figure.
KERNEL_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip


def cpu_flags() -> list[str]:
    """KERNEL_FLAGS this CPU has, from /proc/cpuinfo (x86 "flags", Arm "Features"); [] where unknown."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace") if sys.platform.startswith("linux") else ""
    except OSError:
        return []
    found: set[str] = set()
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return [flag for flag in KERNEL_FLAGS if flag in found]


def short_cpu(name: str) -> str:
    """The CPU name without trademark signs, clock and filler words, for labels."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"@\s*[\d.]+\s*GHz", "", name)
    name = re.sub(r"\b(CPU|Processor|with Radeon Graphics)\b", "", name)
    return " ".join(name.split()) or "unknown CPU"


def _os_name() -> str:
    name = platform.platform()
    try:
        release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        name = release.get("PRETTY_NAME", name).strip('"')
    except OSError:
        pass  # not Linux, or a minimal image: platform's string is enough
    return name


def machine_info() -> dict[str, Any]:
    """Host, CPU, cores, memory, OS and runtime versions, so files from a laptop and a Pi can be compared."""
    import psutil

    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical  # None where the OS does not say
    try:
        load = [round(x, 2) for x in psutil.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {
        "host": platform.node() or "unknown host",
        "cpu": cpu_model(),
        "cores": physical,
        "logical_cores": logical,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": _os_name(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": tool_versions(*RUNTIME_PACKAGES),
        "load_avg": load,
    }


def machine_label(machine: dict[str, Any]) -> str:
    """host (CPU, cores): two VMs both called "vm" still differ by CPU or core count."""
    cores = machine.get("cores", "?")
    logical = machine.get("logical_cores")
    count = f"{cores} cores" + (f"/{logical} threads" if logical and logical != cores else "")
    cpu = short_cpu(str(machine.get("cpu") or machine.get("arch") or "?"))
    return f"{machine.get('host', '?')} ({cpu}, {count})"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the child calls it after its first prediction).

    psutil has no peak on Linux, and getrusage's ru_maxrss survives execve there: a bench child
    would report its parent's peak (a TensorFlow-laden 1.2 GB for a 0.1 MB model). VmHWM belongs
    to the process's own memory map, which exec replaces.
    """
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass  # no /proc mounted: psutil's current RSS below
    if sys.platform == "win32" or sys.platform.startswith("linux"):
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20  # Windows keeps the peak working set
    import resource  # macOS and the BSDs

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS: bytes; BSD: KiB
