"""Reports of an eval run: ``report.md``, ``report.png`` (matplotlib, Agg) and the rich summary table."""

from __future__ import annotations

import random
from pathlib import Path

from . import metrics as M

LABELS = {
    "retrieval.hit@5": "hit@5",
    "retrieval.recall@5": "recall@5",
    "retrieval.mrr": "MRR",
    "retrieval.ndcg@10": "nDCG@10",
    "citation.precision": "citation precision",
    "citation.recall": "citation recall",
    "answer.must_include": "must include",
    "answer.faithfulness": "faithfulness",
    "refusal.accuracy": "refusal accuracy",
    "refusal.false_refusals": "false refusals",
    "comparison.targets": "compared paper right",
    "answer.length": "asked length kept",
    "answer.wrong_paper": "excluded paper cited",
    "latency.p50_s": "latency p50",
    "latency.p95_s": "latency p95",
    "tokens.mean": "tokens (mean)",
}
TYPE_COLORS = {
    "factoid": "#4C72B0",
    "comparative": "#DD8452",
    "metadata": "#55A868",
    "unanswerable": "#C44E52",
    "followup": "#8172B3",
    "survey": "#937860",
    "listing": "#DA8BC3",
    "summary": "#8C8C8C",
    "casual": "#CCB974",
    "trap": "#64B5CD",
}


