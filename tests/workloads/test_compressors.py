import pytest
import torch

from workloads.compressors import (
    CompressorInputs,
    VisualTokenError,
    build_compressor,
    check_visual_tokens,
    feasible_visual_tokens,
)

GRID, DIM, LLM_DIM = 24, 32, 48  # a 24x24 patch grid like CLIP ViT-L/14-336


def _inputs(batch=2, layers=2, query=True):
    torch.manual_seed(0)
    feats = torch.randn(batch, GRID * GRID, DIM)
    return CompressorInputs(
        features=feats,
        grid=GRID,
        layers=tuple(torch.randn(batch, GRID * GRID, DIM) for _ in range(layers)),
        query=torch.randn(batch, LLM_DIM) if query else None,
    )


@pytest.mark.parametrize("name", ["avgpool", "resampler", "quecc", "tokenpacker"])
@pytest.mark.parametrize("v", [1, 4, 16, 36, 64])
def test_compressor_returns_exactly_v_tokens(name, v):
    comp = build_compressor(name, v, GRID, DIM, LLM_DIM, heads=4, num_layers=2)
    x = _inputs()
    x.features.requires_grad_(True)
    out = comp(x)
    assert out.shape == (2, v, DIM)
    out.sum().backward()  # differentiable end to end, down to the vision features
    assert x.features.grad is not None
    assert all(p.grad is not None for p in comp.parameters())


def test_none_keeps_every_patch():
    comp = build_compressor("none", GRID * GRID, GRID, DIM, LLM_DIM, heads=4, num_layers=2)
    x = _inputs()
    assert torch.equal(comp(x), x.features)


def test_avgpool_is_the_mean_of_each_region():
    comp = build_compressor("avgpool", 4, GRID, DIM, LLM_DIM, heads=4, num_layers=2)
    x = _inputs()
    out = comp(x)
    grid = x.features.reshape(2, GRID, GRID, DIM)
    top_left = grid[:, :12, :12].mean(dim=(1, 2))
    torch.testing.assert_close(out[:, 0], top_left)


@pytest.mark.parametrize("name", ["quecc", "tokenpacker"])
def test_region_queries_see_only_their_own_region(name):
    comp = build_compressor(name, 4, GRID, DIM, LLM_DIM, heads=4, num_layers=2).eval()
    x = _inputs(batch=1)
    base = comp(x)
    # perturb the keys/values of the bottom-right region only: tokens 0..2 must not change
    layers = []
    for layer in x.layers:
        g = layer.clone().reshape(1, GRID, GRID, DIM)
        g[:, 12:, 12:] += 5.0
        layers.append(g.reshape(1, GRID * GRID, DIM))
    out = comp(CompressorInputs(x.features, GRID, tuple(layers), x.query))
    torch.testing.assert_close(out[:, :3], base[:, :3])
    assert not torch.allclose(out[:, 3], base[:, 3])


def test_quecc_depends_on_the_question():
    comp = build_compressor("quecc", 16, GRID, DIM, LLM_DIM, heads=4, num_layers=2).eval()
    x = _inputs(batch=1)
    other = CompressorInputs(x.features, GRID, x.layers, x.query + 1.0)
    assert not torch.allclose(comp(x), comp(other))


@pytest.mark.parametrize(
    "name,v,fragment",
    [
        ("avgpool", 5, "perfect square"),
        ("quecc", 7, "perfect square"),
        ("quecc", 25, "must divide 24"),
        ("tokenpacker", 25, "must divide 24"),
        ("tokenpacker", 8, "perfect square"),
        ("avgpool", 625, "at most 576"),
        ("none", 16, "must be 576"),
        ("resampler", 0, "positive integer"),
        ("pixelshuffle", 4, "unknown compressor"),
    ],
)
def test_impossible_v_is_refused_with_the_reason(name, v, fragment):
    with pytest.raises(VisualTokenError, match=fragment):
        check_visual_tokens(name, v, GRID)
    if name != "pixelshuffle":
        with pytest.raises(VisualTokenError, match=fragment):
            build_compressor(name, v, GRID, DIM, LLM_DIM, heads=4, num_layers=2)


@pytest.mark.parametrize("name", ["quecc", "tokenpacker"])
def test_region_compressors_make_every_v_of_the_study(name):
    assert feasible_visual_tokens(name, 24) == [1, 4, 9, 16, 36, 64, 144, 576]


def test_tokenpacker_at_every_patch_attends_each_query_to_its_own_patch():
    """V = g² (no compression): one key per region, so the attention's softmax is 1 and each token
    is the value path of its own patch alone."""
    comp = build_compressor("tokenpacker", GRID * GRID, GRID, DIM, LLM_DIM, heads=4, num_layers=2).eval()
    x = _inputs(batch=1)
    base = comp(x)
    layers = tuple(layer.clone() for layer in x.layers)
    for layer in layers:
        layer[:, 5] += 3.0
    out = comp(CompressorInputs(x.features, GRID, layers, None))
    changed = (out - base).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [5]


def test_tokenpacker_starts_every_linear_as_its_reference_does():
    """torch's trunc_normal_ with std 0.02 (its bounds ±2 are absolute: in effect a normal of std 0.02)
    and zero bias, its MLP projector too; the default init would give std ~ 1/sqrt(3·fan_in)."""
    from workloads.config import ModelConfig
    from workloads.model import build_vlm
    from workloads.tokenizer import synthetic_tokenizer

    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="tokenpacker", visual_tokens=4,
                                  kv_layers=(-1,)), synthetic_tokenizer())
    for linear in (model.compressor.query_proj, model.compressor.key_net[0], model.compressor.attn.out_proj,
                   model.projector.net[0], model.projector.net[2]):
        w = linear.weight.detach()
        assert 0.015 < float(w.std()) < 0.025 and abs(float(w.mean())) < 0.005
        assert linear.bias is None or not linear.bias.any()
