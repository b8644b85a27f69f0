"""Yes/no benchmarks: POPE (LLaVA's coco_pope files) and MME (its release folder)."""

from __future__ import annotations

from pathlib import Path

from .files import image_beside, read_jsonl
from .registry import ConversionError, converter


@converter("pope", "LLaVA's POPE annotations coco/coco_pope_<category>.json (JSON lines: question_id, image, text, "
                   "label); --categories picks some (the study's eval_pope.py reads random); images: COCO val2014")
def pope(sources: list[Path], images: Path, categories: tuple[str, ...] = ()):
    for source in sources:
        category = source.stem.removeprefix("coco_pope_")
        if categories and category not in categories:
            continue
        for n, q in read_jsonl(source):
            missing = [f for f in ("question_id", "image", "text", "label") if f not in q]
            if missing:
                raise ConversionError(f"{source}: line {n}: missing {', '.join(missing)}")
            yield {"question_id": f"{category}/{q['question_id']}", "image": q["image"], "text": q["text"],
                   "answer": q["label"], "category": category}


@converter("mme", "MME's release folder (MME_Benchmark_release_version: a folder per category, each image's "
                  "questions in a .txt beside it or under questions_answers_YN/); image_root: that folder")
def mme(sources: list[Path], images: Path):
    for root in sources:
        if not root.is_dir():
            raise ConversionError(f"{root}: MME's release is a folder of categories")
        for category in sorted(p for p in root.iterdir() if p.is_dir()):
            qa = category / "questions_answers_YN"
            texts = sorted(qa.glob("*.txt")) if qa.is_dir() else sorted(category.glob("*.txt"))
            pictures = category / "images" if (category / "images").is_dir() else category
            for text in texts:
                image = image_beside(pictures, text.stem)
                if image is None:
                    raise ConversionError(f"{text}: no image {text.stem}.* in {pictures}")
                for n, line in enumerate(text.read_text(encoding="utf-8").splitlines(), start=1):
                    if not line.strip():
                        continue
                    question, sep, answer = line.rpartition("\t")
                    if not sep:
                        raise ConversionError(f"{text}: line {n}: expected 'question<TAB>answer'")
                    yield {"question_id": f"{category.name}/{text.stem}/{n}",
                           "image": str(image.relative_to(root)), "text": question.strip(), "answer": answer.strip(),
                           "category": category.name, "group": f"{category.name}/{text.stem}"}
