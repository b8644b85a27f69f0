"""How MLflow's UI shows an experiment: as model training, its cells a table of N, V, compressor
and error.

MLflow 3 opens an experiment in its GenAI view (traces, token usage, an assistant panel) unless it
is marked as model training, and its runs table shows no param or metric column until someone picks
them. vlmscale marks each experiment (the ``mlflow.experimentKind`` tag, which MLflow reads when
its workflow switch is off) and keeps a saved view of its cells as an experiment tag
(``mlflow.sharedViewState.<key>``: the same JSON the UI's "share view" writes — a search filter and
the selected columns). :func:`experiment_url` opens that view in the training workflow; ``vlmscale
ui``, the end of a run and the report print it. Pure: no mlflow import.
"""

from __future__ import annotations

import json

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
VIEW_KEY = "vlmscale-cells"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"

# what a researcher reads in the runs table: the grid point, its size, its results and its cost
COLUMNS = (("params", "llm"), ("params", "llm_params"), ("params", "visual_tokens"), ("params", "compressor"),
           ("params", "seed"), ("metrics", "error"), ("metrics", "eval_loss"), ("params", "inference_flops_llm"),
           ("params", "inference_flops_vlm"), ("tags", "vlmscale.status"))


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's column id (its makeCanonicalSortKey)


def view_state() -> dict:
    """The saved view: the cells only, lowest error first, with the columns above. Ordered by
    anything but the start time, the UI neither fetches the parent run nor folds the cells under
    it — they are the table's rows."""
    return {
        "searchFilter": "tags.`vlmscale.role` = 'cell'",
        "orderByKey": _column("metrics", "error"),
        "orderByAsc": True,
        "lifecycleFilter": "Active",
        "selectedColumns": [_column(k, key) for k, key in COLUMNS],
        "runsHiddenMode": "SHOW_ALL",  # every cell in the charts, not the first ten
    }


def experiment_tags() -> dict[str, str]:
    return {KIND_TAG: KIND, VIEW_TAG: json.dumps(view_state(), separators=(",", ":"))}


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's cells in the training workflow, with the saved view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" \
           f"&viewStateShareKey={VIEW_KEY}"


UI_PORT = 5000  # where `vlmscale ui` serves a local store


def ui_base(uri: str, port: int = UI_PORT) -> str:
    """The address of the UI over a tracking URI: the server itself, or `vlmscale ui`'s for a local store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"


def run_link(uri: str, experiment_id: str, run_id: str, port: int = UI_PORT) -> str:
    return f"{ui_base(uri, port)}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
