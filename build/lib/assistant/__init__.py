"""paper-assistant: cited answers about ML paper abstracts, offline."""

__version__ = "0.1.0"
