"""Create, inspect and delete an experiment on a cluster with the official ``kubernetes`` client.

Idempotent: submitting an experiment that is already there with the same spec digest is a
no-op; with a different digest it is refused (delete it first, or rename it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadInput, SpecError
from ..spec import Experiment
from .render import LABEL_DIGEST, object_name, render

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"


class ClusterError(BadInput):
    """The cluster: no configuration, an API refusal, an experiment there (or not) that the command
    needs otherwise; the message says what and how to fix it."""


def api_client(kubeconfig: str | None = None, context: str | None = None):
    from kubernetes import client, config

    try:
        if kubeconfig or context:
            config.load_kube_config(config_file=kubeconfig, context=context)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
    except (config.ConfigException, FileNotFoundError, TypeError) as e:
        raise ClusterError(f"no Kubernetes configuration: {e}; set KUBECONFIG or pass --kubeconfig") from None
    return client.ApiClient()


@dataclass(frozen=True)
class SubmitResult:
    name: str
    namespace: str
    created: bool


def _api_error(e, what: str) -> ClusterError:
    return ClusterError(f"{what}: HTTP {e.status} {e.reason}")


def submit(exp: Experiment, api, image: str | None = None, namespace: str | None = None) -> SubmitResult:
    from kubernetes import client

    config_map, rayjob = render(exp, image, namespace)
    ns, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    existing = _get_rayjob(custom, ns, name)
    if existing is not None:
        theirs = existing.get("metadata", {}).get("labels", {}).get(LABEL_DIGEST)
        if theirs == exp.digest():
            return SubmitResult(name, ns, created=False)
        raise SpecError(
            f"experiment {exp.name!r} is already submitted to namespace {ns} with a different spec "
            f"(digest {theirs} there, {exp.digest()} here); `vlmscale delete {exp.name} --cluster` first, "
            "or give this one a new metadata.name"
        )
    try:
        core.create_namespaced_config_map(ns, config_map)  # type: ignore[arg-type]  # the client takes a manifest dict
    except client.ApiException as e:
        if e.status != 409:
            raise _api_error(e, f"creating ConfigMap {config_map['metadata']['name']}") from None
        core.replace_namespaced_config_map(config_map["metadata"]["name"], ns, config_map)  # type: ignore[arg-type]
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, rayjob)
    except client.ApiException as e:
        if e.status == 404:
            raise ClusterError("the cluster does not know RayJobs: install the KubeRay operator with its own chart "
                               "(helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
                               "helm install kuberay-operator kuberay/kuberay-operator --version 1.7.0)") from None
        raise _api_error(e, f"creating RayJob {name}") from None
    return SubmitResult(name, ns, created=True)


def _get_rayjob(custom, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client

    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise _api_error(e, f"reading RayJob {name}") from None


def status(exp: Experiment, api, namespace: str | None = None) -> dict[str, Any]:
    from kubernetes import client

    ns, name = namespace or exp.spec.kubernetes.namespace, object_name(exp)
    job = _get_rayjob(client.CustomObjectsApi(api), ns, name)
    if job is None:
        raise ClusterError(f"experiment {exp.name!r} is not submitted to namespace {ns}")
    st = job.get("status", {})
    return {"name": name, "namespace": ns, "digest": job["metadata"].get("labels", {}).get(LABEL_DIGEST),
            "jobStatus": st.get("jobStatus", "PENDING"), "deploymentStatus": st.get("jobDeploymentStatus", "New"),
            "rayCluster": st.get("rayClusterName"), "startTime": st.get("startTime"), "endTime": st.get("endTime"),
            "failed": st.get("failed", 0), "succeeded": st.get("succeeded", 0), "message": st.get("message", "")}


def logs(exp: Experiment, api, namespace: str | None = None, tail: int = 200) -> str:
    """The driver's output: the logs of the RayJob's submitter pods (K8sJobMode), newest last."""
    from kubernetes import client

    ns, name = namespace or exp.spec.kubernetes.namespace, object_name(exp)
    core = client.CoreV1Api(api)
    pods = [p for p in core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
            if p.metadata is not None and (p.metadata.labels or {}).get("job-name") == name]  # never another job's
    if not pods:
        raise ClusterError(f"no driver pod for {exp.name!r} in namespace {ns} yet; check `vlmscale status {exp.name} --cluster`")
    named = sorted((p.metadata.creation_timestamp or "", str(p.metadata.name)) for p in pods if p.metadata)
    out = []
    for _, pod_name in named:
        text = core.read_namespaced_pod_log(pod_name, ns, tail_lines=tail)
        out.append(f"==> {pod_name} <==\n{text}")
    return "\n".join(out)


def delete(exp: Experiment, api, namespace: str | None = None) -> list[str]:
    from kubernetes import client

    ns, name = namespace or exp.spec.kubernetes.namespace, object_name(exp)
    deleted = []
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        deleted.append(f"rayjob/{name}")
    except client.ApiException as e:
        if e.status != 404:
            raise _api_error(e, f"deleting RayJob {name}") from None
    try:
        client.CoreV1Api(api).delete_namespaced_config_map(f"{name}-spec", ns)
        deleted.append(f"configmap/{name}-spec")
    except client.ApiException as e:
        if e.status != 404:
            raise _api_error(e, f"deleting ConfigMap {name}-spec") from None
    return deleted
