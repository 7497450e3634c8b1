"""Evaluation: question sets scored for retrieval, citations and answers (`runner`), the metrics (`metrics`),
the report (`report`) and the benchmarks (`bench`). The CLI and the web app use only the names below; the
datasets, the floors and the saved runs live in the repository's ``evals/`` folder."""

from .runner import EvalError, EvalRun, cli_main, list_datasets, previous_run, run_eval

__all__ = ["EvalError", "EvalRun", "cli_main", "list_datasets", "previous_run", "run_eval"]
