"""Benchmarks with open answers: GQA, VQAv2, TextVQA, ChartQA — and MathVista, MMMU (open and
multiple choice in one release)."""

from __future__ import annotations

import ast
from pathlib import Path

from .files import missing_value, need, read_json, save_image, table_rows
from .registry import ConversionError, converter


@converter("gqa", "GQA's testdev_balanced_questions.json ({question id: {imageId, question, answer, …}}); images: "
                  "GQA's images/ (image_root)")
def gqa(sources: list[Path], images: Path):
    for source in sources:
        doc = read_json(source)
        if not isinstance(doc, dict):
            raise _error(f"{source}: expected GQA's object of questions by id")
        for qid, q in doc.items():
            need(q, ("imageId", "question", "answer"), f"{source}: question {qid}")
            yield {"question_id": qid, "image": f"{q['imageId']}.jpg", "text": q["question"], "answer": q["answer"]}


@converter("vqav2", "the VQA release's questions JSON and annotations JSON (v2_OpenEnded_mscoco_<split>_questions.json, "
                    "v2_mscoco_<split>_annotations.json); images: COCO <split> (image_root)")
def vqav2(sources: list[Path], images: Path):
    docs = [read_json(s) for s in sources]
    questions = next((d for d in docs if isinstance(d, dict) and "questions" in d), None)
    annotations = next((d for d in docs if isinstance(d, dict) and "annotations" in d), None)
    if questions is None or annotations is None:
        raise _error(f"{', '.join(map(str, sources))}: give the VQA questions JSON and its annotations JSON")
    answers = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in annotations["annotations"]}
    subtype = questions.get("data_subtype", "val2014")
    for q in questions["questions"]:
        need(q, ("question_id", "image_id", "question"), f"{sources[0]}: question")
        if q["question_id"] not in answers:
            raise _error(f"{sources[1]}: no annotation for question {q['question_id']}")
        yield {"question_id": q["question_id"], "image": f"COCO_{subtype}_{int(q['image_id']):012d}.jpg",
               "text": q["question"], "answers": answers[q["question_id"]]}


@converter("textvqa", "TextVQA's TextVQA_0.5.1_<split>.json ({data: [{question_id, image_id, question, answers}]}); "
                      "images: its train_images/ (image_root)")
def textvqa(sources: list[Path], images: Path):
    for source in sources:
        doc = read_json(source)
        for i, q in enumerate(doc.get("data", []) if isinstance(doc, dict) else []):
            need(q, ("question_id", "image_id", "question", "answers"), f"{source}: data[{i}]")
            yield {"question_id": q["question_id"], "image": f"{q['image_id']}.jpg", "text": q["question"],
                   "answers": q["answers"]}


@converter("chartqa", "ChartQA's test/test_human.json and test/test_augmented.json ([{imgname, query, label}]); "
                      "images: its test/png/ (image_root)")
def chartqa(sources: list[Path], images: Path):
    for source in sources:
        split = source.stem.removeprefix("test_") or "test"
        doc = read_json(source)
        if not isinstance(doc, list):
            raise _error(f"{source}: expected ChartQA's list of {{imgname, query, label}}")
        for i, q in enumerate(doc):
            need(q, ("imgname", "query", "label"), f"{source}: item {i}")
            yield {"question_id": f"{split}/{i}", "image": q["imgname"], "text": q["query"], "answer": str(q["label"]),
                   "category": split}


@converter("mathvista", "MathVista's parquet (AI4Math/MathVista testmini: pid, question, decoded_image, choices, unit, "
                        "precision, answer, question_type, answer_type)", embedded_images=True)
def mathvista(sources: list[Path], images: Path):
    for where, _, row in table_rows(sources, ("pid", "question", "answer", "question_type", "answer_type")):
        image = row.get("decoded_image") or row.get("image")
        yield {"question_id": row["pid"], "image": save_image(image, images, f"mathvista-{row['pid']}", where),
               "text": row["question"], "choices": row.get("choices") or None,
               "unit": None if missing_value(row.get("unit")) else row["unit"],
               "precision": int(row["precision"]) if row.get("precision") is not None else 0,
               "answer": str(row["answer"]), "question_type": row["question_type"], "answer_type": row["answer_type"]}


@converter("mmmu", "MMMU's parquet files (MMMU/MMMU <subject>/validation: id, question, options, answer, image_1…, "
                   "question_type); the first image is kept (LLaVA-1.5 reads one)", embedded_images=True)
def mmmu(sources: list[Path], images: Path):
    for where, _, row in table_rows(sources, ("id", "question", "options", "answer", "question_type")):
        options = _literal(row["options"], where) if isinstance(row["options"], str) else row["options"]
        answer = row["answer"]
        if isinstance(answer, str) and answer.strip().startswith("["):
            answer = _literal(answer, where)
        shown = [k for k in (f"image_{j}" for j in range(1, 8)) if row.get(k)]
        out = {"question_id": row["id"], "text": row["question"], "options": options, "answer": answer,
               "question_type": "multiple-choice" if row["question_type"] == "multiple-choice" else "open",
               "images": len(shown)}
        if shown:
            out["image"] = save_image(row[shown[0]], images, f"mmmu-{row['id']}", where)
        yield out


def _literal(text: str, where: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise _error(f"{where}: {text[:40]!r} is not a list") from None


def _error(message: str):
    return ConversionError(message)
