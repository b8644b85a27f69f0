"""QueCC and TokenPacker are their references' modules: the reference's saved ``mm_projector.bin``
loads strictly through ``vision.projector_from`` and gives the reference's output, at every V of
the paper's grid, at the study's widths.

The golden outputs (tests/fixtures/reference/golden.npz) were computed by running the reference
code itself — locuslab/llava-token-compression @ bdedebd (QueCC) and CircleRadon/TokenPacker @
771a16e, each built by its repository's ``build_vision_projector`` — on the deterministic weights
and inputs of tests/support/reference_inputs.py, in float32 (tests/fixtures/reference/make_golden.py says
how; golden.json holds the provenance, the reference's parameter names and its parameter counts).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.reference_inputs import compressor_inputs, state
from workloads.compressors import CompressorInputs, Shape, build_compressor, names
from workloads.compressors import kind as compressor_kind
from workloads.model import Projector
from workloads.weights import WeightsMismatch, expected_shapes, load_into, plan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
DOC = json.loads((FIXTURES / "golden.json").read_text())
GRID, DIM, LAYERS, HEADS, TEXT, BATCH = (DOC[k] for k in ("grid", "dim", "layers", "heads", "text", "batch"))
CASES = sorted(DOC["keys"], key=lambda c: (c.split("_v")[0], int(c.split("_v")[1])))


class Holder(torch.nn.Module):
    """The two parts a VLM starts from ``mm_projector.bin`` (the rest of a CLIP-L VLM is not needed)."""

    def __init__(self, compressor: str, v: int):
        super().__init__()
        self.compressor = build_compressor(compressor, v, GRID, DIM, TEXT, HEADS, LAYERS)
        self.projector = Projector(DIM, TEXT)


@pytest.fixture(scope="module")
def inputs():
    features, layers, text = compressor_inputs(GRID, DIM, LAYERS, TEXT, BATCH)
    return CompressorInputs(torch.from_numpy(features), GRID, tuple(torch.from_numpy(x) for x in layers),
                            torch.from_numpy(text))


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "golden.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _reference_file(case: str, path: Path) -> Path:
    """The reference's mm_projector.bin for ``case``: its own parameter names, as LLaVA saves them."""
    shapes = {k.removeprefix("model.mm_projector."): tuple(s) for k, s in DOC["keys"][case].items()}
    torch.save({f"model.mm_projector.{k}": torch.from_numpy(w) for k, w in state(shapes).items()}, path)
    return path


def test_the_golden_outputs_cover_the_papers_grid():
    quecc = sorted(int(c.split("_v")[1]) for c in CASES if c.startswith("quecc"))
    packer = sorted(int(c.split("_v")[1]) for c in CASES if c.startswith("tokenpacker"))
    assert quecc == [1, 4, 16, 36, 64, 144] and packer == [1, 4, 16, 36, 64, 144, 576]
    assert "bdedebd" in DOC["provenance"]["quecc"] and "771a16e" in DOC["provenance"]["tokenpacker"]


@pytest.mark.parametrize("case", CASES)
def test_the_reference_mm_projector_loads_strictly_and_gives_the_references_output(case, inputs, golden, tmp_path):
    compressor, v = case.split("_v")[0], int(case.split("_v")[1])
    torch.manual_seed(1)
    model = Holder(compressor, v).eval()
    load_into(model, str(_reference_file(case, tmp_path / "mm_projector.bin")), "projector")
    with torch.no_grad():
        out = model.projector(model.compressor(inputs)).numpy()
    assert out.shape == golden[case].shape == (BATCH, v, TEXT)
    assert np.abs(out - golden[case]).max() <= 1e-5, np.abs(out - golden[case]).max()


@pytest.mark.parametrize("compressor,v", [("quecc", 36), ("tokenpacker", 144)])
def test_parameter_counts_at_the_studys_size_equal_the_references(compressor, v):
    ref = DOC["parameter_counts"][compressor]
    with torch.device("meta"):
        built = build_compressor(compressor, v, GRID, DIM, ref["llm_hidden"], HEADS, LAYERS)
        mlp = Projector(DIM, ref["llm_hidden"])
    assert sum(p.numel() for p in built.parameters()) == ref["compressor"]  # QueCC: 21,008,384
    assert sum(p.numel() for p in mlp.parameters()) == ref["projector"]
    pure = compressor_kind(compressor).parameter_shapes(Shape(v, GRID, DIM, ref["llm_hidden"], HEADS, LAYERS))
    assert sum(int(np.prod(s)) for s in pure.values()) == ref["compressor"]


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("v,grid,layers", [(1, 4, 2), (4, 4, 1), (16, 8, 3)])
def test_the_shapes_a_kind_declares_are_the_modules_own(name, v, grid, layers):
    """validate checks a weights file against the pure shapes; the cell loads against the module's."""
    if compressor_kind(name).refusal(v, grid) is not None:
        v = grid * grid  # `none` keeps every patch
    s = Shape(v, grid, 8, 12, 2, layers)
    module = build_compressor(name, v, grid, 8, 12, 2, layers)
    assert compressor_kind(name).parameter_shapes(s) == {k: tuple(t.shape) for k, t in module.state_dict().items()}


