"""guard: a security policy enforcement proxy for the Model Context Protocol."""

__version__ = "0.1.0"
