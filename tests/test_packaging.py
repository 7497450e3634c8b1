"""The installed wheel works on its own: prompts and the refusal sentence are package data, nothing is read from
the repository, and the eval code is the project's own package (no top-level `evals`). Also the prompt
templates' placeholder check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from assistant.prompts import PLACEHOLDERS, PromptError, load_templates, render

REPO = Path(__file__).resolve().parent.parent


def _templates(tmp_path: Path, **changed: str) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "prompts", root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for name, text in changed.items():
        (root / name.replace("_", ".")).write_text(text, encoding="utf-8")
    return root


def test_a_template_with_a_missing_or_unknown_placeholder_stops_the_start(tmp_path):
    assert set(load_templates(_templates(tmp_path / "ok"))) == set(PLACEHOLDERS)
    with pytest.raises(PromptError, match=r"answer.md: missing placeholder\(s\) evidence"):
        load_templates(_templates(tmp_path / "a", answer_md="Sources: {sources}\nQuestion: {question}"))
    with pytest.raises(PromptError, match=r"system.md: unknown placeholder\(s\) max_words"):
        load_templates(_templates(tmp_path / "b", system_md="At most {max_sentences} sentences, {max_words} words."))
    with pytest.raises(PromptError, match="rewrite.md is missing"):
        root = _templates(tmp_path / "c")
        (root / "rewrite.md").unlink()
        load_templates(root)
    with pytest.raises(PromptError, match="takes"):
        render("answer.md", sources="", evidence="")  # a caller that forgot a value fails loudly, not silently


def test_the_templates_are_read_from_the_top_level_prompts_folder():
    # the design card's layout: prompts/ at the top, mapped onto the package assistant.prompts (editable install)
    import assistant.prompts as p

    assert Path(p.__file__).resolve().parent == REPO / "prompts"
    assert not (REPO / "assistant" / "prompts").exists()


def test_every_package_folder_is_listed_in_pyproject():
    # packages are listed by hand (package-dir maps prompts/), so a new sub-package must be added there too
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "assistant").rglob("__init__.py")} | {
        "assistant.prompts"
    }
    assert listed == found


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path, seed_store):
    # built from a copy: setuptools writes build/ and *.egg-info into the source folder
    source = tmp_path / "source"
    tracked = subprocess.check_output(["git", "-C", str(REPO), "ls-files"], text=True).splitlines()
    for rel in tracked:
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
    )
    wheel = next(dist.glob("paper_assistant-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "assistant/prompts/refusal.txt" in names and "assistant/prompts/system.md" in names
    assert "assistant/evaluation/runner.py" in names
    assert not any(n.startswith("evals/") for n in names)  # no top-level `evals` to collide with PyPI's

    # a fresh venv that sees the test environment's dependencies (torch, llama-cpp, …) but not its `assistant`
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.check_output(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a path only: its .pth files unread
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = tmp_path / "data"
    shutil.copytree(seed_store.settings.data_dir, data, ignore=shutil.ignore_patterns("store.lock"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_") and k != "PYTHONPATH"}
    env["ASSISTANT_DATA_DIR"] = str(data)
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import assistant.prompts as p; print(p.__file__); print(p.REFUSAL)"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(site)), where.stdout  # the wheel's copy, not the repository's
    assert where.stdout.splitlines()[1] == render("refusal.txt")
    help_ = subprocess.run(
        [venv / "bin" / "assistant", "--help"], cwd=outside, env=env, capture_output=True, text=True, timeout=120
    )
    assert help_.returncode == 0 and "ask" in help_.stdout and "papers" in help_.stdout, help_.stderr
    papers = subprocess.run(
        [venv / "bin" / "assistant", "papers", "--json", "--search", "Gold-YOLO"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert papers.returncode == 0, papers.stderr
    assert "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism" in papers.stdout
