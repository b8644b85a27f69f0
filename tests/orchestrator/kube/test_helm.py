"""The Helm chart and manifests/: rendered by a real Helm, validated against Kubernetes schemas,
and asserted on the fields that matter (helm-unittest style)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.k8s_utils import validate

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
from gen_manifests import CHART, helm, run_helm, template_chart  # noqa: E402

CI_VALUES = Path(__file__).resolve().parents[2] / "fixtures" / "helm-ci-values.yaml"


def _docs(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in docs if d["kind"] == kind])
    return found[0]


@pytest.fixture(scope="module")
def default_docs():
    return _docs(template_chart())


@pytest.fixture(scope="module")
def ci_docs():
    return _docs(template_chart("-f", str(CI_VALUES)))


def test_helm_is_real():
    out = subprocess.run([helm(), "version", "--short"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("v4.")


def test_chart_lints():
    r = run_helm("lint", str(ROOT / "helm" / "vlmscale"), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_helm("lint", str(ROOT / "helm" / "vlmscale"), "-f", str(CI_VALUES), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("which", ["default_docs", "ci_docs"])
def test_every_rendered_object_validates(which, request):
    docs = request.getfixturevalue(which)
    assert len(docs) >= 8
    for doc in docs:
        validate(doc)


def test_mlflow_defaults_sqlite_on_a_pvc_non_root(default_docs):
    dep = _one(default_docs, "Deployment", "vlmscale-mlflow")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in c["args"]
    assert {"name": "MLFLOW_BACKEND_STORE_URI", "value": "sqlite:////mlflow/mlflow.db"} in c["env"]
    assert "--artifacts-destination=/mlflow/artifacts" in c["args"] and "--workers=1" in c["args"]
    assert pod["volumes"][0] == {"name": "data", "persistentVolumeClaim": {"claimName": "vlmscale-mlflow"}}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["allowPrivilegeEscalation"] is False and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    hosts = next(a for a in c["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "vlmscale-mlflow:5000" in hosts
    svc = _one(default_docs, "Service", "vlmscale-mlflow")
    # the experiment spec's in-cluster default (kubernetes.mlflow_uri) points here
    assert svc["spec"]["ports"][0]["port"] == 5000
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_shared_storage_is_read_write_many_and_kept(default_docs):
    pvc = _one(default_docs, "PersistentVolumeClaim", "vlmscale-storage")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["resources"]["requests"]["storage"] == "500Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_rbac_is_least_privilege(default_docs):
    role = _one(default_docs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("ray.io",), ("rayjobs",)): {"get", "list", "watch", "create", "delete"},
        (("",), ("configmaps",)): {"get", "create", "update", "delete"},
        (("",), ("pods",)): {"get", "list"},
        (("",), ("pods/log",)): {"get"},
    }
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])
    assert not any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in default_docs)
    binding = _one(default_docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vlmscale-submitter", "namespace": "vlmscale"}]
    runner = _one(default_docs, "ServiceAccount", "vlmscale-runner")
    assert runner["automountServiceAccountToken"] is False


def test_ci_values_postgres_secret_s3_and_a_priority_class(ci_docs, default_docs):
    dep = _one(ci_docs, "Deployment", "vlmscale-mlflow")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    uri = next(e for e in c["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert uri == {"name": "MLFLOW_BACKEND_STORE_URI",
                   "valueFrom": {"secretKeyRef": {"name": "mlflow-postgres", "key": "uri"}}}
    assert c["envFrom"] == [{"secretRef": {"name": "ml-s3-credentials"}}]
    assert "--artifacts-destination=s3://ml-artifacts/mlflow" in c["args"] and "--workers=2" in c["args"]
    assert dep["spec"]["template"]["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "services"}
    assert not [d for d in ci_docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "vlmscale-mlflow"]
    assert _one(ci_docs, "PersistentVolumeClaim", "vlmscale-storage")["spec"]["storageClassName"] == "efs-sc"
    assert all(d["metadata"]["labels"]["team"] == "ml-research" for d in ci_docs)
    assert dep["spec"]["template"]["spec"]["priorityClassName"] == "research-services"


@pytest.mark.parametrize("bad,fragment", [
    (["--set", "mlflow.replicas=2"], "maximum"),
    (["--set", "storage.accessModes[0]=Sometimes"], "accessModes"),
    (["--set", "mlflow.tpyo=1"], "tpyo"),
    (["--set", "storage.name=Bad_Name"], "storage/name"),
])
def test_values_schema_refuses_bad_values(bad, fragment):
    r = template_chart(*bad)
    assert r.returncode != 0 and fragment in r.stderr


def test_manifests_are_generated_from_the_chart_and_the_renderer():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_manifests.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                validate(doc)


def test_the_chart_names_the_platform_configmap_the_renderer_reads():
    """One name on each side of the chart boundary: the chart's helper and the renderer's constant."""
    from orchestrator.kube.render import render
    from orchestrator.spec import PLATFORM_CONFIG, load

    names = [d["metadata"]["name"] for d in _docs(template_chart(release="anything")) if d["kind"] == "ConfigMap"]
    assert PLATFORM_CONFIG in names
    _, job = render(load(ROOT / "examples" / "quickstart.yaml"))
    pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": PLATFORM_CONFIG, "optional": True}} in pod["envFrom"]


@pytest.mark.parametrize("release", ["vlmscale", "ml-platform"])
def test_experiments_find_the_releases_mlflow_whatever_its_name(release):
    """The platform ConfigMap carries the release's MLflow address: the rendered Ray pods read it."""
    docs = _docs(template_chart(release=release))
    platform = _one(docs, "ConfigMap", "vlmscale-platform")
    service = next(d for d in docs if d["kind"] == "Service")
    port = service["spec"]["ports"][0]["port"]
    assert platform["data"]["MLFLOW_TRACKING_URI"] == f"http://{service['metadata']['name']}:{port}"
    assert service["metadata"]["name"].startswith(release)
    from orchestrator.kube.render import render
    from orchestrator.spec import load

    _, job = render(load(ROOT / "examples" / "quickstart.yaml"))
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": platform["metadata"]["name"], "optional": True}} in head["envFrom"]