def fmt(key: str, value) -> str:
    if value is None:
        return "–"
    if key.startswith("latency"):
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if key.startswith("tokens"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def fmt_delta(key: str, info: dict | None) -> str:
    if not info:
        return ""
    d = info["delta"]
    if key.startswith("latency"):
        text = f"{d * 1000:+.0f} ms" if abs(d) < 1 else f"{d:+.2f} s"
    elif key.startswith("tokens"):
        text = f"{d:+.0f}"
    else:
        text = f"{d:+.3f}"
    return text


def _keys(metrics: dict) -> list[str]:
    """The metrics measured in this run (the answer metrics are absent from a retrieval-only run)."""
    return [k for k in M.METRIC_KEYS if metrics.get(k) is not None]


def _title(metrics: dict) -> str:
    run = metrics["run"]
    return (
        f"{run['dataset_name']} · {run['mode']} · {run['retriever']} · {run['questions']} questions · "
        f"{run['duration_s']:.0f} s"
    )


# -- terminal --------------------------------------------------------------------------------------
def summary_table(metrics: dict, deltas: dict | None = None):
    """A rich table: one row per metric, overall and per question type, and the delta with ``--compare``."""
    from rich.table import Table

    types = list(metrics.get("by_type", {}))
    table = Table(title=f"eval: {_title(metrics)}", show_header=True, title_justify="left")
    table.add_column("metric")
    table.add_column("all", justify="right", style="bold")
    table.add_column("n", justify="right", style="dim")
    if deltas is not None:
        table.add_column("Δ prev", justify="right")
    for t in types:
        table.add_column(f"{t}\n({metrics['by_type'][t]['n']})", justify="right")
    for key in _keys(metrics):
        row = [key, fmt(key, metrics[key]), str(metrics.get("support", {}).get(key, ""))]
        if deltas is not None:
            info = deltas["overall"].get(key)
            colour = "" if not info or info["better"] is None else ("green" if info["better"] else "red")
            text = fmt_delta(key, info)
            row.append(f"[{colour}]{text}[/]" if colour and text else text)
        row += [fmt(key, metrics["by_type"][t].get(key)) for t in types]
        table.add_row(*row)
    run = metrics["run"]
    if run["mode"] == "full":
        table.caption = f"faithfulness: {run['faithfulness']['method']}; {run.get('llm', '')}"
    else:
        table.caption = "retrieval only: latency is retrieval time; no LLM was asked"
    return table


# -- markdown --------------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _short(text: str, n: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


WHY = {
    "retrieval.hit@5": lambda r: "no expected paper in the top 5: " + _short(_top(r), 140),
    "retrieval.recall@5": lambda r: "top 5 misses: " + "; ".join(_short(t, 60) for t in _missing_retrieved(r)),
    "citation.recall": lambda r: "not cited: " + "; ".join(_short(t, 60) for t in _missing_cited(r)),
    "citation.precision": lambda r: (
        "unexpected, unsupported citation: "
        + "; ".join(_short(c["title"], 60) for c in r.get("citations", []) if not (c["expected"] or c["grounded"]))
    ),
    "answer.must_include": lambda r: "missing: " + ", ".join(f"`{m}`" for m in r.get("missing_must_include", [])),
    "answer.faithfulness": lambda r: (
        "unsupported: " + " / ".join(_short(s["text"], 80) for s in r.get("sentences", []) if not s["supported"])
    ),
    "refusal.accuracy": lambda r: (
        "answered (should refuse)"
        if not M.is_answerable(r["type"])
        else ("refused (should answer)" if r.get("refused") else r.get("error") or "no answer")
    ),
    "refusal.false_refusals": lambda r: "refused an answerable question",
}


def _top(r: dict) -> str:
    return "; ".join(h["title"] for h in r.get("retrieved", [])[:2]) or "nothing retrieved"


def _missing_retrieved(r: dict) -> list[str]:
    top = {M.norm_title(h["title"]) for h in r.get("retrieved", [])[:5]}
    return [t for t in r["expected_titles"] if M.norm_title(t) not in top]


def _missing_cited(r: dict) -> list[str]:
    cited = {M.norm_title(c["title"]) for c in r.get("citations", [])}
    return [t for t in r["expected_titles"] if M.norm_title(t) not in cited]


def errors_warning(run: dict, results: list[dict]) -> str:
    """A run where most questions ended in an error measures the installation, not the pipeline: say so first."""
    errors = [r for r in results if r.get("error")]
    if not results or len(errors) * 2 <= len(results):
        return ""
    return (
        f"{len(errors)} of {len(results)} questions ended in an error: these figures do not measure the answers. "
        f"First error: {errors[0]['error'][:300]}"
    )


def write_markdown(path: Path, metrics: dict, results: list[dict], png_name: str = "report.png") -> Path:
    run = metrics["run"]
    deltas = metrics.get("compared_with")
    keys = _keys(metrics)
    lines = [f"# Eval report: {run['dataset_name']}", ""]
    if warning := errors_warning(run, results):
        lines += [f"> **{warning}**", ""]
    facts = [
        ("dataset", f"`{run['dataset']}` (sha256 {run['dataset_sha256'][:12]})"),
        (
            "questions",
            f"{run['questions']} scored"
            + (f" of {run['questions_planned']} (interrupted)" if run["interrupted"] else "")
            + (f", first {run['limit']} only (--limit)" if run.get("limit") else "")
            + (f", {len(run['skipped_lines'])} malformed line(s) skipped" if run["skipped_lines"] else "")
            + (f", {run['errors']} error(s)" if run["errors"] else ""),
        ),
        ("mode", run["mode"] + ("" if run["mode"] == "full" else ": no LLM; latency is retrieval time")),
        ("retriever", f"{run['retriever']}, top_k {run['top_k']} papers to the model"),
    ]
    if run.get("llm"):
        facts.append(("LLM", f"{run['llm']}, temperature {run['temperature']}"))
    facts += [
        ("embedder", run.get("embedder", "")),
        ("store", run.get("store", "")),
        (
            "faithfulness",
            f"{run['faithfulness']['method']}" + (f": {d}" if (d := run["faithfulness"]["detail"]) else ""),
        ),
        ("started", f"{run['started']}, took {run['duration_s']:.1f} s"),
        ("code", run.get("code") or "unknown"),
    ]
    learned = run.get("learned") or {}
    if (shape := learned.get("shape")) and "error" not in shape:
        facts.append(
            ("shape classifier", f"held-out accuracy {shape['holdout_accuracy']} on {shape['holdout_rows']} q")
        )
    if (rel := learned.get("relevance")) and "error" not in rel:
        facts.append(
            (
                "relevance model",
                f"held-out top-1 {rel['holdout_top1']} (retriever {rel['holdout_retriever_top1']}), pair precision "
                f"at {rel['pair_threshold']} {rel['holdout_threshold_precision']}, ECE {rel['holdout_ece']}; "
                f"answerability threshold {rel['threshold']}: held-out answerable kept "
                f"{rel['holdout_answerable_kept']}, traps refused {rel['holdout_traps_refused']}",
            )
        )
    if deltas:
        facts.append(
            ("compared with", f"`{deltas['run']}`" + ("" if deltas["same_dataset"] else " (other questions!)"))
        )
    lines += [f"- **{k}**: {v}" for k, v in facts] + ["", f"![metrics per question type and latency]({png_name})", ""]

    lines += ["## Overall", ""]
    header = ["metric", "value", "over"] + (["Δ vs previous", "previous"] if deltas else [])
    rows = []
    for key in keys:
        row = [f"`{key}`", fmt(key, metrics[key]), f"{metrics['support'].get(key, '')} q"]
        if deltas:
            info = deltas["overall"].get(key)
            arrow = "" if not info or info["better"] is None else (" ▲" if info["better"] else " ▼")
            row += [fmt_delta(key, info) + arrow, fmt(key, info["previous"]) if info else "–"]
        rows.append(row)
    lines += [_md_table(header, rows), ""]
    extra = metrics.get("extra", {})
    if run["mode"] == "full":
        lines += [
            f"Refused {extra['refusals']} of {run['questions']} questions: {extra['false_refusals']} of "
            f"{extra['answerable']} answerable ones (false refusals), and {extra['unanswerable_answered']} of "
            f"{extra['unanswerable']} unanswerable ones were answered instead of refused. "
            f"Expected papers shown to the model (context recall): {fmt('x', extra.get('context.recall'))}. "
            f"Latency mean {fmt('latency', extra.get('latency.mean_s'))}, "
            f"max {fmt('latency', extra.get('latency.max_s'))}, "
            f"first token p50 {fmt('latency', extra.get('latency.ttft_p50_s'))}; tokens per question "
            f"{fmt('tokens', extra.get('tokens.prompt_mean'))} prompt + "
            f"{fmt('tokens', extra.get('tokens.completion_mean'))} completion.",
            "",
        ]

    if run["mode"] == "full" and extra.get("paths"):
        lines += ["## How the answers were produced, and how they came out", ""]
        lines += [path_outcome_table(metrics), ""]
        lines += [
            "Paths: `generated` the model's reply as written; `generated+repaired` the reply after the checker "
            "removed or attached markers, re-cited or dropped sentences, or added the evidence sentence for a "
            "quantity it left out; `extractive` the evidence quoted (the reply failed, an LLM error, or a listing "
            "from the records); `refused` the pipeline's answerability checks refused before any model call. "
            "Outcomes (LitQA-style, shares of all questions): *right* = answered, citing an expected paper and "
            "holding half of the must-include strings; *wrong* = answered otherwise (every answered unanswerable "
            "question is wrong); *refused*.",
            "",
        ]

    lines += ["## Per question type", ""]
    types = list(metrics["by_type"])
    header = ["type", "n"] + [LABELS[k] for k in keys]
    rows = [[t, str(metrics["by_type"][t]["n"])] + [fmt(k, metrics["by_type"][t].get(k)) for k in keys] for t in types]
    rows.append(["**all**", str(run["questions"])] + [f"**{fmt(k, metrics[k])}**" for k in keys])
    lines += [_md_table(header, rows), ""]
    if deltas and deltas.get("by_type"):
        lines += ["Deltas per type (current − previous):", ""]
        rows = [
            [t, str(metrics["by_type"][t]["n"])] + [fmt_delta(k, deltas["by_type"][t].get(k)) or "–" for k in keys]
            for t in types
            if t in deltas["by_type"]
        ]
        lines += [_md_table(header, rows), ""]

    lines += ["## Questions that failed a metric", ""]
    failing = [r for r in results if any(v is False for v in r["pass"].values())]
    if not failing:
        lines += ["None: every question passed every metric that applies to it.", ""]
    for key in keys:
        if key not in WHY:
            continue
        bad = [r for r in failing if r["pass"].get(key) is False]
        if not bad:
            continue
        lines += [f"### `{key}`: {len(bad)} question(s)", ""]
        for r in bad:
            lines.append(f"- **{r['id']}** ({r['type']}) {_short(r['question'], 120)} — {WHY[key](r)}")
        lines.append("")
    errors = [r for r in results if r.get("error")]
    if errors:
        lines += ["## Errors", ""] + [f"- **{r['id']}**: {_short(r['error'], 200)}" for r in errors] + [""]
    if run["skipped_lines"]:
        lines += ["## Skipped dataset lines", ""]
        lines += [f"- line {s['line']}: {s['error']}" for s in run["skipped_lines"]] + [""]
    if run["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in run["warnings"]] + [""]
    lines += [
        "## How to read this",
        "",
        "- Retrieval metrics rank 10 papers per answerable question the way the answer pipeline retrieves "
        "(filters read from the question, each compared method retrieved on its own).",
        "- `citation.precision`: cited papers that are expected, or that contain the quoted evidence and support a "
        "sentence citing them; `citation.recall`: expected papers cited. A refusal cites nothing.",
        "- `answer.faithfulness`: answer sentences supported by the sources they cite (an uncited sentence is "
        "unsupported); refusals are not scored.",
        "- `refusal.accuracy`: unanswerable questions refused without citations, answerable ones not refused; "
        "`refusal.false_refusals`: share of answerable questions refused (lower is better).",
        "- Per-question details (answer, citations, evidence, sentence checks, ranked papers): `results.jsonl`.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def path_outcome_table(metrics: dict) -> str:
    """Markdown table: share of answers per path and the right / wrong / refused split, overall and per type."""
    from . import metrics as M

    header = ["", *M.PATHS, "right", "wrong", "refused", "precision", "n"]

    def row(label: str, paths: dict, outcomes: dict) -> list[str]:
        cells = [label] + [fmt("x", paths.get(p)) for p in M.PATHS]
        cells += [fmt("x", outcomes.get(k)) for k in ("answered_right", "answered_wrong", "refused", "precision")]
        return [*cells, str(outcomes.get("n", ""))]

    extra = metrics["extra"]
    rows = [row("**all**", extra["paths"], extra["outcomes"])]
    for t, by in metrics.get("by_type", {}).items():
        if by.get("paths"):
            rows.append(row(t, by["paths"], by["outcomes"]))
    return _md_table(header, rows)


# -- plot ------------------------------------------------------------------------------------------
def write_png(path: Path, metrics: dict, results: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    run = metrics["run"]
    keys = [k for k in M.SCORE_KEYS if metrics.get(k) is not None]
    types = list(metrics["by_type"])
    rows = ["all", *types]
    values = [[metrics.get(k) for k in keys]] + [[metrics["by_type"][t].get(k) for k in keys] for t in types]
    retrieval_only = run["mode"] != "full"
    scale = 1000.0 if retrieval_only else 1.0
    unit = "ms" if retrieval_only else "s"

    fig = plt.figure(figsize=(15, 10), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.15, 1], width_ratios=[1, 1.25])
    ax = fig.add_subplot(grid[0, :])
    cmap = LinearSegmentedColormap.from_list("score", ["#d7301f", "#fdcc8a", "#f7f7b0", "#a6d96a", "#1a9641"])
    for i, row in enumerate(values):
        for j, (key, v) in enumerate(zip(keys, row, strict=True)):
            if v is None:
                colour, text = "#e6e6e6", "n/a"
            else:
                good = 1 - v if key in M.LOWER_IS_BETTER else v
                colour, text = cmap(good), f"{v:.2f}"
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            weight = "bold" if i == 0 else "normal"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=13, weight=weight)
    # thin rules between the metric groups: retrieval | citations and answers | refusals
    groups = [k.split(".")[0] for k in keys]
    for j in range(1, len(keys)):
        if groups[j] != groups[j - 1] and {groups[j], groups[j - 1]} != {"citation", "answer"}:
            ax.axvline(j, color="#333333", linewidth=2.5)
    ax.set_xlim(0, len(keys))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(keys))])
    ax.set_xticklabels([LABELS[k].replace(" ", "\n", 1) for k in keys], fontsize=11)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    counts = {t: metrics["by_type"][t]["n"] for t in types}
    ax.set_yticklabels([f"all ({run['questions']})"] + [f"{t} ({counts[t]})" for t in types], fontsize=12)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(
        f"Metrics per question type (1 = best; false refusals: 0 = best) — {_title(metrics)}",
        fontsize=14,
        loc="left",
        pad=12,
    )

    lat = [(r["type"], r["latency_s"] * scale) for r in results if r.get("latency_s") is not None]
    ax_hist = fig.add_subplot(grid[1, 0])
    ax_box = fig.add_subplot(grid[1, 1])
    what = "retrieval latency" if retrieval_only else "answer latency (question to full answer)"
    if lat:
        xs = [x for _, x in lat]
        present = [t for t in types if any(tt == t for tt, _ in lat)]
        ax_hist.hist(
            [[x for tt, x in lat if tt == t] for t in present],
            bins=min(25, max(5, len(xs) // 3)),
            stacked=True,
            color=[TYPE_COLORS.get(t, "#999999") for t in present],
            label=present,
            edgecolor="white",
        )
        for q, style in ((50, "--"), (95, ":")):
            v = M.percentile(xs, q)
            ax_hist.axvline(v, color="black", linestyle=style, linewidth=1.5)
            ax_hist.text(
                v,
                ax_hist.get_ylim()[1] * 0.97,
                f" p{q} {v:.0f} ms" if retrieval_only else f" p{q} {v:.1f} s",
                va="top",
                ha="left",
                fontsize=11,
            )
        ax_hist.legend(fontsize=10, frameon=False, loc="center right")
        ax_hist.set_xlabel(f"{what} ({unit})", fontsize=11)
        ax_hist.set_ylabel("questions", fontsize=11)
        ax_hist.yaxis.get_major_locator().set_params(integer=True)
        ax_hist.set_title(f"Latency distribution ({len(xs)} questions)", fontsize=13, loc="left")

        data = [[x for tt, x in lat if tt == t] for t in present]
        ax_box.boxplot(data, orientation="horizontal", widths=0.55, showfliers=False, medianprops={"color": "black"})
        rng = random.Random(0)
        for i, (t, xs_t) in enumerate(zip(present, data, strict=True), start=1):
            ax_box.scatter(
                xs_t, [i + rng.uniform(-0.18, 0.18) for _ in xs_t], s=22, alpha=0.75, color=TYPE_COLORS.get(t, "#999")
            )
        ax_box.set_yticks(range(1, len(present) + 1))
        ax_box.set_yticklabels(present, fontsize=11)
        ax_box.invert_yaxis()
        ax_box.set_xlabel(f"{what} ({unit})", fontsize=11)
        ax_box.set_title("Latency per question type", fontsize=13, loc="left")
        ax_box.grid(axis="x", alpha=0.3)
    else:
        for a in (ax_hist, ax_box):
            a.text(0.5, 0.5, "no latency measured", ha="center", va="center", transform=a.transAxes)
            a.set_axis_off()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out_dir: Path, metrics: dict, results: list[dict]) -> tuple[Path, Path]:
    """Write report.md and report.png into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    png = write_png(out_dir / "report.png", metrics, results)
    md = write_markdown(out_dir / "report.md", metrics, results, png.name)
    return md, png
