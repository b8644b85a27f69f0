"""Real data checked before a GPU hour is spent (issue 34): tiny real-format files made here, one
defect at a time — each refused by `validate` in one line naming file, line and field (exit 2,
nothing written), or, for what only reading it finds, named by file and line where the cell reads it.
Beside them: the defect store that ends a run's other cells early, `data.on_bad_record: skip`,
saved models checked as `from_pretrained` reads them, and a fit that outlives a broken candidate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.protocols import LedgerRecord
from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm
from workloads.data.checks import llava_problems
from workloads.data.llava import LlavaDataset, LlavaFormatError
from workloads.model_files import model_file_problems

ROOT = Path(__file__).resolve().parents[3]
TURNS = [{"from": "human", "value": "<image>\nWhat color is the shape?"}, {"from": "gpt", "value": "red"}]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _truncate(png: Path) -> None:
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return llava_files(tmp_path_factory.mktemp("data"), n=8)


def test_each_kind_of_bad_record_is_named_by_file_line_and_field(data, tmp_path):
    good = {"id": "g", "image": "0.png", "conversations": TURNS}
    path = _jsonl(tmp_path / "mix.jsonl", [
        good,                                                                          # line 1
        json.dumps(good)[:40],                                                         # 2: cut in half
        good,                                                                          # 3
        {"id": "e", "image": "1.png", "conversations": []},                            # 4: empty
        {"id": "f", "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}]},  # 5
        {"id": "m", "image": "2.png", "conversations": [TURNS[0], {"from": "gpt", "value": "<image> red"}]},  # 6
        {"id": "x", "image": "404.png", "conversations": TURNS},                       # 7: no such image
        {"id": "t", "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "a"}]},  # 8
    ])
    with path.open("ab") as f:
        f.write(b'{"id": "u", "conversations": [{"from": "human", "value": "caf\xe9"}]}\n')  # 9: Latin-1
    found = llava_problems(path, data["images"])
    assert found == [
        f"{path}: line 2: not valid JSON (Unterminated string starting at, column 31)",
        f"{path}: line 4: conversations: empty",
        f"{path}: line 5: conversations[0].from: 'gpt' where 'human' belongs (a conversation starts with the "
        "human's turn)",
        f"{path}: line 6: conversations[1].value: 2 <image> markers for one image (LLaVA places one)",
        f"{path}: line 8: conversations[0].value: an <image> marker in a record without an image",
        f"{path}: line 9: not UTF-8 (byte 62 of the line)",
        f"{path}: line 7: image: {data['images'] / '404.png'} does not exist",
    ]
    # at run time the same file is the first defect, named, with the count and both ways out
    with pytest.raises(LlavaFormatError, match=r"mix.jsonl: line 2: not valid JSON .* \(and 5 more bad records\); "
                                              r"`vlmscale validate` lists them, data.on_bad_record: skip") as e:
        LlavaDataset(path, data["images"])
    assert e.value.path == str(path)


def test_problems_of_one_kind_are_capped_and_counted(data, tmp_path):
    path = _jsonl(tmp_path / "many.jsonl", [{"image": f"gone-{i}.png", "conversations": TURNS} for i in range(12)]
                  + [{"conversations": []}] * 7)
    found = llava_problems(path, data["images"])
    assert len([p for p in found if "does not exist" in p]) == 5
    assert len([p for p in found if "conversations: empty" in p]) == 5
    assert f"{path}: and 7 more missing images" in found and f"{path}: and 2 more malformed records" in found
    assert len(found) == 12


def test_a_truncated_image_is_found_by_deep_and_named_with_its_line_where_it_is_read(tmp_path, capfd):
    data = llava_files(tmp_path / "data", n=6)
    _truncate(data["images"] / "3.png")
    records = [json.loads(line) for line in data["instruct"].read_text().splitlines()]
    line = next(n for n, r in enumerate(records, start=1) if r.get("image") == "3.png")
    assert llava_problems(data["instruct"], data["images"]) == []  # it exists: only decoding finds it
    deep = llava_problems(data["instruct"], data["images"], deep=True)
    assert len(deep) == 1 and deep[0].startswith(f"{data['instruct']}: line {line}: image: "
                                                 f"{data['images'] / '3.png'} cannot be decoded (")
    assert "decoding images 6/6 (100%)" in capfd.readouterr().err  # the progress line
    ds = LlavaDataset(data["instruct"], data["images"])
    i = next(i for i in range(len(ds)) if ds.line(i) == line)
    with pytest.raises(LlavaFormatError, match=rf"instruct.jsonl: line {line}: image: .*3.png cannot be decoded"):
        ds[i]
    skipping = LlavaDataset(data["instruct"], data["images"], on_bad_record="skip")
    assert skipping[i].image is not None and skipping.skipped == 1  # the next readable record took its place


def test_skip_leaves_bad_records_out_counts_and_logs_each(data, tmp_path, caplog):
    path = _jsonl(tmp_path / "some.jsonl", [{"image": "0.png", "conversations": TURNS}, "{cut",
                                            {"image": "1.png", "conversations": []},
                                            {"image": "2.png", "conversations": TURNS}])
    with caplog.at_level("WARNING", logger="vlmscale.data"):
        ds = LlavaDataset(path, data["images"], on_bad_record="skip")
    assert len(ds) == 2 and ds.skipped == 2 and [ds.line(i) for i in range(2)] == [1, 4]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped {path}: line 2: not valid JSON (Expecting property name enclosed in double quotes, column 2)",
        f"skipped {path}: line 3: conversations: empty"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = bpe_tokenizer(root / "tokenizer")
    return {"llm": tiny_llm(root / "qwen", 32, 1, tok), "clip": tiny_clip(root / "clip"), "root": root}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_saved_model_is_checked_as_from_pretrained_reads_it(models, tmp_path):
    assert model_file_problems("llm", models["llm"], "causal LM", tokenizer=True) == []
    assert model_file_problems("vision", models["clip"], "vision tower", tokenizer=False) == []

    typed = _copy(models["llm"], tmp_path / "typed")
    config = json.loads((typed / "config.json").read_text())
    (typed / "config.json").write_text(json.dumps({**config, "hidden_size": "big"}))
    [line] = model_file_problems("llm", typed, "causal LM", tokenizer=True)
    assert line.startswith(f"llm: {typed / 'config.json'}: ") and "hidden_size" in line
    assert "expected int, got str (value: 'big')" in line  # the reason, not only the heading above it

    garbage = _copy(models["llm"], tmp_path / "garbage")
    (garbage / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    [line] = model_file_problems("llm", garbage, "causal LM", tokenizer=True)
    assert line.startswith(f"llm: {garbage / 'tokenizer.json'}: not a tokenizer the tokenizers library can load (")

    half = _copy(models["llm"], tmp_path / "half")
    weights = half / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    [line] = model_file_problems("llm", half, "causal LM", tokenizer=True)
    assert line == (f"llm: {weights}: truncated: its header describes {size:,} bytes, the file holds "
                    f"{size // 2:,} (copy it again)")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLMSCALE_CACHE": str(tmp_path / "cache"),
            "HF_HOME": str(tmp_path / "hf")}


def _spec(tmp_path: Path, llm: Path, clip: Path, data: dict, **data_settings) -> Path:
    spec = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "defects"},
            "spec": {"grid": {"llms": [str(llm)], "visual_tokens": [1, 4], "compressors": ["tokenpacker"],
                              "tasks": ["llava"]},
                     "vision": {"model": str(clip), "pretrain": None, "kv_layers": [-2, -1]},
                     "data": {"source": "llava", "image_root": str(data["images"]),
                              "llava_train": str(data["instruct"]), "eval_size": 4, **data_settings},
                     "training": {"steps": 4, "batch_size": 4, "lr": 1e-3, "log_every": 2, "checkpoint_every": 4},
                     "evaluation": {"max_new_tokens": 2, "batch_size": 4, "benchmarks": [
                         {"name": "colour", "questions": str(data["colour"]), "scorer": "exact_match",
                          "image_root": str(data["images"])}]},
                     "resources": {"max_concurrent_cells": 1},
                     "storage": {"path": str(tmp_path / "runs")}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli(tmp_path: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=_env(tmp_path), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_validate_refuses_every_defect_in_one_line_each_and_writes_nothing(models, tmp_path):
    """A cut record, a missing image, a benchmark line without its answer, a multiple-choice line
    without options, a model config of the wrong type: one line each, exit 2, no traceback; a
    truncated image only with --deep."""
    data = llava_files(tmp_path / "data", n=8)
    with data["instruct"].open("a") as f:
        f.write('{"id": "cut", "image": "1.png", "conversa\n')
        f.write(json.dumps({"id": "gone", "image": "missing.png", "conversations": TURNS}) + "\n")
    lines = data["colour"].read_text().splitlines()
    lines[2] = json.dumps({k: v for k, v in json.loads(lines[2]).items() if k != "answer"})
    data["colour"].write_text("\n".join(lines) + "\n")
    typed = _copy(models["llm"], tmp_path / "typed")
    config = json.loads((typed / "config.json").read_text())
    (typed / "config.json").write_text(json.dumps({**config, "hidden_size": "big"}))
    path = _spec(tmp_path, typed, models["clip"], data)
    doc = yaml.safe_load(path.read_text())
    choice = _jsonl(tmp_path / "mmbench.jsonl", [{"question_id": 0, "image": "0.png", "text": "Which colour?",
                                                  "answer": "A"}])
    doc["spec"]["evaluation"]["benchmarks"].append({"name": "mmbench", "questions": str(choice), "scorer": "mmbench",
                                                    "image_root": str(data["images"])})
    path.write_text(yaml.safe_dump(doc))

    r = _cli(tmp_path, "validate", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    n = len(data["instruct"].read_text().splitlines())
    for expected in (f"{data['instruct']}: line {n - 1}: not valid JSON",
                     f"{data['instruct']}: line {n}: image: {data['images'] / 'missing.png'} does not exist",
                     f"{data['colour']}: line 3: answer: missing",
                     f"{choice}: line 1: options",
                     f"spec.grid.llms[0]: {typed / 'config.json'}: Validation error for field 'hidden_size'"):
        assert sum(expected in line for line in r.stderr.splitlines()) == 1, (expected, r.stderr)
    assert not (tmp_path / "runs").exists()  # nothing written

    clean = llava_files(tmp_path / "clean", n=8)
    _truncate(clean["images"] / "2.png")
    path = _spec(tmp_path, models["llm"], models["clip"], clean)
    assert _cli(tmp_path, "validate", str(path)).returncode == 0
    deep = _cli(tmp_path, "validate", str(path), "--deep")
    assert deep.returncode == 2 and "Traceback" not in deep.stderr
    undecodable = [line for line in deep.stderr.splitlines() if "cannot be decoded" in line]
    # the instruction file's record and the benchmark's question that both show 2.png
    assert len(undecodable) == 2 and all(str(clean["images"] / "2.png") in line for line in undecodable)
    assert any(f"{clean['colour']}: line 3: image:" in line for line in undecodable), deep.stderr
    assert not (tmp_path / "runs").exists()


def test_a_defect_is_shared_by_the_cells_of_a_run_while_the_file_is_as_it_was(tmp_path):
    from orchestrator.store import defects
    from orchestrator.store.layout import ExperimentDir

    exp_dir = ExperimentDir.at(str(tmp_path / "exp"))
    bad, other = tmp_path / "bad.jsonl", tmp_path / "other.jsonl"
    bad.write_text("{}\n")
    other.write_text("{}\n")
    defects.record(exp_dir, str(bad), "bad.jsonl: line 1: conversations: missing", "cell-a")
    found = defects.found(exp_dir, (str(other), str(bad)))
    assert found == defects.Defect(str(bad), "bad.jsonl: line 1: conversations: missing", "cell-a")
    assert found.line().startswith(f"not tried: {bad} has a defect that cell cell-a found (bad.jsonl: line 1:")
    assert defects.found(exp_dir, (str(other),)) is None
    bad.write_text('{"conversations": []}\n')  # fixed (or changed) since: tried again
    assert defects.found(exp_dir, (str(bad),)) is None
    defects.record(exp_dir, str(bad), "still bad", "cell-b")
    assert defects.found(exp_dir, (str(bad),)) is not None
    defects.clear(exp_dir)  # a new run tries every file again
    assert defects.found(exp_dir, (str(bad),)) is None


@pytest.mark.slow
def test_one_cells_data_defect_ends_the_runs_other_cells_and_skip_trains_without_it(models, tmp_path):
    """A truncated image only training finds: the first cell fails naming the image and the record's
    line, the second ends before it builds a model with the same cause, `status` names both; with
    data.on_bad_record: skip both cells train, and data/skipped_records counts the record."""
    data = llava_files(tmp_path / "data", n=10)
    _truncate(data["images"] / "9.png")  # a training record's, no benchmark question's (they show 0-7)
    records = [json.loads(line) for line in data["instruct"].read_text().splitlines()]
    line = next(n for n, r in enumerate(records, start=1) if r.get("image") == "9.png")
    path = _spec(tmp_path, models["llm"], models["clip"], data)
    r = _cli(tmp_path, "run", str(path), "--plain", timeout=900)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    errors = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs" / "defects" / "errors").glob("*.json"))]
    assert len(errors) == 2, r.stdout[-3000:]
    causes = sorted(e["cause"] for e in errors)
    found = f"instruct.jsonl: line {line}: image: {data['images'] / '9.png'} cannot be decoded"
    assert found in causes[0] and causes[1].startswith(f"not tried: {data['instruct']} has a defect that cell ")
    assert found in causes[1]
    status = _cli(tmp_path, "status", str(path))
    assert status.stdout.count(found) == 2, status.stdout

    skipping = _spec(tmp_path, models["llm"], models["clip"], data, on_bad_record="skip")
    r = _cli(tmp_path, "run", str(skipping), "--plain", "--restart-changed", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "defects" / "results").glob("*.json")]
    assert len(records) == 2 and all(rec["metrics"]["data/skipped_records"] == 1 for rec in records)


def _trained_grid(tmp_path: Path, candidates: dict) -> Path:
    """A 3 × 3 experiment whose cells all finished (errors on a known law), written as `run` would."""
    from orchestrator.run.driver import prepare
    from orchestrator.spec import parse
    from orchestrator.store.layout import ExperimentDir

    doc = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "sizes"},
           "spec": {"grid": {"llms": ["tiny-xs", "tiny-s", "tiny-m"], "visual_tokens": [1, 4, 16],
                             "tasks": ["shapes"]},
                    "vision": {"pretrain": None},  # no tower to pretrain: the cells' records are written here
                    "storage": {"path": str(tmp_path / "runs")},
                    "fit": {"bootstrap": 20, "propose": 2,
                            "candidates": candidates}}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    exp = parse(doc, str(path))
    exp_dir = ExperimentDir.of(exp.spec.storage.path, "sizes")
    prepare(exp, exp_dir, path.read_text(), echo=lambda *_: None)
    sizes = {"tiny-xs": 2e5, "tiny-s": 8e5, "tiny-m": 3.2e6}
    for cell in exp.cells():
        n, v = sizes[cell.llm], cell.visual_tokens
        error = 0.2 + 3.0 * n ** -0.2 * v ** -0.3
        exp_dir.record_finished(LedgerRecord(cell.key, {"step": 1, "error": error, "llm_params": int(n),
                                                        "llm_params_total": int(n) + 1},
                                             params=cell.params(), settings=cell.settings, config_digest=cell.digest))
    return path


def test_propose_with_every_candidate_trained_says_what_would_add_one_and_exits_3(tmp_path):
    path = _trained_grid(tmp_path, {"visual_tokens": [1, 4, 16]})
    r = _cli(tmp_path, "propose", str(path), "-o", str(tmp_path / "next.yaml"), timeout=120)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert ("nothing to propose: every candidate cell is trained. To add candidates: a larger LLM in "
            "spec.fit.candidates.llms (the largest now: tiny-m)") in r.stderr
    assert not (tmp_path / "next.yaml").exists()  # no stale spec for the printed next step to run


def test_fit_outlives_a_candidate_llm_whose_config_cannot_size_it(tmp_path):
    """A candidate whose config.json holds a wrong type: left out of the proposals with a line saying
    why; the fit, the frontier and the other proposals go on."""
    broken = tmp_path / "broken-llm"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": "big",
                                                    "num_hidden_layers": 2, "vocab_size": 100}))
    path = _trained_grid(tmp_path, {"llms": ["tiny-xs", "tiny-s", "tiny-m", "tiny-l", str(broken)]})
    r = _cli(tmp_path, "fit", str(path), "--format", "json", timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"note: {broken}: left out of the proposals: its config cannot size it" in r.stderr
    assert json.loads(r.stdout)["n_points"] == 9
    r = _cli(tmp_path, "propose", str(path), "-k", "2", "--format", "json", "-o", str(tmp_path / "next.yaml"),
             timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"note: {broken}: left out of the proposals" in r.stderr
    picks = json.loads(r.stdout)["proposals"]
    assert len(picks) == 2 and {p["llm"] for p in picks} <= {"tiny-xs", "tiny-s", "tiny-m", "tiny-l"}
    points = yaml.safe_load((tmp_path / "next.yaml").read_text())["spec"]["grid"]["points"]
    assert points and all(p["llm"] != str(broken) for p in points)
