"""Render an experiment as Kubernetes objects: a ConfigMap with the spec and a KubeRay RayJob.

Pure (yaml + the spec; no ray, torch or kubernetes client). The RayJob's entrypoint is a fixed
command on the mounted spec — no user string ever reaches a shell — and runs ``vlmscale run``, so
a retried job (``backoffLimit``) resumes from the shared storage. Every object carries labels that
tie it to the experiment and to the spec's digest, which is how ``submit`` tells "already there"
from "there, but different".
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from ..errors import SpecError, UsageError
from ..spec import Experiment
from ..spec.base import RFC1123_LABEL, check_image
from ..spec.platform import CELL_SLOT, PLATFORM_CONFIG

SPEC_MOUNT = "/etc/vlmscale"
STORAGE_MOUNT = "/mnt/vlmscale"
SPEC_FILE = "experiment.yaml"
RAY_VERSION = "2.60.0"
MAX_RAYJOB_NAME = 47  # KubeRay derives cluster and job names from it
LABEL_EXPERIMENT = "vlmscale.dev/experiment"
LABEL_DIGEST = "vlmscale.dev/digest"
RUN_AS = 1000
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def object_name(exp: Experiment) -> str:
    name = f"vlmscale-{exp.name}"
    if len(name) > MAX_RAYJOB_NAME:
        raise SpecError(f"metadata.name {exp.name!r} is too long to submit: a RayJob name is at most "
                        f"{MAX_RAYJOB_NAME} characters, so use at most {MAX_RAYJOB_NAME - len('vlmscale-')}")
    return name


def labels(exp: Experiment) -> dict[str, str]:
    return {
        **exp.metadata.labels,
        "app.kubernetes.io/name": "vlmscale",
        "app.kubernetes.io/component": "experiment",
        "app.kubernetes.io/managed-by": "vlmscale",
        LABEL_EXPERIMENT: exp.name,
        LABEL_DIGEST: exp.digest(),
    }


def cluster_spec(exp: Experiment, image: str, namespace: str) -> dict[str, Any]:
    """The spec as the cluster runs it: storage on the shared volume, the in-cluster MLflow, the
    image and namespace it was submitted with."""
    doc = exp.model_dump(mode="json", exclude_none=True)
    spec = doc["spec"]
    spec["kubernetes"].update(image=image, namespace=namespace)
    if not exp.spec.storage.path.startswith("s3://"):
        spec["storage"]["path"] = STORAGE_MOUNT
    spec.setdefault("tracking", {})
    if exp.spec.kubernetes.mlflow_uri:  # else the platform ConfigMap's MLFLOW_TRACKING_URI (see _pod_template)
        spec["tracking"].setdefault("mlflow_uri", exp.spec.kubernetes.mlflow_uri)
    spec["vision"].setdefault("pretrain", None)  # keep "no pretraining" explicit
    return doc


def _security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "runAsUser": RUN_AS}


def _pod_template(exp: Experiment, container: dict[str, Any], role: str, gpu: bool) -> dict[str, Any]:
    k = exp.spec.kubernetes
    s3 = exp.spec.storage.path.startswith("s3://")
    volumes = [
        {"name": "spec", "configMap": {"name": f"{object_name(exp)}-spec"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if not s3:
        volumes.append({"name": "storage", "persistentVolumeClaim": {"claimName": k.storage_claim}})
        mounts.append({"name": "storage", "mountPath": STORAGE_MOUNT})
    env = [{"name": "HF_HOME", "value": f"{STORAGE_MOUNT}/hf" if not s3 else "/tmp/hf"},
           {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
           {"name": "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "value": "1"}]
    if s3:  # what must be a local file (a model fetched from the bucket) goes to the pod's scratch
        env.append({"name": "VLMSCALE_CACHE", "value": "/tmp/vlmscale-cache"})
    container = {**container, "env": env, "volumeMounts": mounts, "securityContext": _security_context(),
                 # the platform's in-cluster defaults (the Helm release's MLflow address), if installed
                 "envFrom": [{"configMapRef": {"name": PLATFORM_CONFIG, "optional": True}},
                             # MLflow basic-auth credentials, where the platform has them (chart: mlflow.auth)
                             {"secretRef": {"name": k.mlflow_auth_secret, "optional": True}}]}
    if s3:
        container["envFrom"].append({"secretRef": {"name": k.s3_secret}})
    pod: dict[str, Any] = {
        "serviceAccountName": k.service_account,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if k.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in k.image_pull_secrets]
    if k.priority_class_name:
        pod["priorityClassName"] = k.priority_class_name
    if gpu or role == "worker":
        if exp.spec.resources.node_selector:
            pod["nodeSelector"] = dict(exp.spec.resources.node_selector)
        if exp.spec.resources.tolerations:
            pod["tolerations"] = [dict(t) for t in exp.spec.resources.tolerations]
    return {"metadata": {"labels": {**labels(exp), "vlmscale.dev/role": role}}, "spec": pod}


def worker_replicas(exp: Experiment) -> int:
    """Workers for ``resources.max_concurrent_cells`` cells at once (default one: GPUs are dear)."""
    concurrent = min(exp.spec.resources.max_concurrent_cells or 1, len(exp.cells()))
    return concurrent * exp.spec.resources.workers_per_cell


def render(exp: Experiment, image: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
    k = exp.spec.kubernetes
    try:
        image = check_image(image) if image else k.image
    except ValueError as e:
        raise UsageError(f"--image: {e}") from None
    namespace = namespace or k.namespace
    if not RFC1123_LABEL.fullmatch(namespace) or len(namespace) > 63:
        raise UsageError(f"namespace {namespace!r} is not an RFC 1123 name (lowercase letters, digits and '-')")
    r = exp.spec.resources
    if r.gpus_per_worker != int(r.gpus_per_worker):
        raise SpecError(f"spec.resources.gpus_per_worker {r.gpus_per_worker} must be a whole number on Kubernetes "
                        "(a pod requests whole nvidia.com/gpu devices)")
    name = object_name(exp)
    meta: dict[str, Any] = {"namespace": namespace, "labels": labels(exp)}
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-spec", **meta},
        "data": {SPEC_FILE: yaml.safe_dump(cluster_spec(exp, image, namespace), sort_keys=False)},
    }
    gpus = int(r.gpus_per_worker)
    cpu = f"{r.cpus_per_worker:g}"
    worker_limits = {"cpu": cpu, "memory": r.memory_per_worker}
    if gpus:
        worker_limits["nvidia.com/gpu"] = str(gpus)
    head = {"name": "ray-head", "image": image, "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                      {"containerPort": 10001, "name": "client"}],
            "resources": {"requests": {"cpu": str(k.head_cpus), "memory": k.head_memory},
                          "limits": {"cpu": str(k.head_cpus), "memory": k.head_memory}}}
    worker = {"name": "ray-worker", "image": image, "imagePullPolicy": "IfNotPresent",
              "resources": {"requests": dict(worker_limits), "limits": dict(worker_limits)}}
    replicas = worker_replicas(exp)
    deadline = {"activeDeadlineSeconds": k.active_deadline_seconds} if k.active_deadline_seconds else {}
    # Kueue admits a suspended RayJob whole (head and every worker at once) when its queue has
    # room: no half-started cluster holding GPUs while it waits for the rest
    queued = {"suspend": True} if r.queue else {}
    job_meta = {**meta, "labels": {**meta["labels"], KUEUE_QUEUE_LABEL: r.queue}} if r.queue else meta
    rayjob = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": name, **job_meta},
        "spec": {
            **queued,
            # fixed words only: the experiment is read from the mounted, validated spec
            # --force: the scale caps were checked (or lifted) when the spec was rendered or submitted
            "entrypoint": f"vlmscale run {SPEC_MOUNT}/{SPEC_FILE} --plain --force",
            "backoffLimit": exp.spec.failure.job_retries,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": k.ttl_seconds_after_finished,
            "submissionMode": "K8sJobMode",
            **deadline,
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    # the head runs the experiment driver and the per-cell trial drivers, which hold
                    # one cell slot each and no CPU; training workers never land on it
                    "rayStartParams": {"num-cpus": "0", "resources": json.dumps(json.dumps({CELL_SLOT: 10_000}))},
                    "template": _pod_template(exp, head, "head", gpu=False),
                },
                "workerGroupSpecs": [{
                    "groupName": "gpu-workers" if gpus else "cpu-workers",
                    "replicas": replicas, "minReplicas": replicas, "maxReplicas": replicas,
                    "rayStartParams": {"num-cpus": cpu, **({"num-gpus": str(gpus)} if gpus else {})},
                    "template": _pod_template(exp, worker, "worker", gpu=bool(gpus)),
                }],
            },
        },
    }
    return [config_map, rayjob]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    # multi-line strings (the embedded spec) as literal blocks, readable in `kubectl get -o yaml`
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)
