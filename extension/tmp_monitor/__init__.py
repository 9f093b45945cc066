"""tmp-monitor: a Lambda extension that measures /tmp's share of Max Memory Used."""

__version__ = "0.1.0"
__all__ = ["__version__"]
