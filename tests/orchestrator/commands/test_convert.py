"""`vlmscale convert-benchmark`: each benchmark's own release, in its public layout (or LLaVA-1.5's),
becomes the questions file its scorer reads — images embedded in the release written out — and a
release that is not in its layout is refused naming the file and the line or row."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.convert import CONVERTERS, ConversionError, convert
from tests.support.artifacts import benchmark_releases
from workloads.benchmark_files import question_problems, read_questions
from workloads.config import BenchmarkConfig
from workloads.scorers import SCORERS

STUDY = ("mme", "gqa", "ai2d", "mmbench", "mmmu", "scienceqa", "mathvista", "pope", "chartqa")


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    return benchmark_releases(tmp_path_factory.mktemp("releases"))


def test_every_benchmark_of_the_study_has_a_converter_named_for_its_scorer():
    assert set(STUDY) | {"textvqa", "vqav2"} <= set(CONVERTERS) <= set(SCORERS)


@pytest.mark.parametrize("kind", [*STUDY, "textvqa"])
def test_a_release_converts_to_questions_its_scorer_reads_with_every_image_found(kind, releases, tmp_path):
    sources, image_root = releases[kind]
    out = tmp_path / f"{kind}.jsonl"
    n, written = convert(kind, [str(s) for s in sources], str(out))
    found = read_questions(out)
    assert len(found) == n > 0
    assert question_problems(BenchmarkConfig(kind, str(out), kind), found) == []
    root = written or image_root or sources[0]
    for _, q in found:
        if "image" in q:
            assert (root / q["image"]).is_file(), q["image"]


def test_what_each_layout_holds_arrives(releases, tmp_path):
    def one(kind, **options):
        convert(kind, [str(s) for s in releases[kind][0]], str(tmp_path / f"{kind}.jsonl"), **options)
        return [q for _, q in read_questions(tmp_path / f"{kind}.jsonl")]

    mme = one("mme")
    assert {q["category"] for q in mme} == {"count", "code_reasoning"} and len({q["group"] for q in mme}) == 4
    mmbench = one("mmbench")
    rotation = next(q for q in mmbench if q["question_id"] == 1_000_000)
    assert rotation["group"] == "0" and rotation["options"] == ["a square", "a circle"] and rotation["answer"] == "A"
    assert rotation["image"] == next(q for q in mmbench if q["question_id"] == 0)["image"]  # its base row's image
    assert [q["hint"] for q in mmbench[:4:2]] == ["A drawing.", None]
    assert len(one("pope")) == 8 and {q["category"] for q in one("pope", categories=("random",))} == {"random"}
    sqa = one("scienceqa")
    assert len(sqa) == 3  # the question without an image is left out (SQA-IMG)
    assert sqa[1]["text"] == "Context: A shape on white.\nWhich color is the shape?\nA. red\nB. green\nC. blue"
    mmmu = one("mmmu")
    assert mmmu[-1]["question_type"] == "open" and mmmu[0]["options"] == ["red", "green", "blue"]


def test_vqav2_joins_its_questions_and_annotations(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps({"data_subtype": "val2014", "questions": [
        {"image_id": 42, "question": "What is it?", "question_id": 420}]}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": [
        {"question_id": 420, "answers": [{"answer": "cat", "answer_id": k} for k in range(10)]}]}))
    convert("vqav2", [str(tmp_path / "q.json"), str(tmp_path / "a.json")], str(tmp_path / "v.jsonl"))
    (q,) = [q for _, q in read_questions(tmp_path / "v.jsonl")]
    assert q == {"question_id": 420, "image": "COCO_val2014_000000000042.jpg", "text": "What is it?",
                 "answers": ["cat"] * 10}


def test_a_release_not_in_its_layout_is_refused_naming_the_file_and_where(releases, tmp_path):
    bad = tmp_path / "testdev_balanced_questions.json"
    bad.write_text(json.dumps({"q1": {"imageId": "n1", "question": "?"}}))
    with pytest.raises(ConversionError, match=r"testdev_balanced_questions.json: question q1: missing answer"):
        convert("gqa", [str(bad)], str(tmp_path / "gqa.jsonl"))
    txt = tmp_path / "MME" / "count"
    txt.mkdir(parents=True)
    (txt / "1.png").write_bytes((releases["gqa"][1] / "n0.jpg").read_bytes())
    (txt / "1.txt").write_text("Is there a shape? Yes\n")
    with pytest.raises(ConversionError, match=r"count/1.txt: line 1: expected 'question<TAB>answer'"):
        convert("mme", [str(tmp_path / "MME")], str(tmp_path / "mme.jsonl"))
    (txt / "1.txt").write_text("Is there a shape?\tYes\n")  # one question for the image: MME asks two
    with pytest.raises(ConversionError, match=r"mme: the converted questions would not score: line 1: group: image "
                                              r"'count/1' has 1 question"):
        convert("mme", [str(tmp_path / "MME")], str(tmp_path / "mme.jsonl"))
    assert not (tmp_path / "mme.jsonl").exists() and not (tmp_path / "gqa.jsonl").exists()  # nothing half-written


def test_the_command_prints_the_spec_lines_and_refuses_in_one_line(releases, tmp_path):
    sources, _ = releases["mmbench"]
    ok = subprocess.run([sys.executable, "-m", "orchestrator.cli", "convert-benchmark", "mmbench", str(sources[0]),
                         "-o", str(tmp_path / "mmbench.jsonl")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 8 questions" in ok.stdout and "scorer: mmbench, image_root:" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "orchestrator.cli", "convert-benchmark", "scienceqa",
                          str(tmp_path / "nothing.json"), "-o", str(tmp_path / "x.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "nothing.json: no such file" in bad.stderr
