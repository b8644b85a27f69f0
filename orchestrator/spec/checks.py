"""Whether an experiment's models and data can be used here: every problem at once, one line
each, naming the field and the path — in seconds, before anything is written or started."""

from __future__ import annotations

from pathlib import Path

from workloads.compressors import VisualTokenError, check_visual_tokens

from ..errors import SpecError
from .artifacts import TOKENIZER_FILES, hidden_size, model_problems
from .document import candidate_problem
from .experiment import Experiment


def _llm_fields(exp: Experiment) -> list[tuple[str, str]]:
    """(field, reference) of every LLM the experiment trains or profiles, each once."""
    g = exp.spec.grid
    fields = [(f"spec.grid.llms[{i}]", m) for i, m in enumerate(g.llms or [])]
    fields += [(f"spec.grid.points[{i}].llm", p.llm) for i, p in enumerate(g.points or [])]
    fields += [(f"spec.profile.llms[{i}]", m) for i, m in enumerate(exp.spec.profile.llms)]
    fields += [(f"spec.fit.candidates.llms[{i}]", m) for i, m in enumerate(exp.spec.fit.candidates.llms or [])]
    seen: dict[str, str] = {}
    for field, ref in fields:
        seen.setdefault(ref, field)
    return [(field, ref) for ref, field in seen.items()]


def problems(exp: Experiment) -> list[str]:
    s = exp.spec
    out: list[str] = []
    tokenizer = s.data.tokenizer
    for field, ref in _llm_fields(exp):
        loc = exp.locate_llm(ref)
        if loc.kind == "preset" and s.data.source != "synthetic" and tokenizer is None:
            out.append(f"{field}: the LLM preset {ref!r} has no tokenizer for {s.data.source} data; set "
                       "spec.data.tokenizer to a tokenizer's directory or Hugging Face id")
        out += model_problems(field, loc, () if tokenizer else ("tokenizer",), "causal LM")
    if tokenizer is not None:
        loc = exp.locate_llm(tokenizer)
        if loc.kind == "local":
            if not any((Path(loc.location) / f).is_file() for f in TOKENIZER_FILES):
                out.append(f"spec.data.tokenizer: {loc.location} holds no tokenizer ({' or '.join(TOKENIZER_FILES)})")
        elif loc.kind != "preset":
            out += model_problems("spec.data.tokenizer", loc, (), "tokenizer")
    vision = exp.locate_vision(s.vision.model)
    out += model_problems("spec.vision.model", vision, ("image processor",), "vision tower")
    grid = s.vision.grid(vision)
    if grid is not None:
        for v, compressor in sorted({(c[1], c[2]) for c in s.grid.combinations()}):
            try:
                check_visual_tokens(compressor, v, grid)
            except VisualTokenError as e:
                out.append(f"spec.grid.visual_tokens: {v} with compressor {compressor!r}: {e}")
        why = candidate_problem(s, grid)
        if why:
            out.append(f"spec.{why}")
    if s.data.source == "llava":
        for field in ("llava_train", "llava_eval"):
            path = exp.locate_file(getattr(s.data, field))
            if path is not None and not path.startswith("s3://") and not Path(path).is_file():
                out.append(f"spec.data.{field}: {path}: no such file")
        root = exp.locate_file(s.data.image_root)
        if root is not None and not root.startswith("s3://") and not Path(root).is_dir():
            out.append(f"spec.data.image_root: {root}: no such directory")
    for i, st in enumerate(s.training.stages):
        path = exp.locate_file(st.data)
        if path is not None and not path.startswith("s3://") and not Path(path).is_file():
            out.append(f"spec.training.stages[{i}].data: {path}: no such file")
    for field in ("projector_from", "compressor_from"):
        path = exp.locate_file(getattr(s.vision, field))
        if path is not None and not path.startswith("s3://"):
            if not Path(path).is_file():
                out.append(f"spec.vision.{field}: {path}: no such file")
            elif grid is not None:
                out += _weights_problems(exp, field, path, vision, grid)
    for i, b in enumerate(s.evaluation.benchmarks):
        questions, root = exp.locate_file(b.questions), exp.locate_file(b.image_root)
        if not questions.startswith("s3://") and not Path(questions).is_file():
            out.append(f"spec.evaluation.benchmarks[{i}].questions: {questions}: no such file")
        if root is not None and not root.startswith("s3://") and not Path(root).is_dir():
            out.append(f"spec.evaluation.benchmarks[{i}].image_root: {root}: no such directory")
        elif Path(questions).is_file():
            out += _benchmark_problems(f"spec.evaluation.benchmarks[{i}]", b.name, b.scorer, Path(questions),
                                       Path(root) if root else None)
    return list(dict.fromkeys(out))


def _weights_problems(exp: Experiment, field: str, path: str, vision, grid: int) -> list[str]:
    """Whether the saved weights fit every cell they will start: keys and shapes against what each
    (LLM, V, compressor) of the grid builds (workloads/weights.py), one line per distinct problem."""
    from workloads.compressors import Shape
    from workloads.weights import fit_problem, readable

    s = exp.spec
    dim = hidden_size(vision)
    where = f"spec.vision.{field}: {path}"
    shapes, unreadable = readable(path, where)
    if shapes is None or dim is None:
        return [unreadable] if unreadable else []
    found = []
    for llm, v, compressor in sorted({c[:3] for c in s.grid.combinations()}):
        llm_dim = hidden_size(exp.locate_llm(llm))
        if llm_dim is None:
            continue
        try:
            check_visual_tokens(compressor, v, grid)
        except VisualTokenError:
            continue  # said above
        shape = Shape(v, grid, dim, llm_dim, s.vision.compressor_heads, len(s.vision.kv_layers))
        why = fit_problem(shapes, compressor, shape, field.removesuffix("_from"), where)
        if why:
            found.append(why)
    return list(dict.fromkeys(found))


SHOWN = 5  # problems named per benchmark file; the rest counted


def _benchmark_problems(field: str, name: str, scorer: str, questions: Path, root: Path | None) -> list[str]:
    """Every line of the benchmark against what its scorer reads (file, line, field), and every
    question's image where the benchmark says it is."""
    from workloads.benchmark_files import question_problems, read_questions
    from workloads.config import BenchmarkConfig

    found = read_questions(questions)
    out = question_problems(BenchmarkConfig(name, str(questions), scorer), found)
    base = root or questions.parent
    missing = [(n, q["image"]) for n, q in found if isinstance(q, dict) and isinstance(q.get("image"), str)
               and not (base / q["image"]).is_file()]
    if missing:
        n, image = missing[0]
        fix = "set its image_root to the folder its images are relative to" if len(missing) == len(found) else \
            "add the missing images, or drop their questions"
        more = f" (and {len(missing) - 1} more questions without theirs)" if len(missing) > 1 else ""
        out.append(f"{field}: {questions}: line {n}: image: {base / image} does not exist{more}; {fix}")
    if len(out) > SHOWN:
        out = out[:SHOWN] + [f"{questions}: and {len(out) - SHOWN} more problems"]
    return out


def check_artifacts(exp: Experiment, source: str | None = None) -> None:
    """Refuse an experiment whose models or data cannot be used here (SpecError listing them all)."""
    found = problems(exp)
    if found:
        head = f"{source or exp.name}: {len(found)} problem{'s' if len(found) > 1 else ''} with models or data"
        raise SpecError(head + ":\n  " + "\n  ".join(found))
