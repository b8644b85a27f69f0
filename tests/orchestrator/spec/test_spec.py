"""The experiment spec and the CLI's answers to bad input: one clear line, exit 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.spec import SpecError, cell_key, load, parse

ROOT = Path(__file__).resolve().parents[3]
GOOD = {
    "apiVersion": "vlmscale.dev/v1alpha1",
    "kind": "ScalingExperiment",
    "metadata": {"name": "t1"},
    "spec": {"grid": {"llms": ["tiny-xs", "tiny-s"], "visual_tokens": [1, 4], "compressors": ["avgpool", "quecc"],
                      "seeds": [0, 1], "tasks": ["shapes"]},
             "vision": {"model": "vit-tiny"}},
}


def _with(path: str, value, base=GOOD):
    doc = json.loads(json.dumps(base))
    node = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return doc


_DELETE = object()


def test_grid_expands_to_every_combination_with_stable_keys():
    exp = parse(GOOD)
    cells = exp.cells()
    assert len(cells) == 2 * 2 * 2 * 2
    assert len({c.key for c in cells}) == 16
    assert cells[0].key == "tiny-xs-v1-avgpool-shapes-s0"
    assert parse(GOOD).digest() == exp.digest() and [c.key for c in parse(GOOD).cells()] == [c.key for c in cells]
    c = next(c for c in cells if c.key == "tiny-s-v4-quecc-shapes-s1")
    assert c.config.model.llm == "tiny-s" and c.config.model.visual_tokens == 4
    assert c.config.train.seed == 1 and c.config.data.seed == 1 and c.config.data.tasks == ("shapes",)


def test_cell_keys_of_hub_models_are_safe_labels():
    key = cell_key("Qwen/Qwen1.5-0.5B-Chat", 36, "quecc", "llava", 0)
    assert key.startswith("qwen1-5-0-5b-chat-") and key.endswith("-v36-quecc-llava-s0")
    assert all(ch.isalnum() or ch == "-" for ch in key) and key == key.lower()


def test_examples_validate():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        assert load(path).cells(), path


@pytest.mark.parametrize(
    "doc,fragment",
    [
        (_with("spec.grid.compressors", ["pixelshuffle"]), "spec.grid.compressors[0]: Input should be 'none', 'avgpool', 'resampler', 'quecc' or 'tokenpacker'"),
        (_with("spec.grid.visual_tokens", [1, 5]), "grid.visual_tokens: 5 with compressor 'avgpool'"),
        (_with("spec.grid.visual_tokens", [1, 9]), "must divide 8"),
        (_with("metadata.name", "Bad_Name"), "metadata.name: 'Bad_Name' is not an RFC 1123 label"),
        (_with("spec.grid.llms", ["tiny-s; rm -rf /"]), "is not a safe LLM name"),
        (_with("spec.grid", _DELETE), "spec.grid: required field is missing"),
        (_with("spec.training", {"steps": "many"}), "spec.training.steps: Input should be a valid integer"),
        (_with("spec.grid.llms", []), "spec.grid.llms: List should have at least 1 item"),
        (_with("spec.grid.visual_tokens", []), "spec.grid.visual_tokens: List should have at least 1 item"),
        (_with("spec.grid.colour", "red"), "spec.grid.colour: unknown field"),
        (_with("kind", "Pod"), "kind: Input should be 'ScalingExperiment'"),
        (_with("spec.training", {"batch_size": 10, "grad_accum": 4}), "batch_size 10 must be a multiple"),
        (_with("spec.training", {"batch_size": 32, "micro_batch_size": 3}),
         "training.batch_size 32 must be a multiple of resources.workers_per_cell x training.micro_batch_size = 3"),
        (_with("spec.training", {"micro_batch_size": 4, "grad_accum": 2}), "set micro_batch_size or grad_accum, not both"),
        (_with("spec.training", {"lr": {"low": 0.01, "high": 0.001}}), "high (0.001) must be larger than low (0.01)"),
        (_with("spec.training", {"lr": {"low": 0.001, "high": 0.01, "trials": 1}}), "trials"),
        (_with("spec.training", {"lr": -0.1}), "spec.training.lr"),
        (_with("spec.rounds", {"count": 0}), "spec.rounds.count"),
        (_with("spec.storage", {"path": "http://x"}), "only local paths and s3://"),
        (_with("spec.grid.tasks", ["ocr"]), "unknown synthetic task 'ocr'"),
        (_with("spec.vision", {"model": "openai/clip-vit-large-patch14-336"}), "pretrain applies to tiny presets only"),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(doc, fragment):
    with pytest.raises(SpecError) as e:
        parse(doc, "exp.yaml")
    msg = str(e.value)
    assert msg.startswith("exp.yaml: ") and fragment in msg and "\n" not in msg


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=60)


@pytest.mark.parametrize(
    "text,fragment",
    [
        (yaml.safe_dump(_with("spec.grid.compressors", ["pixelshuffle"])), "spec.grid.compressors[0]"),
        (yaml.safe_dump(_with("spec.grid.visual_tokens", [3])), "visual_tokens: 3"),
        (yaml.safe_dump(_with("metadata.name", "UPPER")), "metadata.name"),
        (yaml.safe_dump(_with("spec.grid.llms", _DELETE)), "spec.grid: llms is required (or list explicit points)"),
        (yaml.safe_dump(_with("spec.training", {"lr": "fast"})), "spec.training.lr"),
        (yaml.safe_dump(_with("spec.grid.seeds", [])), "spec.grid.seeds"),
        ("apiVersion: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_cli_rejects_bad_specs_with_one_line_and_exit_2(tmp_path, text, fragment):
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    r = _cli("validate", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and str(f) in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_cli_missing_file_and_unknown_experiment(tmp_path):
    r = _cli("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml: no such file" in r.stderr
    r = _cli("results", "ghost", "--storage", str(tmp_path))
    assert r.returncode == 2 and "no experiment 'ghost'" in r.stderr


def test_cli_validate_prints_the_grid_and_schema_is_json(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    r = _cli("validate", str(f))
    assert r.returncode == 0 and "t1: 16 cells" in r.stdout and "tiny-s-v4-quecc-shapes-s1" in r.stdout
    schema = json.loads(_cli("schema").stdout)
    assert schema["title"] == "ScalingExperiment" and "spec" in schema["properties"]


def test_spec_and_cli_import_no_heavy_libraries():
    code = ("import sys, orchestrator.cli, orchestrator.spec, orchestrator.study.results, orchestrator.store.layout;"
            "print([m for m in ('torch','ray','mlflow','kubernetes','transformers') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_explicit_points_replace_the_product_or_join_it():
    doc = _with("spec.grid", {"points": [{"llm": "tiny-xs", "visual_tokens": 4},
                                         {"llm": "tiny-l", "visual_tokens": 16, "compressor": "quecc", "seed": 2}],
                              "compressors": ["avgpool"], "tasks": ["text"]})
    cells = parse(doc).cells()
    assert [c.key for c in cells] == ["tiny-xs-v4-avgpool-text-s0", "tiny-l-v16-quecc-text-s2"]
    base = parse(GOOD).cells()
    joined = parse(_with("spec.grid.points", [{"llm": "tiny-m", "visual_tokens": 4, "compressor": "quecc"}])).cells()
    assert [c.key for c in joined] == [c.key for c in base] + [f"tiny-m-v4-quecc-{base[0].task}-s0"]  # the product, then
    with pytest.raises(SpecError, match="points lists a cell twice .or one the axes already give."):
        parse(_with("spec.grid.points", [{"llm": base[0].llm, "visual_tokens": base[0].visual_tokens}]))
    with pytest.raises(SpecError, match="visual_tokens: 5 with compressor 'avgpool'"):
        parse(_with("spec.grid", {"points": [{"llm": "tiny-xs", "visual_tokens": 5}], "compressors": ["avgpool"]}))
    with pytest.raises(SpecError, match="points lists a cell twice"):
        parse(_with("spec.grid", {"points": [{"llm": "tiny-xs", "visual_tokens": 4}] * 2}))


def test_worker_threads_follow_the_cpus_of_a_worker():
    doc = _with("spec.resources", {"cpus_per_worker": 4})
    assert {c.config.train.threads_per_worker for c in parse(doc).cells()} == {4}
    assert {c.config.train.threads_per_worker for c in parse(_with("spec.resources", {"cpus_per_worker": 0.5})).cells()} == {1}
    doc = _with("spec.training", {"threads_per_worker": 2})
    assert {c.config.train.threads_per_worker for c in parse(doc).cells()} == {2}


def test_a_calibrated_lr_replaces_width_scaling_per_llm():
    doc = _with("spec.training", {"lr": {"low": 1e-3, "high": 1e-2}, "lr_reference_width": 64})
    exp = parse(doc)
    from orchestrator.spec import expand

    cells = expand(exp, None, {"tiny-s": 0.004})
    by_llm = {c.llm: c.config.train for c in cells}
    assert by_llm["tiny-s"].lr == 0.004 and by_llm["tiny-s"].lr_reference_width is None
    # before calibration a cell shows the middle of the range (never trained so)
    assert all(c.config.train.lr == pytest.approx((1e-3 * 1e-2) ** 0.5) for c in exp.cells())


def test_every_validation_error_is_reported_at_once():
    doc = _with("spec.training", {"steps": "many", "batch_size": 0})
    doc = _with("metadata.name", "Bad_Name", doc)
    with pytest.raises(SpecError) as e:
        parse(doc, "exp.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "metadata.name" in msg and "spec.training.steps" in msg and "spec.training.batch_size" in msg


def test_a_spec_too_large_for_a_configmap_is_refused_before_it_is_read(tmp_path):
    f = tmp_path / "huge.yaml"
    doc = _with("spec.grid", {"points": [{"llm": "tiny-xs", "visual_tokens": 1 + i} for i in range(40_000)]})
    f.write_text(yaml.safe_dump(doc))
    assert f.stat().st_size > 1 << 20
    r = _cli("validate", str(f))
    assert r.returncode == 2 and r.stdout == ""
    assert "huge.yaml" in r.stderr and "ConfigMap" in r.stderr and "1 MiB" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_absurd_grids_need_force(tmp_path):
    from orchestrator.spec.limits import MAX_CELLS, check_scale, grid_cells

    f = tmp_path / "wide.yaml"
    doc = _with("spec.grid.seeds", list(range(1_500)))  # 2 LLMs x 2 V x 2 compressors x 1,500 seeds = 12,000
    f.write_text(yaml.safe_dump(doc))
    assert grid_cells(parse(doc)) == 12_000 > MAX_CELLS
    for cmd in ("validate", "render", "run"):
        r = _cli(cmd, str(f))
        assert r.returncode == 2 and "12,000 cells" in r.stderr and "--force" in r.stderr, (cmd, r.stderr)
    r = _cli("validate", str(f), "--force", "--format", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["cells"]) == 12_000
    long = _with("spec.training.steps", 5_000_000)  # 16 cells x 5e6 steps
    with pytest.raises(SpecError, match=r"80,000,000 training steps"):
        check_scale(parse(long))
    check_scale(parse(long), force=True)
    check_scale(parse(GOOD))


# ---- nothing absurd gets through: bounds, types, and the YAML itself


@pytest.mark.parametrize(
    "doc,fragment",
    [
        (_with("spec.grid.seeds", [2 ** 64]), "spec.grid.seeds[0]: Input should be less than or equal to"),
        (_with("spec.grid.seeds", [True]), "spec.grid.seeds: expected whole numbers, got [True]"),
        (_with("spec.training", {"steps": True}), "spec.training.steps: expected a whole number, got True"),
        (_with("spec.training", {"steps": 10 ** 12}), "spec.training.steps: Input should be less than or equal to"),
        (_with("spec.training", {"lr": float("inf")}), "spec.training.lr"),
        (_with("spec.training", {"lr": float("nan")}), "spec.training.lr"),
        (_with("spec.training", {"lr": 50.0}), "spec.training.lr"),
        (_with("spec.training", {"batch_size": 10 ** 7}), "spec.training.batch_size: Input should be less than"),
        (_with("spec.resources", {"cpus_per_worker": float("inf")}), "spec.resources.cpus_per_worker"),
        (_with("spec.grid.visual_tokens", [10 ** 9]), "spec.grid.visual_tokens[0]: Input should be less than"),
        (_with("metadata.name", "abc\n"), "metadata.name"),
        (_with("spec.grid.llms", ["tiny-s\n"]), "is not a safe LLM name"),
    ],
)
def test_absurd_values_are_refused_naming_the_field(doc, fragment):
    with pytest.raises(SpecError) as e:
        parse(doc, "exp.yaml")
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg.rstrip("\n"), msg


def test_a_bound_says_why_it_is_there():
    with pytest.raises(SpecError, match=r"steps: Input should be less than or equal to [\d_,]+ \(") as e:
        parse(_with("spec.training", {"steps": 10 ** 12}))
    assert len(str(e.value)) < 400


def test_a_huge_refused_value_is_quoted_short():
    with pytest.raises(SpecError) as e:
        parse(_with("spec.training", {"steps": "x" * 100_000}))
    assert len(str(e.value)) < 400


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize(
    "text,fragment",
    [
        (BOMB, "expands to more than 500,000 YAML nodes"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 deep"),
        ("a: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
        ("\xff\xfe not text", "not a text file"),
    ],
)
def test_hostile_yaml_is_refused_before_it_is_built(tmp_path, text, fragment):
    import time

    f = tmp_path / "exp.yaml"
    f.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as e:
        load(f)
    assert time.perf_counter() - t0 < 10  # a billion-node bomb would never return: this bound is not a speed target
    assert str(e.value).startswith(str(f)) and fragment in str(e.value), str(e.value)
    r = _cli("validate", str(f))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
