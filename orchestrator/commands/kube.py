"""The commands about a cluster: render, submit, logs, delete (and ``status --cluster``)."""

from __future__ import annotations

import sys

from ..errors import UsageError
from ..spec import load
from ..spec.limits import check_scale
from ..study.results import find_experiment


def cluster_experiment(a):
    """The experiment named on the command line, for cluster commands: a spec file, or a name whose
    spec is in local storage."""
    from ..kube.submit import api_client

    exp, _ = find_experiment(a.name, a.storage, require_state=False)
    return exp, api_client(a.kubeconfig, a.context)


def cmd_render(a) -> int:
    from ..kube.render import render, to_yaml

    exp = load(a.file)
    check_scale(exp, a.force)
    sys.stdout.write(to_yaml(render(exp, a.image, a.namespace)))
    return 0


def cmd_submit(a) -> int:
    from ..kube.submit import api_client, submit

    exp = load(a.file)
    check_scale(exp, a.force)
    if a.rounds is not None:
        if a.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {a.rounds}")
        # the rounds are part of the experiment: the RayJob's `vlmscale run` follows the spec it mounts
        exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={
            "rounds": exp.spec.rounds.model_copy(update={"count": a.rounds})})})
    result = submit(exp, api_client(a.kubeconfig, a.context), a.image, a.namespace)
    verb = "submitted" if result.created else "already submitted (same spec), nothing to do"
    print(f"{exp.name}: {verb} — rayjob/{result.name} in namespace {result.namespace}")
    print(f"watch: vlmscale status {a.file} --cluster; vlmscale logs {a.file} --cluster")
    return 0


def cmd_logs(a) -> int:
    from ..kube.submit import logs

    if not a.cluster:
        raise UsageError("logs are read from the cluster: add --cluster (local runs print to the terminal)")
    exp, api = cluster_experiment(a)
    print(logs(exp, api, a.namespace, a.tail))
    return 0


def cmd_delete(a) -> int:
    from ..kube.submit import delete

    if not a.cluster:
        raise UsageError("delete removes the experiment from a cluster: add --cluster "
                         "(a local experiment is a directory under its storage path)")
    exp, api = cluster_experiment(a)
    gone = delete(exp, api, a.namespace)
    print(f"{exp.name}: deleted {', '.join(gone)}" if gone else f"{exp.name}: nothing to delete")
    return 0