def test_the_chart_renders_offline_with_no_dependency_to_fetch():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert "dependencies" not in chart and not (CHART / "charts").exists()
    r = run_helm("template", "x", str(CHART))
    assert r.returncode == 0, r.stderr


def test_every_value_is_documented():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def missing(node, schema_node, path=""):
        for key, value in node.items():
            sub = schema_node.get("properties", {}).get(key)
            assert sub is not None, f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and sub.get("properties"):
                yield from missing(value, sub, f"{path}{key}.")
            elif "description" not in sub:
                yield f"{path}{key}"

    undocumented = list(missing(values, schema))
    assert not undocumented, undocumented


def test_only_experiment_pods_reach_mlflow(default_docs):
    """The NetworkPolicy admits exactly the pods the renderer labels as an experiment's Ray pods."""
    from orchestrator.kube.render import render
    from orchestrator.spec import load

    policy = _one(default_docs, "NetworkPolicy", "vlmscale-mlflow")
    mlflow = _one(default_docs, "Deployment", "vlmscale-mlflow")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= mlflow.items()
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    _, job = render(load(ROOT / "examples" / "quickstart.yaml"))
    for group in [job["spec"]["rayClusterSpec"]["headGroupSpec"]] + job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert peer["podSelector"]["matchLabels"].items() <= group["template"]["metadata"]["labels"].items()
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]

    opened = _docs(template_chart("--set-json", 'mlflow.networkPolicy.allowFrom=[{"namespaceSelector": '
                                  '{"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]'))
    peers = _one(opened, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert len(peers) == 2 and peers[1]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"}
    for doc in opened:
        validate(doc)
    off = _docs(template_chart("--set", "mlflow.networkPolicy.enabled=false"))
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_an_optional_kueue_local_queue():
    assert not [d for d in _docs(template_chart()) if d["kind"] == "LocalQueue"]
    docs = _docs(template_chart("--set", "kueue.localQueue.enabled=true", "--set",
                                "kueue.localQueue.clusterQueue=gpu-cluster"))
    queue = _one(docs, "LocalQueue", "vlmscale")
    assert queue["apiVersion"] == "kueue.x-k8s.io/v1beta1" and queue["spec"] == {"clusterQueue": "gpu-cluster"}
    r = template_chart("--set", "kueue.localQueue.enabled=true")
    assert r.returncode != 0 and "kueue.localQueue.clusterQueue" in r.stderr


def test_optional_mlflow_basic_auth_from_a_secret(tmp_path, monkeypatch):
    """Off by default; on, the server runs MLflow's basic-auth app with its admin from the Secret the
    experiments' pods log in with, and a config MLflow itself reads."""
    from orchestrator.kube.render import render
    from orchestrator.spec import load

    def container(docs):
        return _one(docs, "Deployment", "vlmscale-mlflow")["spec"]["template"]["spec"]["containers"][0]

    assert not any(a.startswith("--app-name") for a in container(_docs(template_chart()))["args"])
    docs = _docs(template_chart("--set", "mlflow.auth.enabled=true", "--set", "mlflow.auth.defaultPermission=EDIT"))
    for doc in docs:
        validate(doc)
    c = container(docs)
    assert "--app-name=basic-auth" in c["args"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e and e["name"] != "MLFLOW_BACKEND_STORE_URI"}
    assert refs["MLFLOW_AUTH_ADMIN_USERNAME"] == {"name": "vlmscale-mlflow-auth", "key": "MLFLOW_TRACKING_USERNAME"}
    assert refs["MLFLOW_AUTH_ADMIN_PASSWORD"] == {"name": "vlmscale-mlflow-auth", "key": "MLFLOW_TRACKING_PASSWORD"}
    assert refs["MLFLOW_FLASK_SERVER_SECRET_KEY"]["name"] == "vlmscale-mlflow-auth"  # MLflow's CSRF key
    assert not any("PASSWORD" in e["name"] and "value" in e for e in c["env"])  # never a literal
    ini = _one(docs, "ConfigMap", "vlmscale-mlflow-auth")["data"]["basic_auth.ini"]
    (tmp_path / "basic_auth.ini").write_text(ini)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "basic_auth.ini"))
    from mlflow.server.auth.config import read_auth_config

    cfg = read_auth_config()
    assert cfg.default_permission == "EDIT" and cfg.database_uri == "sqlite:////mlflow/basic_auth.db"
    # an experiment's Ray pods take the same Secret (optionally: a platform without auth has none)
    _, job = render(load(ROOT / "examples" / "quickstart.yaml"))
    for group in [job["spec"]["rayClusterSpec"]["headGroupSpec"]] + job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert {"secretRef": {"name": "vlmscale-mlflow-auth", "optional": True}} in \
            group["template"]["spec"]["containers"][0]["envFrom"]
