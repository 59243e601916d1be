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

from ..core.formats import runtime_packages
from ..core.io import tool_versions

# Whatever runs a format of core/formats.FORMATS, and numpy/Pillow: the versions a bench row depends on.
RUNTIME_PACKAGES = runtime_packages()
# The instruction sets that decide which runtime and precision win (/proc/cpuinfo's names): int8 dot
# products (VNNI on x86, dotprod/i8mm on ARM), bf16 (AVX-512 BF16, AMX), wide vectors (AVX-512).
CPU_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimd": "NEON",
    "asimddp": "DOTPROD",
    "i8mm": "I8MM",
    "bf16": "BF16",
    "sve": "SVE",
}


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


def cpu_flags() -> list[str]:
    """The CPU_FLAGS this CPU has, in CPU_FLAGS order (Linux: /proc/cpuinfo; macOS arm64: NEON and
    dot product are part of the architecture); [] where the system does not say."""
    found: set[str] = set()
    if sys.platform.startswith("linux"):
        try:
            info = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []
        for line in info.splitlines():
            key = line.split(":", 1)[0].strip()
            if ":" in line and key in ("flags", "Features"):  # x86 "flags", ARM "Features"
                found |= set(line.split(":", 1)[1].split())
    elif sys.platform == "darwin" and platform.machine() == "arm64":
        found = {"asimd", "asimddp"}
    return [label for flag, label in CPU_FLAGS.items() if flag in found]


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

    # Each fact best effort: a container or an emulated root without /proc has none of them, and a
    # machine's description must never stop the measurement it describes.
    logical = _fact(lambda: psutil.cpu_count(logical=True)) or os.cpu_count() or 1
    physical = _fact(lambda: psutil.cpu_count(logical=False)) or logical  # None where the OS does not say
    load = _fact(lambda: [round(x, 2) for x in psutil.getloadavg()])
    memory = _fact(lambda: round(psutil.virtual_memory().total / 2**30, 1))
    return {
        "host": platform.node() or "unknown host",
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": physical,
        "logical_cores": logical,
        "memory_gb": memory,
        "os": _os_name(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": tool_versions(*RUNTIME_PACKAGES),
        "load_avg": load,
    }


def _fact(read: Any) -> Any:
    try:
        return read()
    except (OSError, AttributeError, RuntimeError):
        return None


def machine_label(machine: dict[str, Any]) -> str:
    """host (CPU, cores): two VMs both called "vm" still differ by CPU or core count."""
    cores = machine.get("cores", "?")
    logical = machine.get("logical_cores")
    count = f"{cores} cores" + (f"/{logical} threads" if logical and logical != cores else "")
    cpu = short_cpu(str(machine.get("cpu") or machine.get("arch") or "?"))
    return f"{machine.get('host', '?')} ({cpu}, {count})"


def flags_text(machine: dict[str, Any]) -> str:
    """'CPU flags AVX2 FMA' for a table title; bench files of older tk recorded none."""
    flags = machine.get("cpu_flags")
    if flags is None:
        return "CPU flags not recorded"
    return "CPU flags " + (" ".join(flags) if flags else "(none of those tk tracks)")


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

        try:
            info = psutil.Process().memory_info()
            return getattr(info, "peak_wset", info.rss) / 2**20  # Windows keeps the peak working set
        except (psutil.Error, OSError):
            if sys.platform == "win32":
                raise
            # Linux without /proc (a container, an emulated root): getrusage, with its execve caveat
    import resource  # macOS and the BSDs, and Linux without /proc

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS: bytes; BSD and Linux: KiB
