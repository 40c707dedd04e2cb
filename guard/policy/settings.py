"""``[policy]``: where the Casbin model and policy live and how denials look.

::

    [policy]
    policy = "policies/policy.csv"   # required to enable authorization
    model = "policies/model.conf"    # default: the built-in model (same text as the shipped file)
    deny_as_unknown = false          # present denied tools/prompts/resources as unknown ones
    reload = true                    # watch the files and hot-reload them
    reload_interval = 0.5            # seconds between polls

Paths are relative to the configuration file. Without a ``[policy]`` section guard does
not authorize at all (``enabled`` is False) -- the operator decides, guard does not guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard import configtools as ct

_KEYS = {"policy", "model", "deny_as_unknown", "reload", "reload_interval"}


@dataclass(frozen=True)
class PolicySettings:
    """``[policy]`` settings with their defaults."""

    policy: Path | None = None
    """The policy CSV. ``None`` (no ``[policy]`` section): authorization is off."""
    model: Path | None = None
    """The Casbin model; ``None`` uses the built-in model (identical to ``policies/model.conf``)."""
    deny_as_unknown: bool = False
    """Answer a denied ``tools/call`` with -32602 ``Unknown tool: X`` (and likewise for prompts
    and resources, -32601 for other requests) instead of -31001, hiding that the item exists."""
    reload: bool = True
    """Watch the files and apply edits without a restart."""
    reload_interval: float = 0.5
    """Seconds between file polls (an edit applies within about two intervals)."""

    @property
    def enabled(self) -> bool:
        return self.policy is not None


def parse_policy(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path,
                 present: bool = True) -> PolicySettings:
    """Parse ``[policy]``; every problem is collected. ``present`` is False when the section is absent."""
    path = "policy"
    if not present:
        return PolicySettings()
    ct.unknown_keys(raw, _KEYS, path, problems)
    d = PolicySettings()
    policy_text = ct.get(raw, "policy", str, "", path, problems)
    policy: Path | None = None
    if not policy_text:
        problems.add(f"{path}.policy", "required: the policy CSV file (e.g. policies/policy.csv)")
    else:
        policy = ct.resolve_path(base_dir, policy_text)
        if not policy.is_file():
            problems.add(f"{path}.policy", f"file not found: {policy}")
    model_text = ct.get(raw, "model", str, "", path, problems)
    model: Path | None = None
    if model_text:
        model = ct.resolve_path(base_dir, model_text)
        if not model.is_file():
            problems.add(f"{path}.model", f"file not found: {model}")
    interval = ct.positive(raw, "reload_interval", float, d.reload_interval, path, problems)
    if interval > 10:
        problems.add(f"{path}.reload_interval", "must be at most 10 seconds")
        interval = d.reload_interval
    return PolicySettings(
        policy=policy,
        model=model,
        deny_as_unknown=ct.get(raw, "deny_as_unknown", bool, d.deny_as_unknown, path, problems),
        reload=ct.get(raw, "reload", bool, d.reload, path, problems),
        reload_interval=interval,
    )
