"""Policies hot-reload from a Kubernetes ConfigMap volume, updated the way kubelet updates it.

kubelet never edits a ConfigMap volume's files in place. Its atomic writer
(``pkg/volume/util/atomic_writer.go``) writes the new contents into a fresh hidden
``..<timestamp>`` directory, points a ``..data_tmp`` symlink at it, renames that over ``..data``
(one atomic step), and removes the previous timestamped directory. The visible files are
symlinks ``policy.csv -> ..data/policy.csv`` that never change themselves. These tests run that
sequence against guard's real config loader and policy watcher:

* the policy reloads after each swap, also when ``guard.toml`` sits in the same volume and names
  the policy by a relative path (which must not be resolved into the timestamped directory
  that kubelet deletes);
* an invalid policy in an update keeps the previous one, and the next valid update applies.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from guard.config import load
from guard.context import ANONYMOUS, Event, EventKind, Principal
from guard.pipeline.authorize import AuthorizeStage

ANALYST = Principal(subject="alice", roles=("analyst",), issuer="idp")
BASE = "p, role:analyst, crm, tools/list, *, allow\n"
GRANT = BASE + "p, role:analyst, crm, tools/call, get_customer, allow\n"
INVALID = GRANT + "p, role:analyst, crm, tools/call\n"
REVOKED = BASE
CONFIG = """
[upstreams.crm]
url = "http://127.0.0.1:9/mcp"

[auth]
anonymous_servers = ["crm"]

[policy]
policy = "policy.csv"
reload_interval = 0.05
"""


class Kubelet:
    """The atomic writer's update sequence for one ConfigMap volume."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self.generation = 0
        volume.mkdir()

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        data = self.volume / "..data"
        previous = os.readlink(data) if data.is_symlink() else None
        stamp = self.volume / f"..2026_12_02_17_00_00.{self.generation:09d}"
        stamp.mkdir()
        for name, text in files.items():
            (stamp / name).write_text(text, encoding="utf-8")
        tmp = self.volume / "..data_tmp"
        os.symlink(stamp.name, tmp)
        os.rename(tmp, data)
        for name in files:
            link = self.volume / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        if previous is not None:
            shutil.rmtree(self.volume / previous)


def may_get_customer(stage: AuthorizeStage) -> bool:
    return stage.authorizer.check(ANALYST, "crm", "tools/call", "get_customer").allowed


async def test_policy_reloads_across_configmap_symlink_swaps(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path / "etc-guard")
    kubelet.publish({"guard.toml": CONFIG, "policy.csv": BASE})
    settings = load(kubelet.volume / "guard.toml")
    assert settings.policy.policy == kubelet.volume / "policy.csv"  # under the ..data link, not a timestamp
    reloads: asyncio.Queue[Event] = asyncio.Queue()
    stage = AuthorizeStage.from_settings(settings.policy, on_event=reloads.put_nowait)
    await stage.start()
    try:
        assert not may_get_customer(stage)

        async def update(policy: str) -> bool:
            kubelet.publish({"guard.toml": CONFIG, "policy.csv": policy})
            event = await asyncio.wait_for(reloads.get(), 30)
            assert event.kind is EventKind.POLICY_RELOAD
            return bool(event.details["ok"])

        assert await update(GRANT) and may_get_customer(stage)
        assert not await update(INVALID) and may_get_customer(stage)  # the previous policy stays
        assert stage.store is not None and stage.store.status()["last_error"]
        assert await update(REVOKED) and not may_get_customer(stage)
        assert stage.store.status()["last_error"] is None
        assert sorted(p.name for p in kubelet.volume.iterdir() if p.name.startswith("..2026")) == [
            f"..2026_12_02_17_00_00.{kubelet.generation:09d}"]  # old generations really are gone
    finally:
        await stage.aclose()


async def test_policy_in_its_own_configmap_volume_reloads(tmp_path: Path) -> None:
    """The layout deploy/kubernetes uses: guard.toml and the policies in two volumes."""
    config = Kubelet(tmp_path / "config")
    policies = Kubelet(tmp_path / "policies")
    policies.publish({"policy.csv": BASE})
    config.publish({"guard.toml": CONFIG.replace('"policy.csv"', f'"{policies.volume / "policy.csv"}"')})
    reloads: asyncio.Queue[Event] = asyncio.Queue()
    stage = AuthorizeStage.from_settings(load(config.volume / "guard.toml").policy, on_event=reloads.put_nowait)
    await stage.start()
    try:
        policies.publish({"policy.csv": GRANT})
        event = await asyncio.wait_for(reloads.get(), 30)
        assert event.details["ok"] and may_get_customer(stage)
        assert not stage.authorizer.check(ANONYMOUS, "crm", "tools/call", "get_customer").allowed
    finally:
        await stage.aclose()
