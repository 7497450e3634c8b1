"""The Gradio web app (``assistant ui``): chat with cited sources, corpus browser, uploads and evals."""

from .app import EXAMPLES, create_app, launch_app
from .backend import Backend, ui_login

__all__ = ["EXAMPLES", "Backend", "ui_login", "create_app", "launch_app"]
