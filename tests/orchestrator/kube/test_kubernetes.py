"""Rendering and submission: real schemas, real `kubernetes` client against an in-process API."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.kube.render import render
from orchestrator.kube.submit import ClusterError, delete, status, submit
from orchestrator.spec import SpecError, load, parse
from tests.support.k8s_utils import KubeEmulator, validate

ROOT = Path(__file__).resolve().parents[3]
PAPER, QUICK = ROOT / "examples" / "paper.yaml", ROOT / "examples" / "quickstart.yaml"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("example", [PAPER, QUICK])
def test_rendered_objects_validate_against_kubernetes_and_kuberay_schemas(example):
    objects = render(load(example), image="registry.example.com/vlmscale:1.2.3", namespace="team-a")
    assert [o["kind"] for o in objects] == ["ConfigMap", "RayJob"]
    for obj in objects:
        validate(obj)


def test_the_validators_can_fail():
    config_map, rayjob = render(load(QUICK))
    bad = copy.deepcopy(rayjob)
    bad["spec"]["entrypointt"] = "typo"
    with pytest.raises(AssertionError, match="entrypointt"):
        validate(bad)
    bad = copy.deepcopy(rayjob)
    bad["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(Exception):
        validate(bad)
    bad = copy.deepcopy(config_map)
    bad["data"] = {"x": 1}
    with pytest.raises(Exception):
        validate(bad)


def test_paper_rayjob_has_gpu_workers_storage_and_a_safe_entrypoint():
    exp = load(PAPER)
    config_map, job = render(exp)
    spec = job["spec"]
    assert spec["entrypoint"] == "vlmscale run /etc/vlmscale/experiment.yaml --plain --force"
    assert spec["backoffLimit"] == exp.spec.failure.job_retries and spec["shutdownAfterJobFinishes"] is True
    workers = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 16  # max_concurrent_cells 2 x 8 workers
    container = workers["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert workers["rayStartParams"]["num-gpus"] == "1"
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert workers["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and "vlmscale_cell_slot" in head["rayStartParams"]["resources"]
    for template in (head["template"], workers["template"]):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
        c = pod["containers"][0]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        claim = next(v for v in pod["volumes"] if v["name"] == "storage")["persistentVolumeClaim"]["claimName"]
        assert claim == "vlmscale-storage"
        assert {"name": "storage", "mountPath": "/mnt/vlmscale"} in c["volumeMounts"]
        assert template["metadata"]["labels"]["vlmscale.dev/experiment"] == exp.name
    for obj in (config_map, job):
        assert obj["metadata"]["labels"]["vlmscale.dev/digest"] == exp.digest()
        assert obj["metadata"]["labels"]["study"] == "inference-optimal-vlms"
    # the mounted spec is the validated one, pointed at the shared volume; MLflow's address comes
    # from the platform ConfigMap the Helm release writes (whatever the release is called)
    mounted = parse(yaml.safe_load(config_map["data"]["experiment.yaml"]))
    assert mounted.spec.storage.path == "/mnt/vlmscale"
    assert mounted.spec.tracking.mlflow_uri is None
    for template in (head["template"], workers["template"]):
        assert template["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": "vlmscale-platform", "optional": True}},
            {"secretRef": {"name": "vlmscale-mlflow-auth", "optional": True}}]
    assert spec["ttlSecondsAfterFinished"] == 3600 and "activeDeadlineSeconds" not in spec
    assert [c.key for c in mounted.cells()] == [c.key for c in exp.cells()]


def test_s3_storage_takes_credentials_only_from_a_secret(tmp_path):
    doc = yaml.safe_load(QUICK.read_text())
    doc["spec"]["storage"] = {"path": "s3://my-bucket/experiments"}
    _, job = render(parse(doc))
    for group in [job["spec"]["rayClusterSpec"]["headGroupSpec"]] + job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["containers"][0]["envFrom"][2:] == [{"secretRef": {"name": "vlmscale-s3"}}]
        assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
        assert not any("AWS" in e["name"] for e in pod["containers"][0]["env"])
        # objects that must be local files (a model fetched from the bucket) go to the writable scratch
        assert {"name": "VLMSCALE_CACHE", "value": "/tmp/vlmscale-cache"} in pod["containers"][0]["env"]
    validate(job)


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"metadata": {"name": "a" * 40}}, "too long to submit"),
        ({"metadata": {"name": "x; rm -rf /"}}, "is not an RFC 1123 label"),
        ({"metadata": {"name": "ok", "labels": {"team": "a b"}}}, "not a valid Kubernetes label value"),
        ({"spec": {"kubernetes": {"image": "img$(reboot)"}}}, "not a valid container image"),
        ({"spec": {"kubernetes": {"namespace": "Team_A"}}}, "not an RFC 1123 name"),
        ({"spec": {"resources": {"gpus_per_worker": 0.5}}}, "must be a whole number on Kubernetes"),
    ],
)
def test_unsafe_names_are_refused_before_anything_is_rendered(tmp_path, change, fragment):
    doc = yaml.safe_load(QUICK.read_text())
    for section, values in change.items():
        for k, v in values.items():
            if isinstance(v, dict):
                doc[section].setdefault(k, {}).update(v)
            else:
                doc[section][k] = v
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = _cli("render", str(path))
    assert r.returncode == 2 and fragment in r.stderr and r.stdout == ""


def test_render_cli_refuses_an_unsafe_image_flag():
    r = _cli("render", str(QUICK), "--image", "a;b")
    assert r.returncode == 2 and "not a valid container image" in r.stderr and r.stdout == ""
    r = _cli("render", str(QUICK), "--image", "ghcr.io/me/vlmscale:2", "--namespace", "ml")
    docs = list(yaml.safe_load_all(r.stdout))
    assert r.returncode == 0 and all(d["metadata"]["namespace"] == "ml" for d in docs)


@pytest.fixture
def cluster():
    with KubeEmulator() as emulator:
        yield emulator


def test_submit_is_idempotent_and_refuses_a_different_spec(cluster):
    from kubernetes import client

    api = cluster.client()
    exp = load(QUICK)
    first = submit(exp, api)
    again = submit(exp, api)
    assert first.created and not again.created
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    jobs = custom.list_namespaced_custom_object("ray.io", "v1", "vlmscale", "rayjobs",
                                                label_selector="vlmscale.dev/experiment=quickstart")["items"]
    assert len(jobs) == 1 and jobs[0]["spec"]["entrypoint"].startswith("vlmscale run ")
    cm = core.read_namespaced_config_map("vlmscale-quickstart-spec", "vlmscale")
    assert parse(yaml.safe_load(cm.data["experiment.yaml"])).name == "quickstart"

    doc = yaml.safe_load(QUICK.read_text())
    doc["spec"]["training"]["steps"] = 700
    with pytest.raises(SpecError, match="already submitted to namespace vlmscale with a different spec"):
        submit(parse(doc), api)

    # what the KubeRay operator would report
    custom.patch_namespaced_custom_object("ray.io", "v1", "vlmscale", "rayjobs", "vlmscale-quickstart", {"status": {
        "jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "rayClusterName": "vlmscale-quickstart-x"}})
    st = status(exp, api)
    assert st["jobStatus"] == "RUNNING" and st["rayCluster"] == "vlmscale-quickstart-x"

    assert delete(exp, api) == ["rayjob/vlmscale-quickstart", "configmap/vlmscale-quickstart-spec"]
    assert delete(exp, api) == []
    with pytest.raises(ClusterError, match="not submitted"):
        status(exp, api)
    assert submit(exp, api).created  # and it can be submitted again


def test_logs_read_the_driver_pods_of_the_rayjob(cluster):
    import kmock
    from kubernetes import client

    from orchestrator.kube.submit import logs

    api = cluster.client()
    exp = load(QUICK)
    submit(exp, api)
    core = client.CoreV1Api(api)
    # the submitter Job's pods, as KubeRay (K8sJobMode) and the Job controller would create them
    for name in ("vlmscale-quickstart-aaaaa", "vlmscale-quickstart-bbbbb"):
        core.create_namespaced_pod("vlmscale", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "vlmscale", "labels": {"job-name": "vlmscale-quickstart"}},
            "spec": {"containers": [{"name": "ray-job-submitter", "image": "x"}]}})
        cluster.emulator[f"/api/v1/namespaces/vlmscale/pods/{name}/log"] << kmock.text(f"{name}: 9 cells finished\n")
    core.create_namespaced_pod("vlmscale", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "someone-else", "namespace": "vlmscale", "labels": {"job-name": "other"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}})
    text = logs(exp, api)
    assert "==> vlmscale-quickstart-aaaaa <==" in text and "vlmscale-quickstart-bbbbb: 9 cells finished" in text
    assert "someone-else" not in text


def test_cli_submit_status_delete_through_a_kubeconfig(cluster, tmp_path):
    from orchestrator.cli import main

    kubeconfig = str(cluster.kubeconfig(tmp_path / "kubeconfig"))
    assert main(["submit", str(QUICK), "--kubeconfig", kubeconfig, "--image", "ghcr.io/me/vlmscale:9"]) == 0
    assert main(["submit", str(QUICK), "--kubeconfig", kubeconfig, "--image", "ghcr.io/me/vlmscale:9"]) == 0
    assert main(["status", str(QUICK), "--cluster", "--kubeconfig", kubeconfig]) == 0
    assert main(["logs", str(QUICK), "--cluster", "--kubeconfig", kubeconfig]) == 2  # no driver pod yet
    assert main(["delete", str(QUICK), "--cluster", "--kubeconfig", kubeconfig]) == 0
    assert main(["status", str(QUICK), "--cluster", "--kubeconfig", kubeconfig]) == 2
    assert main(["submit", str(QUICK), "--kubeconfig", str(tmp_path / "missing")]) == 2


def test_submit_with_rounds_runs_the_loop_inside_the_rayjob(monkeypatch, tmp_path):
    """`vlmscale submit FILE --rounds 3`: the mounted spec carries rounds.count, which the RayJob's
    `vlmscale run` follows (a re-submission with other rounds is a changed spec)."""
    import orchestrator.kube.submit as submit_mod
    from orchestrator import cli
    from orchestrator.kube.render import render

    seen = {}

    class Result:
        created, name, namespace = True, "x", "vlmscale"

    monkeypatch.setattr(submit_mod, "api_client", lambda *a: None)
    monkeypatch.setattr(submit_mod, "submit", lambda exp, api, image, ns: seen.setdefault("exp", exp) and Result())
    assert cli.main(["submit", str(ROOT / "examples" / "quickstart.yaml"), "--rounds", "3"]) == 0
    exp = seen["exp"]
    assert exp.spec.rounds.count == 3
    config_map = next(o for o in render(exp) if o["kind"] == "ConfigMap")
    assert "count: 3" in next(iter(config_map["data"].values()))
    assert cli.main(["submit", str(ROOT / "examples" / "quickstart.yaml"), "--rounds", "0"]) == 2


def test_job_lifetime_registry_secrets_and_priority_are_spec_fields():
    doc = yaml.safe_load(QUICK.read_text())
    doc["spec"]["kubernetes"] = {"ttl_seconds_after_finished": 600, "active_deadline_seconds": 86400,
                                 "image_pull_secrets": ["regcred"], "priority_class_name": "research-low",
                                 "mlflow_uri": "http://mlflow.tracking:5000"}
    config_map, job = render(parse(doc))
    spec = job["spec"]
    assert spec["ttlSecondsAfterFinished"] == 600 and spec["activeDeadlineSeconds"] == 86400
    for group in [spec["rayClusterSpec"]["headGroupSpec"]] + spec["rayClusterSpec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}] and pod["priorityClassName"] == "research-low"
    assert parse(yaml.safe_load(config_map["data"]["experiment.yaml"])).spec.tracking.mlflow_uri == \
        "http://mlflow.tracking:5000"
    validate(job)
    for bad, fragment in ((["Bad Secret"], "not an RFC 1123 name"), ("Research_Low", "not a PriorityClass name")):
        key = "image_pull_secrets" if isinstance(bad, list) else "priority_class_name"
        doc["spec"]["kubernetes"] = {key: bad}
        with pytest.raises(SpecError, match=fragment):
            parse(doc)


def test_a_queue_makes_the_rayjob_wait_suspended_for_kueue():
    doc = yaml.safe_load(PAPER.read_text())
    _, plain = render(parse(doc))
    assert "suspend" not in plain["spec"] and "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]
    doc["spec"]["resources"]["queue"] = "gpu-research"
    config_map, job = render(parse(doc))
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-research"
    assert "kueue.x-k8s.io/queue-name" not in config_map["metadata"]["labels"]  # Kueue admits the job, not its spec
    validate(job)
    doc["spec"]["resources"]["queue"] = "GPU queue"
    with pytest.raises(SpecError, match="spec.resources.queue"):
        parse(doc)
