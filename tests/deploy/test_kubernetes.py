"""deploy/kubernetes, checked offline (no cluster exists here): schemas, hygiene, and agreement
with guard itself and with the Dockerfile.

* every manifest validates against the Kubernetes OpenAPI schemas bundled with
  ``kubernetes-validate`` (strict: unknown fields are errors), for the oldest and newest
  Kubernetes minor versions the deployment claims (docs/operators.md);
* ``yamllint`` (strict) passes with the directory's ``.yamllint``;
* the ConfigMap's ``guard.toml`` loads with guard's own config loader, its policy passes
  ``guard policy check``, and the paths it names are where the Deployment mounts them;
* no Secret value is in the repository: keys only arrive through Secret references;
* user id, port, probes and entry point agree with the Dockerfile and guard's routes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from guard import devkeys
from guard.config import load, parse
from guard.runtime import build_runtime
from guard.server import build_app

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
VERSIONS = ["1.30.0", "1.37.0"]
"""Oldest and newest Kubernetes versions the manifests are validated against (docs/operators.md)."""


def documents(name: str) -> list[dict[str, Any]]:
    with (K8S / name).open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def resource_files() -> list[str]:
    files: list[str] = documents("kustomization.yaml")[0]["resources"]
    return files


def resources() -> dict[str, dict[str, Any]]:
    """Every resource by ``Kind/name``."""
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for name in resource_files() for doc in documents(name)}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resources()["Deployment/guard"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def mounts() -> dict[str, str]:
    """volume name -> mount path in the guard container."""
    return {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}


def test_every_manifest_is_listed_in_the_kustomization() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(resource_files())


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for name in resource_files():
        for doc in documents(name):
            kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError
            checked.append(doc["kind"])
    assert sorted(checked) == sorted(["ServiceAccount", "ConfigMap", "ConfigMap", "Deployment", "Service",
                                      "PodDisruptionBudget", "HorizontalPodAutoscaler"])


def test_manifests_pass_yamllint() -> None:
    done = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-c", str(K8S / ".yamllint"), str(K8S)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_secret_value_is_in_the_repository() -> None:
    kinds = {doc["kind"] for name in resource_files() for doc in documents(name)}
    assert "Secret" not in kinds
    text = "".join(p.read_text(encoding="utf-8") for p in K8S.iterdir() if p.is_file())
    assert "PRIVATE KEY" not in text and not re.search(r"redis://[^$\s\"]*:[^@\s\"]+@", text)
    env = {e["name"]: e for e in container()["env"]}
    assert all("valueFrom" in e for e in env.values())  # every value comes from a Secret reference
    keys = next(v for v in pod_spec()["volumes"] if v["name"] == "keys")
    assert keys["secret"]["secretName"] == "guard-keys"


def deployed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ConfigMaps' files laid out as the pod sees them, under ``tmp_path`` instead of ``/``."""
    root = tmp_path / "pod"
    config = resources()["ConfigMap/guard-config"]["data"]["guard.toml"]
    laid = config.replace("/etc/guard/", f"{root}/etc/guard/").replace("/var/lib/guard/", f"{root}/var/lib/guard/")
    laid = laid.replace("/usr/share/guard/policies/", f"{ROOT}/policies/")  # the Dockerfile copies policies/ there
    paths = mounts()
    for volume, files in (("config", {"guard.toml": laid}),
                          ("policies", resources()["ConfigMap/guard-policies"]["data"])):
        directory = Path(f"{root}{paths[volume]}")
        directory.mkdir(parents=True)
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
    keys = Path(f"{root}{paths['keys']}")
    keys.mkdir(parents=True)
    devkeys.generate_audit_key(keys)  # stand-ins for the Secret guard-keys
    devkeys.generate_pii_keyring(keys)
    monkeypatch.setenv("GUARD_METRICS_TOKEN", "metrics-token-from-the-secret")
    monkeypatch.setenv("GUARD_REDIS_URL", "redis://redis.example:6379/0")  # the Secret guard-redis, for [cluster]
    return Path(f"{root}{paths['config']}") / "guard.toml"


