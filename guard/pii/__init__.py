"""PII protection: Presidio analysis (offline), rules, tokens, and the JSON walker.

Modules, in data-flow order:

* :mod:`guard.pii.walker`: where user data lives in MCP messages; copy-on-write rewrite.
* :mod:`guard.pii.engine`: the Presidio analyzer, offline and with recall-preserving
  shortcuts.
* :mod:`guard.pii.rules`: the rules file (``policies/pii.toml``).
* :mod:`guard.pii.tokens`: what each action turns a value into; token format.
* :mod:`guard.pii.protect`: scan + apply for one payload.
* :mod:`guard.pii.keys` / :mod:`guard.pii.settings`: key rings and ``[pii]`` config.

The pipeline stage is :class:`guard.pipeline.pii.PIIStage`.
"""
