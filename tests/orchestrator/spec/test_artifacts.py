"""Models and data from anywhere: absolute paths, paths relative to the spec file, ``~``, hub ids
from the cache, s3:// — located once on the driver; `validate` checks each, every problem at
once, one line each, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.spec import SpecError, load, parse
from orchestrator.spec.checks import check_artifacts, problems
from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    tok = bpe_tokenizer(d / "tokenizer")
    return {"small": tiny_llm(d / "llm-small", 32, 1, tok), "large": tiny_llm(d / "llm-large", 48, 2, tok),
            "clip": tiny_clip(d / "clip"), "data": llava_files(d / "data"), "root": d}


def _doc(llms, vision, data: dict, **spec) -> dict:
    return {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "mine"},
            "spec": {"grid": {"llms": llms, "visual_tokens": [1, 4], "compressors": ["avgpool"], "tasks": ["llava"]},
                     "vision": {"model": vision, "pretrain": None},
                     "data": {"source": "llava", **data}, **spec}}


def _cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=60, env={**os.environ, **(env or {})})


def test_absolute_relative_and_home_paths_locate_to_the_same_places(models, tmp_path, monkeypatch):
    root, data = models["root"], models["data"]
    spec_dir = root / "specs"
    spec_dir.mkdir(exist_ok=True)
    relative = _doc(["../llm-small", str(models["large"])], "../clip",
                    {"llava_train": "../data/instruct.jsonl", "image_root": "../data/images"})
    path = spec_dir / "rel.yaml"
    path.write_text(yaml.safe_dump(relative))
    monkeypatch.chdir(tmp_path)  # nothing resolves against the working directory
    exp = load(path)
    assert problems(exp) == []
    llms = {c.llm: c.config.model.llm for c in exp.cells()}
    assert llms == {"../llm-small": str(models["small"]), str(models["large"]): str(models["large"])}
    cell = exp.cells()[0].config
    assert cell.model.vision == str(models["clip"]) and cell.data.llava_train == str(data["instruct"])
    assert cell.data.image_root == str(data["images"])

    monkeypatch.setenv("HOME", str(root))
    home = load_doc(tmp_path, _doc(["~/llm-small"], "~/clip", {"llava_train": str(data["instruct"]),
                                                               "image_root": "~/data/images"}))
    assert home.cells()[0].config.model.llm == str(models["small"]) and problems(home) == []


def load_doc(where: Path, doc: dict):
    path = where / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load(path)


def test_every_problem_is_listed_at_once_naming_the_field_and_path(models, tmp_path):
    no_tokenizer = tmp_path / "bare-llm"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    no_processor = tmp_path / "bare-clip"
    no_processor.mkdir()
    (no_processor / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    doc = _doc([str(tmp_path / "missing"), str(no_tokenizer), str(models["small"])], str(no_processor),
               {"llava_train": str(tmp_path / "nope.json"), "image_root": str(tmp_path / "no-images")})
    exp = load_doc(tmp_path, doc)
    with pytest.raises(SpecError) as e:
        check_artifacts(exp)
    lines = str(e.value).splitlines()
    assert lines[0].endswith("7 problems with models or data:")
    assert any(f"spec.grid.llms[1]: {no_tokenizer} holds no weights" in x for x in lines)
    assert any(f"spec.grid.llms[0]: {tmp_path / 'missing'} is not a directory" in x for x in lines)
    assert any(f"spec.grid.llms[1]: {no_tokenizer} has no tokenizer" in x for x in lines)
    assert any(f"spec.vision.model: {no_processor} has no image processor" in x for x in lines)
    assert any(f"spec.data.llava_train: {tmp_path / 'nope.json'}: no such file" in x for x in lines)
    assert any("spec.data.image_root" in x for x in lines)

    t0 = time.time()
    r = _cli("validate", str(tmp_path / "exp.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 8 and time.time() - t0 < 20
    r = _cli("validate", str(tmp_path / "exp.yaml"), "--syntax-only")  # a spec whose files live on a cluster
    assert r.returncode == 0, r.stderr


def test_a_hub_id_must_be_in_the_cache_when_offline(models, tmp_path):
    doc = _doc(["some-org/not-downloaded"], str(models["clip"]), {"llava_train": str(models["data"]["instruct"])})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = _cli("validate", str(path), env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 2
    assert "'some-org/not-downloaded' is not a directory and not in the Hugging Face cache" in r.stderr
    assert "hf download some-org/not-downloaded" in r.stderr


def test_a_preset_llm_on_llava_data_needs_a_tokenizer(models, tmp_path):
    exp = load_doc(tmp_path, _doc(["tiny-s"], "vit-tiny", {"llava_train": str(models["data"]["instruct"])}))
    assert any("spec.grid.llms[0]: the LLM preset 'tiny-s' has no tokenizer" in p for p in problems(exp))
    doc = _doc(["tiny-s"], "vit-tiny", {"llava_train": str(models["data"]["instruct"]),
                                        "image_root": str(models["data"]["images"]),
                                        "tokenizer": str(models["root"] / "tokenizer")})
    assert problems(load_doc(tmp_path, doc)) == []


@pytest.mark.parametrize("ref,ok", [("/abs/llm", True), ("~/models/llm", True), ("../up/llm", True),
                                    ("s3://bucket/llm", True), ("Qwen/Qwen2-0.5B", True), ("tiny-s; rm -rf /", False),
                                    ("llm\nname", False), ("$(reboot)", False), ("a b", False), ("x`y`", False)])
def test_names_stay_safe_for_shells_pods_and_labels(ref, ok):
    doc = _doc([ref], "vit-tiny", {"llava_train": "x.json", "tokenizer": "tok"})
    if ok:
        parse(doc)
    else:
        with pytest.raises(SpecError, match="is not a safe LLM name"):
            parse(doc)


def test_resume_by_name_locates_relative_paths_as_the_spec_did(models, tmp_path):
    from orchestrator.run.driver import prepare
    from orchestrator.store.layout import ExperimentDir
    from orchestrator.study.results import find_experiment

    spec_dir = models["root"] / "specs2"
    spec_dir.mkdir(exist_ok=True)
    doc = _doc(["../llm-small"], "../clip", {"llava_train": "../data/instruct.jsonl"},
               storage={"path": str(tmp_path / "runs")})
    path = spec_dir / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    exp = load(path)
    prepare(exp, ExperimentDir.of(exp.storage_root(), exp.name), path.read_text(), echo=lambda *_: None)
    again, _ = find_experiment("mine", str(tmp_path / "runs"))
    assert [c.config for c in again.cells()] == [c.config for c in exp.cells()]
