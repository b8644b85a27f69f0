"""A benchmark's files, pure (no torch: ``validate`` and ``vlmscale rescore`` use them too).

* its questions, read as its scorer reads them: each line a JSON object with the question's
  ``text`` and the fields its rule reads; a line that is not one, or lacks what its rule needs,
  is named by file, line (from 1) and field — every line checked at ``validate``;
* a cell's answers, ``answers/<benchmark>.jsonl``: per question its id, prompt, generated answer,
  what the rule read, its score and the question itself, so they can be scored again;
* the metrics a benchmark's score gives (``error/<name>``, ``<name>/<detail>``, the mean ``error``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import BenchmarkConfig
from .failures import DataError
from .scorers import SCORERS, BenchmarkScore, Scored


class BenchmarkFormatError(DataError):
    """A benchmark line its scorer cannot score (``path``: the questions file)."""


def read_questions(path: str | Path) -> list[tuple[int, dict | str]]:
    """(line number, the question — or why the line is not one) of every non-empty line."""
    out: list[tuple[int, dict | str]] = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                out.append((n, f"not UTF-8 (byte {e.start + 1})"))
                continue
            if not line.strip():
                continue
            try:
                q = json.loads(line)
            except json.JSONDecodeError as e:
                out.append((n, f"not valid JSON ({e.msg}, column {e.colno})"))
                continue
            out.append((n, q if isinstance(q, dict) else "not a JSON object"))
    return out


def question_problems(b: BenchmarkConfig, found: list[tuple[int, dict | str]] | None = None) -> list[str]:
    """Every line of the benchmark's file that its scorer cannot score: ``file: line N: field: why``."""
    path = Path(b.questions)
    found = read_questions(path) if found is None else found
    scorer = SCORERS[b.scorer]
    out = [f"{path}: line {n}: {q}" for n, q in found if isinstance(q, str)]
    good = [(n, q) for n, q in found if isinstance(q, dict)]
    for n, q in good:
        if "text" not in q:
            out.append(f"{path}: line {n}: text: missing (the question)")
        out += [f"{path}: line {n}: {p}" for p in scorer.problems(q)]
    out += [f"{path}: line {good[i][0]}: {p}" for i, p in scorer.group_problems([q for _, q in good])]
    if not found:
        out.append(f"{path}: no questions")
    return out


def image_paths(b: BenchmarkConfig, found: list[tuple[int, dict | str]]) -> list[tuple[int, Path]]:
    """(line, where its image is) of every question with an image."""
    base = Path(b.image_root) if b.image_root else Path(b.questions).parent
    return [(n, base / q["image"]) for n, q in found if isinstance(q, dict) and isinstance(q.get("image"), str)]


def missing_images_line(b: BenchmarkConfig, found: list[tuple[int, dict | str]]) -> str | None:
    """The first question whose image is not where the benchmark says (the rest counted), or None."""
    images = image_paths(b, found)
    missing = [(n, p) for n, p in images if not p.is_file()]
    if not missing:
        return None
    n, image = missing[0]
    fix = ("set its image_root to the folder its images are relative to" if len(missing) == len(images) else
           "add the missing images, or drop their questions")
    more = f" (and {len(missing) - 1} more questions without theirs)" if len(missing) > 1 else ""
    return f"{b.questions}: line {n}: image: {image} does not exist{more}; {fix}"


def check_benchmark(b: BenchmarkConfig) -> None:
    """What a cell checks before it trains: every line scorable, every image present — so a
    benchmark's defect costs seconds, not the training before the evaluation."""
    found = read_questions(b.questions)
    load_questions(b, found)
    missing = missing_images_line(b, found)
    if missing:
        raise BenchmarkFormatError(f"benchmark {b.name}: {missing}", b.questions)


def load_questions(b: BenchmarkConfig, found: list[tuple[int, dict | str]] | None = None) -> list[dict]:
    """The benchmark's questions; the first line its scorer cannot score is an error naming it."""
    found = read_questions(b.questions) if found is None else found
    problems = question_problems(b, found)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BenchmarkFormatError(problems[0] + more, b.questions)
    return [q for _, q in found if isinstance(q, dict)]  # every line is a question once no problem is found


def benchmark_metrics(name: str, result: BenchmarkScore) -> dict[str, float]:
    """``error/<benchmark>`` = 1 − its accuracy; its rule's other numbers as ``<benchmark>/<detail>``."""
    return {f"error/{name}": 1.0 - result.accuracy, **{f"{name}/{k}": float(v) for k, v in result.details.items()}}


def mean_error(metrics: dict[str, float], names: list[str]) -> float:
    """The cell's ``error``: the mean over its benchmarks' errors (the study's average)."""
    errors = [metrics[f"error/{n}"] for n in names]
    return sum(errors) / len(errors) if errors else float("nan")


def write_answers(directory: str, name: str, questions: list[dict], prompts: list[str], predictions: list[str],
                  scored: list[Scored]) -> None:
    """``<directory>/<name>.jsonl``: per question its id, prompt, answer, what the rule read, its
    score and the question itself (so a rescore needs nothing else), in the file's order."""
    from .storage import path_of, write_text_atomic

    lines = [json.dumps({"question_id": q.get("question_id", i), "prompt": p, "answer": a, "parsed": s.parsed,
                         "score": s.score, "question": q}, ensure_ascii=False, default=str)
             for i, (q, p, a, s) in enumerate(zip(questions, prompts, predictions, scored))]
    write_text_atomic(path_of(directory) / f"{name}.jsonl", "".join(line + "\n" for line in lines))


ANSWER_FIELDS = ("question", "answer", "prompt")


def json_lines(text: str, where: str, error: type[Exception] = BenchmarkFormatError):
    """(line number from 1, object) of every non-empty line; a line that is not a JSON object is
    ``error`` naming ``where`` and the line."""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{where}: line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise error(f"{where}: line {n}: not a JSON object")
        yield n, record


def read_answers(path: str | Path) -> list[dict]:
    """A cell's answers to one benchmark, in the file's order; a line that is not an answer record
    is a :class:`BenchmarkFormatError` naming the file and the line."""
    from .storage import path_of

    out = []
    for n, record in json_lines(path_of(path).read_text(), str(path)):
        if any(f not in record for f in ANSWER_FIELDS) or not isinstance(record["question"], dict):
            raise BenchmarkFormatError(f"{path}: line {n}: not an answer record (needs {', '.join(ANSWER_FIELDS)})")
        out.append(record)
    return out
