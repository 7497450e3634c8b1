"""The llama.cpp build: compiled for this CPU without the AMX kernels that crash (assistant/native.py).

The AMX path is checked without an AMX CPU: the compiler is asked which AMX macros it defines for a Sapphire
Rapids target with our flags (ggml compiles its AMX kernels only under ``__AMX_INT8__``). The installed build
itself is checked in tests/test_llm_server.py (system info, a real generation)."""

from __future__ import annotations

import shutil

import pytest

from assistant import native

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@pytest.mark.skipif(not native.cmake_args().count("mno-amx"), reason="x86-64 only")
def test_our_flags_switch_off_every_amx_macro_for_an_amx_cpu():
    assert native.amx_macros_with("sapphirerapids") == []


def test_without_our_flags_an_amx_target_would_compile_the_amx_kernels(monkeypatch):
    monkeypatch.setattr(native, "AMX_OFF", ())  # the plain -march=native build that crashes on AMX CPUs
    assert set(native.amx_macros_with("sapphirerapids")) >= {"__AMX_INT8__", "__AMX_TILE__"}


def test_the_build_flags_are_native_minus_amx():
    args = native.cmake_args()
    assert "-DGGML_NATIVE=ON" in args
    for flag in native.AMX_OFF:
        assert args.count(flag) == 2  # C and C++


def test_a_cached_wheel_is_reused_only_for_the_same_cpu_flags_and_version(monkeypatch):
    key = native.build_key()
    assert native.build_key() == key
    assert native.build_key("0.0.1") != key  # another version
    monkeypatch.setattr(native, "cpu_flags", lambda: "vendor_id: GenuineIntel\nflags: avx2 amx_tile")
    assert native.build_key() != key  # another CPU
    monkeypatch.undo()
    monkeypatch.setattr(native, "cmake_args", lambda: "-DGGML_NATIVE=ON")
    assert native.build_key() != key  # other flags (the old native build with AMX)


def test_system_info_with_amx_is_recognised():
    amx = "CPU : SSE3 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | OPENMP = 1 |"
    plain = "CPU : SSE3 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | OPENMP = 1 |"
    assert native.amx_compiled(amx) and not native.amx_compiled(plain)