def test_a_file_that_does_not_fit_names_its_missing_and_unexpected_keys_in_one_line(tmp_path):
    shapes = {k: tuple(s) for k, s in DOC["keys"]["quecc_v4"].items()}
    shapes.pop("model.mm_projector.0.k_proj.0.weight")
    shapes["model.mm_projector.0.kv_mlps.0.0.weight"] = (1024, 1024)  # vlmscale's old QueCC
    shapes["model.mm_projector.1.weight"] = (8, 1024)
    expected = expected_shapes("quecc", Shape(4, GRID, DIM, TEXT, HEADS, LAYERS))
    with pytest.raises(WeightsMismatch) as e:
        plan(shapes, expected, "quecc", "projector", "spec.vision.projector_from: x.bin")
    line = str(e.value)
    assert "\n" not in line and line.startswith("spec.vision.projector_from: x.bin: does not fit the compressor and "
                                                "MLP projector LLaVA saves for compressor 'quecc'")
    assert "missing model.mm_projector.0.k_proj.0.weight" in line
    assert "unexpected model.mm_projector.0.kv_mlps.0.0.weight" in line
    assert "shape model.mm_projector.1.weight is [8, 1024], the model's is [16, 1024]" in line


def test_a_tokenpacker_file_does_not_start_quecc(tmp_path):
    shapes = {k: tuple(s) for k, s in DOC["keys"]["tokenpacker_v4"].items()}
    with pytest.raises(WeightsMismatch, match=r"missing model\.mm_projector\.0\.clip_attn.* and \d+ more; "
                                              r"unexpected model\.mm_projector\.clip_attn"):
        plan(shapes, expected_shapes("quecc", Shape(4, GRID, DIM, TEXT, HEADS, LAYERS)), "quecc", "projector", "x")


def test_a_vlmscale_checkpoint_still_starts_one_part(tmp_path):
    torch.manual_seed(0)
    donor = Holder("quecc", 4)
    path = tmp_path / "model.pt"
    torch.save({**{f"compressor.{k}": t for k, t in donor.compressor.state_dict().items()},
                **{f"projector.{k}": t for k, t in donor.projector.state_dict().items()},
                "llm.lm_head.weight": torch.zeros(2, 2)}, path)
    torch.manual_seed(5)
    model = Holder("quecc", 4)
    load_into(model, str(path), "compressor")
    assert all(torch.equal(a, b) for a, b in zip(model.compressor.state_dict().values(),
                                                 donor.compressor.state_dict().values()))
    assert not torch.equal(model.projector.net[0].weight, donor.projector.net[0].weight)  # asked for one part
    load_into(model, str(path), "projector")
    assert torch.equal(model.projector.net[0].weight, donor.projector.net[0].weight)


@pytest.mark.parametrize("compressor", ["quecc", "tokenpacker"])
def test_a_cell_starts_both_parts_from_a_reference_file_through_projector_from(compressor, tmp_path):
    """vision.projector_from → ModelConfig → build_vlm: the compressor and the MLP of a file saved in
    its reference's names (QueCC's Sequential indices, TokenPacker's own attribute names)."""
    from workloads.config import ModelConfig
    from workloads.model import build_vlm
    from workloads.tokenizer import synthetic_tokenizer

    tok = synthetic_tokenizer()
    cfg = ModelConfig(llm="tiny-xs", vision="vit-micro", compressor=compressor, visual_tokens=4, kv_layers=(-1,))
    torch.manual_seed(0)
    donor = build_vlm(cfg, tok)
    ours = {**{f"compressor.{k}": t for k, t in donor.compressor.state_dict().items()},
            **{f"projector.{k}": t for k, t in donor.projector.state_dict().items()}}
    pairs = compressor_kind(compressor).reference_layout
    saved = {}
    for key, t in ours.items():
        ref, mine = max((p for p in pairs if key.startswith(p[1])), key=lambda p: len(p[1]))
        saved[f"model.mm_projector.{ref}{key[len(mine):]}"] = t.clone()
    torch.save(saved, tmp_path / "mm_projector.bin")
    assert any(".clip_attn." in k for k in saved)  # the reference's names, not vlmscale's
    torch.manual_seed(7)
    model = build_vlm(dataclasses.replace(cfg, projector_from=str(tmp_path / "mm_projector.bin")), tok)
    for part in ("compressor", "projector"):
        mine, theirs = getattr(model, part).state_dict(), getattr(donor, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
