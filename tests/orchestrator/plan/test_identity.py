"""A cell's identity: every setting that shapes its result is in its digest, no path is; state made
under other settings is refused before anything is written, set aside on request, never counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.plan.cells import StudyCells, tower_dir
from orchestrator.plan.identity import changes, counts, refusal, supersede, write_identity
from orchestrator.protocols import LedgerRecord
from orchestrator.spec import load, parse
from orchestrator.store.layout import ExperimentDir
from tests.support.artifacts import llava_files, tiny_clip

BASE = {
    "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "ident"},
    "spec": {"grid": {"llms": ["tiny-xs"], "visual_tokens": [1, 4], "compressors": ["avgpool"], "tasks": ["shapes"]},
             "vision": {"model": "vit-micro", "pretrain": {"steps": 5}},
             "training": {"steps": 150, "lr": 0.002, "checkpoint_every": 20}},
}


def _spec(*edits) -> dict:
    doc = json.loads(json.dumps(BASE))
    for path, value in edits:
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return doc


def _digests(doc) -> list[str]:
    return [c.digest for c in parse(doc).cells()]


@pytest.mark.parametrize("edit", [
    ("spec.training.steps", 100), ("spec.training.lr", 0.02), ("spec.training.batch_size", 16),
    ("spec.training.warmup_ratio", 0.1), ("spec.training.precision", "bf16"),
    ("spec.vision.pretrain", {"steps": 10}), ("spec.vision.compressor_heads", 2), ("spec.vision.freeze", False),
    ("spec.data.cells", 3), ("spec.data.train_size", 1000), ("spec.data.eval_size", 64),
    ("spec.training.betas", [0.9, 0.98]), ("spec.data.conversation", "vicuna_v1"),
    ("spec.training.stages", [{"name": "align", "trainable": ["projector"], "steps": 50}]),
    ("spec.training.stages", [{"name": "align", "trainable": ["projector"], "image_aspect_ratio": "square"}]),
])
def test_every_setting_that_shapes_a_result_changes_its_digest(edit):
    assert set(_digests(_spec(edit))).isdisjoint(_digests(BASE)), edit


@pytest.mark.parametrize("edit", [
    ("spec.resources", {"cpus_per_worker": 2}), ("spec.failure", {"retries_per_cell": 5}),
    ("spec.storage", {"path": "/elsewhere"}), ("spec.tracking", {"mlflow_uri": "http://127.0.0.1:5000"}),
    ("spec.fault_injection", {"cells": ["tiny-xs-v1-avgpool-shapes-s0"], "step": 10}),
    ("spec.fit", {"bootstrap": 50}), ("metadata.labels", {"team": "vlm"}),
    ("spec.evaluation", {"max_new_tokens": 4}),  # no benchmark: nothing is generated
])
def test_settings_that_do_not_shape_a_result_leave_it_alone(edit):
    assert _digests(_spec(edit)) == _digests(BASE), edit


def test_how_a_benchmark_is_answered_is_part_of_the_cell():
    bench = {"name": "gqa", "questions": "gqa.jsonl", "scorer": "exact_match"}
    base = _digests(_spec(("spec.evaluation", {"benchmarks": [bench]})))
    for edit in ({"benchmarks": [bench], "max_new_tokens": 4}, {"benchmarks": [{**bench, "max_new_tokens": 1024}]}):
        assert set(_digests(_spec(("spec.evaluation", edit)))).isdisjoint(base), edit
    # the per-benchmark length, where it equals the evaluation's, is the same cell only when unset
    assert _digests(_spec(("spec.evaluation", {"benchmarks": [{**bench, "max_new_tokens": None}]}))) == base


def test_a_compressor_whose_computation_changed_is_a_new_cell():
    """QueCC became the reference's module: a result of the old one must not count as the new one's."""
    cell = parse(_spec(("spec.grid.compressors", ["quecc"]))).cells()[0]
    assert cell.settings["model.compressor_revision"] == 2
    assert "model.compressor_revision" not in parse(BASE).cells()[0].settings  # avgpool never changed


def test_no_path_is_part_of_a_cell_so_a_copied_experiment_keeps_its_identity(tmp_path):
    """Relative data and model references, and the pretrained tower, resolve differently in two
    places: the configs differ, the digests do not."""
    cells = []
    for where in ("a", "b"):
        root = tmp_path / where
        files = llava_files(root / "data")
        tiny_clip(root / "clip")
        doc = _spec(("spec.vision", {"model": "./clip", "pretrain": None}),
                    ("spec.data", {"source": "llava", "llava_train": str(files["instruct"].relative_to(root)),
                                   "image_root": str(files["images"].relative_to(root))}),
                    ("spec.grid.tasks", ["llava"]))
        (root / "exp.yaml").write_text(yaml.safe_dump(doc))
        cells.append(load(root / "exp.yaml").cells()[0])
    a, b = cells
    assert a.config.data.llava_train != b.config.data.llava_train and a.config.model.vision != b.config.model.vision
    assert a.digest == b.digest and a.settings == b.settings
    assert a.settings["data.llava_train"] == "data/instruct.jsonl" and a.settings["model.vision"] == "./clip"

    exp = parse(BASE)
    one, two = ExperimentDir(tmp_path / "one"), ExperimentDir(tmp_path / "two")
    assert tower_dir(exp, one) != tower_dir(exp, two)
    assert [c.digest for _, c in StudyCells.of(exp, one).planned()] == [c.digest for _, c in StudyCells.of(exp, two).planned()]


def test_the_tower_is_keyed_by_its_pretraining(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    a, b = tower_dir(parse(BASE), exp_dir), tower_dir(parse(_spec(("spec.vision.pretrain", {"steps": 10}))), exp_dir)
    assert a != b and Path(a).parent == Path(b).parent == exp_dir.vision
    assert tower_dir(parse(_spec(("spec.vision.pretrain", None))), exp_dir) is None


def _finish(exp_dir: ExperimentDir, cell, **extra) -> None:
    exp_dir.record_finished(LedgerRecord.from_dict({"key": cell.key, "params": cell.params(), "config_digest": cell.digest,
                                       "settings": cell.settings, "metrics": {"error": 0.5, "step": 150,
                                                                              "llm_params": 1e6}, **extra}, cell.key))


def test_a_changed_spec_is_refused_naming_what_changed_and_the_ways_out(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    old = parse(BASE).cells()
    _finish(exp_dir, old[0])
    write_identity(exp_dir, old[1])  # checkpoints of the second, under the old settings
    (exp_dir.cells / old[1].key / "checkpoint_00000140").mkdir()

    new = parse(_spec(("spec.training.steps", 100), ("spec.training.lr", 0.02))).cells()
    found = changes(exp_dir, new, exp_dir.finished())
    assert [(c.key, c.what) for c in found] == [(old[0].key, "finished"), (old[1].key, "checkpointed")]
    msg = str(refusal("ident", found))
    assert "train.lr 0.002 → 0.02" in msg and "train.steps 150 → 100" in msg and "--restart-changed" in msg
    assert old[0].key in msg and old[1].key in msg and "\n" not in msg

    assert changes(exp_dir, old, exp_dir.finished()) == []  # the spec they ran under: nothing to say


def test_state_without_recorded_settings_is_not_trusted(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    cells = parse(BASE).cells()
    exp_dir.record_finished(LedgerRecord.from_dict({"key": cells[0].key, "config_digest": "0123456789abcdef",
                                           "metrics": {"error": 0.5, "llm_params": 1e6}}, cells[0].key))
    (exp_dir.cells / cells[1].key / "checkpoint_00000020").mkdir(parents=True)
    found = changes(exp_dir, cells, exp_dir.finished())
    assert [c.what for c in found] == ["finished", "checkpointed"]
    assert all("not recorded" in c.diffs[0] for c in found)


def test_restart_changed_keeps_the_old_state_aside_and_nothing_is_counted_twice(tmp_path):
    from orchestrator.study.results import rows

    exp_dir = ExperimentDir.of(str(tmp_path / "runs"), "ident")
    old_exp = parse(BASE)
    old = old_exp.cells()
    for cell in old:
        _finish(exp_dir, cell)
        exp_dir.progress.mkdir(parents=True, exist_ok=True)
        exp_dir.progress_path(cell.key).write_text('{"step": 20}\n')
        write_identity(exp_dir, cell)
    new_exp = parse(_spec(("spec.training.steps", 100)))
    table = rows(new_exp, exp_dir)
    assert {r["status"] for r in table} == {"changed"}  # never "finished" under the new spec
    from orchestrator.scaling.analysis import observations_from_rows

    assert len(observations_from_rows(table).e) == 0
    assert {r["status"] for r in rows(old_exp, exp_dir)} == {"finished"}

    found = changes(exp_dir, new_exp.cells(), exp_dir.finished())
    supersede(exp_dir, found)
    assert exp_dir.finished() == {} and not exp_dir.progress_path(old[0].key).exists()
    kept = exp_dir.superseded(old[0].key, old[0].digest)
    assert json.loads((kept / "result.json").read_text())["config_digest"] == old[0].digest
    assert (kept / "cells" / "identity.json").exists() and (kept / "progress.jsonl").exists()
    assert changes(exp_dir, new_exp.cells(), exp_dir.finished()) == []


def test_an_imported_record_counts_whatever_its_digest(tmp_path):
    cell = parse(BASE).cells()[0]
    m = {"error": 0.5, "llm_params": 1e6}
    assert counts(LedgerRecord(cell.key, m, imported_from="runs.csv"), cell)
    assert not counts(LedgerRecord(cell.key, m, config_digest="ffff"), cell)
    assert counts(LedgerRecord(cell.key, m, config_digest=cell.digest), cell)


def test_a_damaged_tower_is_pretrained_again_and_one_of_other_settings_never_overwritten(tmp_path):
    from workloads.pretrain_vision import META_FILE, pretrain_vision

    out = tmp_path / "tower"
    first = pretrain_vision("vit-micro", out, steps=2, batch_size=4)
    weights = next(p for p in out.iterdir() if p.suffix == ".safetensors")
    good = weights.read_bytes()
    assert pretrain_vision("vit-micro", out, steps=2, batch_size=4).seconds == 0.0  # reused as it is

    weights.write_bytes(good[: len(good) // 2])  # a copy cut short
    again = pretrain_vision("vit-micro", out, steps=2, batch_size=4)
    assert again.seconds > 0 and weights.read_bytes() == good and again.cell_accuracy == first.cell_accuracy

    meta = (out / META_FILE).read_text()
    with pytest.raises(ValueError, match="pretrained with other settings"):
        pretrain_vision("vit-micro", out, steps=3, batch_size=4)
    assert (out / META_FILE).read_text() == meta and weights.read_bytes() == good

    shutil.rmtree(out)


def test_the_driver_pretrains_the_tower_in_a_child_process_without_loading_torch(tmp_path):
    """prepare() pretrains in a process of its own: the driver's process never imports torch or
    transformers, the tower is byte for byte the one an in-process call makes, and a tower of other
    settings is refused with the same ValueError."""
    import subprocess
    import sys

    from workloads.pretrain_vision import pretrain_vision

    doc = _spec(("spec.storage", {"path": str(tmp_path / "runs")}), ("spec.vision.pretrain", {"steps": 3}))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    code = ("import sys, yaml; from orchestrator.run.driver import prepare; from orchestrator.store.layout import ExperimentDir;"
            "from orchestrator.spec import load; exp = load(sys.argv[1]);"
            "cells = prepare(exp, ExperimentDir.of(exp.spec.storage.path, exp.name), open(sys.argv[1]).read());"
            "print(len(cells), sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "exp.yaml")], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[3], timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "2 []", r.stdout
    assert r.stdout.startswith("pretrained vision tower vit-micro: cell accuracy ")

    exp = parse(doc)
    ours = Path(tower_dir(exp, ExperimentDir.of(exp.spec.storage.path, exp.name)))
    from orchestrator.spec.cells import tower

    t = tower(exp.spec)
    twin = pretrain_vision(t.preset, tmp_path / "twin", steps=t.steps, batch_size=t.batch_size, lr=t.lr, seed=t.seed,
                           cells=t.cells)
    weights = sorted(p.name for p in ours.iterdir() if p.suffix == ".safetensors")
    assert weights and all((ours / w).read_bytes() == (twin.path / w).read_bytes() for w in weights)

    from orchestrator.run.driver import _pretrain_in_a_process

    other = {"preset": t.preset, "out_dir": str(ours), "steps": t.steps + 1, "batch_size": t.batch_size, "lr": t.lr,
             "seed": t.seed, "cells": t.cells}
    with pytest.raises(ValueError, match="pretrained with other settings"):
        _pretrain_in_a_process(other)


def test_run_refuses_a_changed_spec_before_it_writes_anything(tmp_path):
    """The state of a run under steps 150 (a finished cell, another's checkpoints, MLflow, the
    manifest); `vlmscale run` of the spec with steps 100 exits 2 with one line and touches none of it."""
    import subprocess
    import sys

    from orchestrator.run.driver import prepare
    from orchestrator.tracking.tracker import Tracker, tracking_target

    doc = _spec(("spec.storage", {"path": str(tmp_path / "runs")}), ("spec.vision.pretrain", None))
    text = yaml.safe_dump(doc)
    exp = parse(doc)
    exp_dir = ExperimentDir.of(exp.spec.storage.path, exp.name)
    cells = prepare(exp, exp_dir, text)
    _finish(exp_dir, cells[0])
    write_identity(exp_dir, cells[1])
    tracker = Tracker(*tracking_target(exp, exp_dir))
    parent = tracker.parent_run(exp.name, exp.digest(), text)
    tracker.finish(parent, "KILLED")
    before = {p: p.read_bytes() for p in exp_dir.root.rglob("*") if p.is_file()}

    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(_spec(("spec.storage", {"path": str(tmp_path / "runs")}),
                                            ("spec.vision.pretrain", None), ("spec.training.steps", 100))))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(changed), "--plain"], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[3], timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.steps 150 → 100" in lines[0] and "Traceback" not in r.stderr
    after = {p: p.read_bytes() for p in exp_dir.root.rglob("*") if p.is_file()}
    assert after == before, "the refused run wrote something"
    assert tracker.client.get_run(parent).info.status == "KILLED"


def test_a_cells_identity_survives_an_upgrade_that_adds_settings():
    """Settings added later (the speed levers, length grouping) are left out at the value that
    trains as before: the quickstart's first cell keeps the digest vlmscale gave it before they
    existed, so an upgraded `run` resumes an experiment instead of calling every cell changed."""
    from orchestrator.spec import expand, load
    from orchestrator.spec.cells import LATER

    exp = load(Path(__file__).resolve().parents[3] / "examples" / "quickstart.yaml")
    cell = expand(exp, "/any/tower")[0]
    assert cell.key == "tiny-xs-v1-avgpool-shapes-s0" and cell.digest == "eca8a6d4f68889a0"
    assert not set(LATER) & set(cell.settings)
