"""examples/paper.yaml is the study as its scripts run it: the law's grid on TokenPacker with QueCC
beside it, the two-stage recipe, the nine reasoning benchmarks by their own rules with the OCR
series apart, the paper's N and error — and it validates as a spec (its files live on a cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.spec import load

ROOT = Path(__file__).resolve().parents[3]
PAPER = ROOT / "examples" / "paper.yaml"
NINE = ["mme", "gqa", "ai2d", "mmbench", "mmmu", "scienceqa", "mathvista", "pope", "chartqa"]


def test_the_paper_spec_is_the_papers_study():
    exp = load(PAPER)
    s = exp.spec
    cells = exp.cells()
    packer = [c for c in cells if c.compressor == "tokenpacker"]
    assert len(packer) == 28 and {c.visual_tokens for c in packer} == {1, 4, 16, 36, 64, 144, 576}
    assert {c.llm for c in packer} == {f"Qwen/Qwen1.5-{n}" for n in ("0.5B", "1.8B", "4B", "7B")}
    assert {(c.llm, c.visual_tokens) for c in cells if c.compressor == "quecc"} == \
        {("Qwen/Qwen1.5-7B", v) for v in (1, 4, 16, 36, 64)}
    assert (s.fit.parameters, s.fit.compressors, s.fit.metric) == ("nominal", ["tokenpacker"], "error/reasoning")
    assert s.evaluation.groups == {"reasoning": NINE, "ocr": ["textvqa"]}
    assert {b.name: b.scorer for b in s.evaluation.benchmarks} == {n: n for n in [*NINE, "textvqa"]}
    t = s.training
    assert t.betas == [0.9, 0.999] and s.data.conversation == "vicuna_v1" and s.data.group_by_modality_length
    align, instruct = t.stages
    assert (align.lr, align.batch_size, align.image_aspect_ratio, align.trainable) == \
        (1e-3, 256, "square", ["compressor", "projector"])
    assert (t.lr, t.batch_size, instruct.image_aspect_ratio) == (2e-5, 128, "pad")
    assert (s.vision.kv_layers, s.vision.feature_layer, s.vision.compressor_heads) == ([12, 16, 22, 23], -2, 8)
    cell = packer[0].config
    assert cell.eval.new_tokens(next(b for b in cell.eval.benchmarks if b.name == "mmbench")) == 1024
    assert cell.eval.new_tokens(next(b for b in cell.eval.benchmarks if b.name == "gqa")) == 128


def test_the_paper_spec_validates_without_its_files():
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(PAPER), "--syntax-only"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "paper-qwen15: 33 cells" in r.stdout, r.stderr
