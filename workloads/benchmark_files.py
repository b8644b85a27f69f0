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
from .scorers import SCORERS, BenchmarkScore, Scored


class BenchmarkFormatError(ValueError):
    pass


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


def load_questions(b: BenchmarkConfig) -> list[dict]:
    """The benchmark's questions; the first line its scorer cannot score is an error naming it."""
    found = read_questions(b.questions)
    problems = question_problems(b, found)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BenchmarkFormatError(problems[0] + more)
    return [q for _, q in found]


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
