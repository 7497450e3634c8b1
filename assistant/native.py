"""The llama.cpp build behind the embedded model: compiled for this CPU, without the AMX kernels.

`pip install llama-cpp-python` compiles with ``-march=native``. On an Intel CPU with AMX, ggml then repacks the
weights into its AMX buffer and the server dies with SIGSEGV on its first matrix multiplication (llama.cpp issue
#20824, closed unfixed). So the install (``make``, through ``python -m assistant.native install``) builds it
natively *minus* AMX: ``-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16``. On a CPU without AMX that is
exactly the native build (same code, same speed); on one with AMX the matrix products take the AVX-512 path.

pip caches built wheels by package version only, not by compiler flags or CPU: a wheel built earlier with plain
``-march=native`` (or on another machine) would be reused silently. The installer therefore builds with
``--no-cache-dir`` and keeps its own wheel under a key made of the version, the flags, the compiler and the CPU's
feature flags (``~/.cache/paper-assistant/llama-cpp/<key>/``): a new CPU, new flags or a new version means a new
build, never a reused one.

Only the standard library is used here: it runs before the project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"  # keep equal to the pin in pyproject.toml
AMX_OFF = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
AMX_MACROS = ("__AMX_TILE__", "__AMX_INT8__", "__AMX_BF16__")
CPU_SUPPORT = "README.md, section “CPU support”"


def cmake_args() -> str:
    """CMAKE_ARGS for the build: native code generation with the AMX instruction sets switched off (x86-64)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "-DGGML_NATIVE=ON"
    flags = " ".join(AMX_OFF)
    return f"-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='{flags}' -DCMAKE_CXX_FLAGS='{flags}'"


def cpu_flags() -> str:
    """The CPU's vendor, model and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = ("vendor_id", "model name", "flags")
    seen: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in keep and key not in seen:
            seen[key] = " ".join(sorted(value.split())) if key == "flags" else value.strip()
    return "\n".join(f"{k}: {seen.get(k, '')}" for k in keep)


def has_amx() -> bool:
    return "amx_tile" in cpu_flags().split()


def _compiler(cc: str | None = None) -> str:
    return cc or os.environ.get("CC") or "cc"


def compiler_version(cc: str | None = None) -> str:
    try:
        out = subprocess.run([_compiler(cc), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (out.stdout.splitlines() or ["unknown"])[0]


def build_key(version: str = LLAMA_CPP_VERSION) -> str:
    """What a built wheel is valid for: this version, these flags, this compiler, this CPU."""
    material = "\n".join([version, cmake_args(), compiler_version(), cpu_flags(), sys.version.split()[0]])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "paper-assistant" / "llama-cpp"


def amx_macros_with(march: str, cc: str | None = None) -> list[str]:
    """The AMX macros the compiler defines for ``-march=<march>`` plus our flags: [] means ggml compiles no AMX
    kernel. Checkable on any x86-64 machine (``march="sapphirerapids"`` stands for a CPU with AMX)."""
    args = [_compiler(cc), f"-march={march}", *AMX_OFF, "-dM", "-E", "-x", "c", "-"]
    out = subprocess.run(args, input="", capture_output=True, text=True, timeout=60, check=True)
    return [m for m in AMX_MACROS if f"#define {m} " in out.stdout]


def system_info() -> str:
    """What the installed llama.cpp reports it was compiled with ("CPU : SSE3 = 1 | … | AVX512 = 1 | …")."""
    import llama_cpp  # the installed build, imported only when asked

    info = llama_cpp.llama_print_system_info()
    return info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)


def amx_compiled(info: str | None = None) -> bool:
    """True when the installed llama.cpp has AMX kernels (they crash: see the module docstring)."""
    info = system_info() if info is None else info
    return any(f"{f} = 1" in info for f in ("AMX_INT8", "AMX_TILE", "AMX_BF16"))


def _run(args: list[str], env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(args, check=True, env=env)


def install(python: str, rebuild: bool = False, version: str = LLAMA_CPP_VERSION) -> Path:
    """Build (once per key) and install llama-cpp-python[server] into ``python``'s environment."""
    folder = cache_dir() / build_key(version)
    wheels = sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))
    if rebuild and folder.exists():
        shutil.rmtree(folder)
        wheels = []
    if wheels:
        print(f"llama-cpp-python {version}: using the wheel built for this CPU and these flags ({folder})")
    else:
        print(f"llama-cpp-python {version}: compiling for this CPU without AMX (a few minutes; {folder})")
        env = {**os.environ, "CMAKE_ARGS": cmake_args(), "FORCE_CMAKE": "1"}
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # --no-cache-dir: never take, nor leave, a wheel in pip's cache, which is keyed by version alone
        _run(
            [python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
             "-w", str(tmp), f"llama-cpp-python=={version}"],
            env,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        (folder / "BUILD").write_text(f"CMAKE_ARGS={cmake_args()}\n{compiler_version()}\n{cpu_flags()}\n")
        wheels = sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"no llama-cpp-python wheel was built in {folder}")
    _run([python, "-m", "pip", "install", "--force-reinstall", "--no-deps", str(wheels[-1])])
    _run([python, "-m", "pip", "install", f"{wheels[-1]}[server]"])  # the server's own dependencies
    return wheels[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m assistant.native", description="Build and install llama.cpp for this CPU, without AMX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="build (once per CPU, flags and version) and install llama-cpp-python")
    p.add_argument("--python", default=sys.executable, help="the interpreter whose environment gets it")
    p.add_argument("--rebuild", action="store_true", help="build again even if a wheel for this key exists")
    sub.add_parser("key", help="print the build key and what it is made of")
    sub.add_parser("check", help="say whether the installed llama.cpp has AMX kernels (exit 1 if it has)")
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.python, rebuild=args.rebuild)
        return 0
    if args.command == "key":
        print(build_key())
        print(cmake_args())
        print(compiler_version())
        print(cpu_flags())
        return 0
    info = system_info()
    print(info.strip())
    if amx_compiled(info):
        print(f"llama.cpp has AMX kernels, which crash: rebuild it with `make rebuild-llama` ({CPU_SUPPORT})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
