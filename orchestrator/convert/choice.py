"""Multiple-choice benchmarks: MMBench (its TSV), ScienceQA (its problems.json, or LLaVA's
llava_test_CQM-A.json beside it), AI2D (its parquet)."""

from __future__ import annotations

from pathlib import Path

from workloads.scorers.base import LETTERS

from .files import missing_value, need, read_json, read_table, save_image, table_rows
from .registry import ConversionError, converter

CIRCULAR = 1_000_000


@converter("mmbench", "MMBench's TSV (mmbench_dev_en_*.tsv: index, question, hint, A–D, answer, category, image as "
                      "base64; rows from index 10⁶ on are its circular rotations)", embedded_images=True)
def mmbench(sources: list[Path], images: Path):
    for source in sources:
        rows = read_table(source)
        written: dict[int, str] = {}
        for i, row in enumerate(rows, start=2):  # line 1 is the header
            where = f"{source}: line {i}"
            need(row, ("index", "question", "answer", "image", "A", "B"), where)
            index = int(row["index"])
            image = str(row["image"])
            if image.isdigit() and len(image) < 16:  # a rotation names the row that holds its image
                base = int(image)
                if base not in written:
                    raise ConversionError(f"{where}: image: refers to index {base}, which no earlier row has")
                name = written[base]
            else:
                name = save_image(image, images, f"mmbench-{index}", where)
            written[index] = name
            options = [row[c] for c in "ABCD" if c in row and not missing_value(row[c])]
            yield {"question_id": index, "image": name, "text": row["question"],
                   "hint": None if missing_value(row.get("hint")) else row["hint"], "options": options,
                   "answer": row["answer"].strip(), "category": row.get("category"), "group": str(index % CIRCULAR)}


@converter("scienceqa", "ScienceQA's problems.json and pid_splits.json (the test split's questions with an image; "
                        "--split), optionally LLaVA's llava_test_CQM-A.json for its question texts; images: "
                        "ScienceQA's images/<split> (image_root)")
def scienceqa(sources: list[Path], images: Path, split: str = "test"):
    named = {p.name: p for p in sources}
    base = next((p.parent for p in sources if p.name == "problems.json"), None)
    if base is None:
        raise ConversionError("scienceqa: give ScienceQA's problems.json (its pid_splits.json beside it)")
    problems = read_json(base / "problems.json")
    splits = read_json(named.get("pid_splits.json", base / "pid_splits.json"))
    if split not in splits:
        raise ConversionError(f"{base / 'pid_splits.json'}: no split {split!r} (it has {', '.join(splits)})")
    llava = next((p for n, p in named.items() if n.startswith("llava_")), None)
    texts = {str(r["id"]): r["conversations"][0]["value"].replace("<image>", "").strip()
             for r in read_json(llava)} if llava else {}
    for pid in splits[split]:
        p = problems[pid]
        need(p, ("question", "choices", "answer"), f"{base / 'problems.json'}: {pid}")
        if p.get("image") is None:
            continue  # SQA-IMG: the questions with an image (LLaVA reports IMG-Accuracy)
        options = [str(c) for c in p["choices"]]
        text = texts.get(str(pid)) or "\n".join(
            ([f"Context: {p['hint']}"] if p.get("hint") else []) + [p["question"]]
            + [f"{LETTERS[i]}. {c}" for i, c in enumerate(options)])
        yield {"question_id": pid, "image": f"{pid}/{p['image']}", "text": text, "options": options,
               "answer": LETTERS[int(p["answer"])]}


@converter("ai2d", "AI2D's parquet (lmms-lab/ai2d test: question, options, answer as an option's index, image)",
           embedded_images=True)
def ai2d(sources: list[Path], images: Path):
    for i, (where, _, row) in enumerate(table_rows(sources, ("question", "options", "answer", "image"))):
        options = [str(o) for o in row["options"]]
        try:
            answer = LETTERS[int(row["answer"])]
        except (ValueError, IndexError):
            raise ConversionError(f"{where}: answer: {row['answer']!r} is not an option's index") from None
        yield {"question_id": i, "image": save_image(row["image"], images, f"ai2d-{i}", where),
               "text": row["question"], "options": options, "answer": answer}