def test_configmap_config_loads_with_guards_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = deployed_config(tmp_path, monkeypatch)
    settings = load(path)
    root = str(tmp_path / "pod")
    paths = mounts()
    port = container()["ports"][0]
    assert settings.server.host == "0.0.0.0" and settings.server.port == port["containerPort"]
    assert settings.server.drain_timeout < pod_spec()["terminationGracePeriodSeconds"]
    assert settings.policy.enabled and settings.policy.reload
    assert str(settings.policy.policy).startswith(root + paths["policies"] + "/")
    assert str(settings.audit.path).startswith(root + paths["data"] + "/")
    assert settings.pii.enabled and settings.audit.enabled
    # The key files the config names are exactly the items the Secret volume projects.
    keys = next(v for v in pod_spec()["volumes"] if v["name"] == "keys")["secret"]["items"]
    named = set(re.findall(r"/etc/guard/keys/([\w.-]+)", resources()["ConfigMap/guard-config"]["data"]["guard.toml"]))
    assert named == {item["path"] for item in keys} and all(item["key"] == item["path"] for item in keys)
    # The args point at the mounted file.
    args = container()["args"]
    assert args[:2] == ["serve", "--config"] and args[2] == f"{paths['config']}/guard.toml"
    build_runtime(settings)  # every stage builds from it (keys parse, PII rules load)


def test_configmap_policy_passes_guard_policy_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = deployed_config(tmp_path, monkeypatch)
    done = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "check", "--config", str(path), "--strict",
                           "--roles", "analyst,support,admin"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_policies_volume_can_hot_reload() -> None:
    """A subPath mount never sees ConfigMap updates; the policies volume must be a whole directory."""
    policies = next(m for m in container()["volumeMounts"] if m["name"] == "policies")
    assert "subPath" not in policies and "subPathExpr" not in policies
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == "policies")
    assert volume["configMap"]["name"] == "guard-policies" and "items" not in volume["configMap"]


def dockerfile(instruction: str) -> str:
    lines = [line for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
             if line.startswith(instruction + " ")]
    return lines[-1][len(instruction) + 1:].strip()


def test_manifests_agree_with_the_dockerfile_and_guards_routes() -> None:
    user, group = dockerfile("USER").split(":")
    security = pod_spec()["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user), int(group)) and security["runAsNonRoot"]
    assert container()["ports"][0]["containerPort"] == int(dockerfile("EXPOSE"))
    assert dockerfile("ENTRYPOINT") == '["guard"]'
    assert "/healthz" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    hardened = container()["securityContext"]
    assert hardened["readOnlyRootFilesystem"] and not hardened["allowPrivilegeEscalation"]
    assert hardened["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in container()["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/guard", "/tmp"}  # the Dockerfile's state directory, and scratch space
    app = build_app(build_runtime(parse({"upstreams": {"u": {"url": "http://127.0.0.1:9/mcp"}},
                                         "auth": {"anonymous_servers": ["u"]}})))
    routes = {getattr(route, "path", None) for route in app.routes}
    probes = {container()[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"/healthz", "/readyz"} and probes <= routes
    assert container()["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container()["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_service_pdb_and_hpa_select_the_deployment() -> None:
    res = resources()
    labels = res["Deployment/guard"]["spec"]["template"]["metadata"]["labels"]
    for selector in (res["Service/guard"]["spec"]["selector"],
                     res["PodDisruptionBudget/guard"]["spec"]["selector"]["matchLabels"],
                     res["Deployment/guard"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    hpa = res["HorizontalPodAutoscaler/guard"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "guard"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and container()["resources"]["requests"]["cpu"]
    assert hpa["minReplicas"] >= 2 and res["PodDisruptionBudget/guard"]["spec"]["maxUnavailable"] == 1
    assert res["Service/guard"]["spec"]["ports"][0]["targetPort"] == container()["ports"][0]["name"]
