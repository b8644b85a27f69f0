"""Validate Kubernetes objects against real schemas, and run an in-process Kubernetes API.

* built-in kinds: the Kubernetes OpenAPI schemas (``kubernetes-validate``, strict: unknown fields fail);
* RayJob / RayCluster: KubeRay v1.7.0's CRD ``openAPIV3Schema`` (fixtures/kuberay-v1.7.0), made
  strict the way the API server's default field validation is — unknown fields fail — and the pod
  templates inside are validated again as real Pods;
* ``KubeEmulator``: kmock's emulator on a thread of its own, so the synchronous official client can
  talk to it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kuberay-v1.7.0"
K8S_VERSION = "1.32.0"


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=None)
def crd_validator(kind: str, version: str = "v1"):
    import jsonschema

    crd = yaml.safe_load((FIXTURES / f"ray.io_{kind.lower()}s.yaml").read_text())
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    schema = _strict(copy.deepcopy(schema))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is checked by the API server itself
    return jsonschema.Draft7Validator(schema)


def validate_builtin(obj: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _pod_templates(obj: dict[str, Any]):
    spec = obj["spec"]
    cluster = spec.get("rayClusterSpec", spec)
    yield cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["template"]


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` is not a valid object of its kind (see module docstring)."""
    if obj["apiVersion"].startswith("ray.io/"):
        errors = sorted(crd_validator(obj["kind"], obj["apiVersion"].split("/")[1]).iter_errors(obj),
                        key=lambda e: list(e.path))
        if errors:
            raise AssertionError("; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
        for template in _pod_templates(obj):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "template", **template.get("metadata", {})}, "spec": template["spec"]}
            validate_builtin(pod)
        return
    validate_builtin(obj)


class KubeEmulator:
    """kmock's Kubernetes emulator on a background thread; ``url`` for the client's host."""

    RESOURCES = ("v1/configmaps", "v1/pods", "v1/namespaces", "ray.io/v1/rayjobs")

    def __init__(self):
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def _run(self):
        import kmock

        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
                for resource in self.RESOURCES:
                    emulator.resources[resource] = {}
                self.emulator, self.url = emulator, str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        asyncio.run(main())

    def __enter__(self) -> "KubeEmulator":
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
        }))
        return path

    def client(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)
