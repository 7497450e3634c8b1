"""The Gradio web app (``assistant ui``): chat with cited sources, corpus browser, uploads and evals."""

from .app import EXAMPLES, create_app, launch_app
from .backend import Backend, auth_from_env

__all__ = ["EXAMPLES", "Backend", "auth_from_env", "create_app", "launch_app"]
