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


def problems(exp: Experiment, deep: bool = False) -> list[str]:
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
    out += _llava_problems(exp, deep)
    for field in ("projector_from", "compressor_from"):
        path = exp.locate_file(getattr(s.vision, field))
        if path is not None and not path.startswith("s3://"):
            if not Path(path).is_file():
                out.append(f"spec.vision.{field}: {path}: no such file")
            elif grid is not None:
                out += _weights_problems(exp, field, path, vision, grid)
    for i, b in enumerate(s.evaluation.benchmarks):
        questions, root = exp.locate_file(b.questions) or b.questions, exp.locate_file(b.image_root)
        if not questions.startswith("s3://") and not Path(questions).is_file():
            out.append(f"spec.evaluation.benchmarks[{i}].questions: {questions}: no such file")
        if root is not None and not root.startswith("s3://") and not Path(root).is_dir():
            out.append(f"spec.evaluation.benchmarks[{i}].image_root: {root}: no such directory")
        elif Path(questions).is_file():
            out += _benchmark_problems(f"spec.evaluation.benchmarks[{i}]", b.name, b.scorer, Path(questions),
                                       Path(root) if root else None, deep)
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


def _llava_problems(exp: Experiment, deep: bool) -> list[str]:
    """Every LLaVA file the cells read — every record, every image's path, with ``deep`` every
    image decoded (workloads/data/checks.py) — each file once."""
    from workloads.data.checks import llava_problems

    s = exp.spec
    files = []
    if s.data.source == "llava":
        files = [(f"spec.data.{f}", exp.locate_file(getattr(s.data, f))) for f in ("llava_train", "llava_eval")]
    files += [(f"spec.training.stages[{i}].data", exp.locate_file(st.data)) for i, st in enumerate(s.training.stages)]
    out: list[str] = []
    root = exp.locate_file(s.data.image_root)
    if root is not None and not root.startswith("s3://") and not Path(root).is_dir():
        out.append(f"spec.data.image_root: {root}: no such directory")
        root = "/nonexistent"  # every image is missing: say it once, above
    seen = set()
    for field, path in files:
        if path is None or path.startswith("s3://") or path in seen:
            continue
        seen.add(path)
        if not Path(path).is_file():
            out.append(f"{field}: {path}: no such file")
        elif root != "/nonexistent":
            out += llava_problems(path, root, deep)
    return out


SHOWN = 5  # problems named per benchmark file; the rest counted


def _benchmark_problems(field: str, name: str, scorer: str, questions: Path, root: Path | None,
                        deep: bool) -> list[str]:
    """Every line of the benchmark against what its scorer reads (file, line, field), every
    question's image where the benchmark says it is, and with ``deep`` every image decoded."""
    from workloads.benchmark_files import image_paths, missing_images_line, question_problems, read_questions
    from workloads.config import BenchmarkConfig
    from workloads.data.checks import undecodable

    b = BenchmarkConfig(name, str(questions), scorer, image_root=None if root is None else str(root))
    found = read_questions(questions)
    out = question_problems(b, found)
    missing = missing_images_line(b, found)
    if missing:
        out.append(f"{field}: {missing}")
    if deep:
        present = [(n, p) for n, p in image_paths(b, found) if p.is_file()]
        out += [f"{questions}: line {n}: image: {p} cannot be decoded ({why})"
                for (n, p), why in undecodable(present, f"{questions.name}: decoding images")]
    if len(out) > SHOWN:
        out = out[:SHOWN] + [f"{questions}: and {len(out) - SHOWN} more problems"]
    return out


def check_artifacts(exp: Experiment, source: str | None = None, deep: bool = False) -> None:
    """Refuse an experiment whose models or data cannot be used here (SpecError listing them all);
    ``deep``: also decode every training image."""
    found = problems(exp, deep)
    if found:
        head = f"{source or exp.name}: {len(found)} problem{'s' if len(found) > 1 else ''} with models or data"
        raise SpecError(head + ":\n  " + "\n  ".join(found))
