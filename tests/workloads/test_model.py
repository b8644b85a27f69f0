import pytest
import torch

from orchestrator.scaling.cost import llm_prefill_flops, vlm_inference_flops
from workloads.config import ModelConfig
from workloads.data.batch import Collator, ImageTransform
from workloads.data.synthetic import SyntheticVQA
from workloads.evaluate import greedy_decode, score_batch
from workloads.flops import image_cost, model_image_cost
from workloads.model import build_vlm, meta_parameter_counts, parameter_counts
from workloads.presets import LLM_PRESETS, VISION_PRESETS
from workloads.tokenizer import synthetic_tokenizer


@pytest.fixture(scope="module")
def tok():
    return synthetic_tokenizer()


def _batch(tok, v, image_size=64, n=4, task="shapes"):
    ds = SyntheticVQA(task, "train", 50, seed=0)
    return Collator(tok, v, ImageTransform(image_size))([ds[i] for i in range(n)])


@pytest.mark.parametrize("llm", sorted(LLM_PRESETS))
def test_forward_backward_every_llm_preset(tok, llm):
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm=llm, vision="vit-micro", compressor="quecc", visual_tokens=4, freeze_vision=False), tok)
    out = model(**_batch(tok, 4).model_inputs())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5]) and any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("vision", sorted(VISION_PRESETS))
def test_forward_backward_every_vision_preset(tok, vision):
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm="tiny-xs", vision=vision, compressor="avgpool", visual_tokens=4, freeze_vision=False), tok)
    size = model.vision.config.image_size
    out = model(**_batch(tok, 4, image_size=size).model_inputs())
    out.loss.backward()
    assert model.vision.embeddings.patch_embedding.weight.grad is not None


def test_llm_presets_span_30x_in_non_embedding_parameters(tok):
    counts = {n: meta_parameter_counts(ModelConfig(llm=n), len(tok))["llm_params"] for n in LLM_PRESETS}
    assert max(counts.values()) / min(counts.values()) >= 30
    assert list(counts.values()) == sorted(counts.values())  # the presets are ordered by size


def test_analytic_preset_counts_match_the_models(tok):
    from workloads.presets import llm_non_embedding_params

    for name in LLM_PRESETS:
        assert llm_non_embedding_params(name) == meta_parameter_counts(ModelConfig(llm=name), len(tok))["llm_params"]


def test_meta_counts_match_a_built_model(tok):
    cfg = ModelConfig(llm="tiny-m", vision="vit-tiny")
    built = parameter_counts(build_vlm(cfg, tok))
    meta = meta_parameter_counts(cfg, len(tok))
    assert meta["llm_params"] == built["llm_params"] and meta["vision_params"] == built["vision_params"]
    # tied embeddings: total = non-embedding + vocab x hidden, counted once
    assert built["llm_params_total"] - built["llm_params"] == len(tok) * LLM_PRESETS["tiny-m"].hidden


def test_placeholder_count_mismatch_is_refused(tok):
    model = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4), tok)
    batch = _batch(tok, 1)  # one placeholder per sample, four visual tokens
    with pytest.raises(ValueError, match="do not match: 4 <image> tokens in the batch, 16 visual tokens"):
        model(**batch.model_inputs())


def test_teacher_forced_exact_match_equals_literal_greedy_decoding(tok):
    torch.manual_seed(1)
    model = build_vlm(ModelConfig(llm="tiny-s", vision="vit-micro", compressor="avgpool", visual_tokens=4, freeze_vision=False), tok).eval()
    # a couple of SGD steps so predictions are not all one token
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(15):
        loss = model(**_batch(tok, 4, n=16).model_inputs()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    batch = _batch(tok, 4, n=24, task="text")
    with torch.no_grad():
        exact, _, _ = score_batch(model, batch)
    for i in range(24):
        gold = batch.labels[i][batch.labels[i] != -100].tolist()
        decoded = greedy_decode(model, batch, i, eos_id=tok.eos_token_id, max_new_tokens=len(gold) + 2)
        assert bool(exact[i]) == (decoded[: len(gold)] == gold)


def test_flops_formula_matches_a_hand_computation():
    # 2 * N * (Q + V): N = 1e6, Q = 50, V = 16
    assert llm_prefill_flops(1_000_000, 16, 50) == 2 * 1_000_000 * 66 == 132_000_000
    c = image_cost(vision_params=80_000, vision_tokens=65, compressor_flops=1000, reads_question=True)
    assert c.vision_flops == 2 * 80_000 * 65 == 10_400_000
    # the whole VLM: the LLM's prefill, the tower, the compressor and its pass over the question (Q = 50)
    assert vlm_inference_flops(1_000_000, 16, 50, c.vision_flops, c.compressor_flops, c.reads_question) \
        == 132_000_000 + 10_400_000 + 1000 + 2 * 1_000_000 * 50
    assert vlm_inference_flops(1_000_000, 16, 50, c.vision_flops, c.compressor_flops, False) \
        == 132_000_000 + 10_400_000 + 1000


def test_model_image_cost_counts_the_tower_once_and_the_projector_per_token(tok):
    small = build_vlm(ModelConfig(llm="tiny-s", vision="vit-tiny", compressor="avgpool", visual_tokens=1), tok)
    large = build_vlm(ModelConfig(llm="tiny-s", vision="vit-tiny", compressor="avgpool", visual_tokens=16), tok)
    a, b = model_image_cost(small), model_image_cost(large)
    assert a.vision_flops == b.vision_flops == 2 * parameter_counts(small)["vision_params"] * 65
    projector = parameter_counts(small)["projector_params"]
    assert b.compressor_flops - a.compressor_flops == 2 * projector * 15  # avgpool's own count does not move
    assert not a.reads_question
    quecc = build_vlm(ModelConfig(llm="tiny-s", vision="vit-tiny", compressor="quecc", visual_tokens=4), tok)
    assert model_image_cost(quecc).reads_question


def test_pretrained_code_path_loads_saved_models(tmp_path, tok):
    """The real-scale path (names/paths) on models this test saves: AutoModel + AutoModelForCausalLM."""
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    from workloads.presets import llm_config, vision_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(llm_config("tiny-xs", len(tok))).save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    CLIPVisionModel(vision_config("vit-micro")).save_pretrained(tmp_path / "vision")
    from workloads.tokenizer import load_tokenizer

    tok2 = load_tokenizer(str(tmp_path / "llm"), "llava")
    cfg = ModelConfig(llm=str(tmp_path / "llm"), vision=str(tmp_path / "vision"), compressor="quecc",
                      visual_tokens=4, freeze_vision=True)
    model = build_vlm(cfg, tok2)
    assert not any(p.requires_grad for p in model.vision.parameters())
    out = model(**_batch(tok2, 4).model_inputs())
    out.loss.backward()
    assert meta_parameter_counts(cfg, len(tok2))["llm_params"] == parameter_counts(model)["llm_params"]


def test_gradient_checkpointing_covers_every_trainable_tower(tok):
    frozen = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4,
                         freeze_vision=True), tok)
    frozen.enable_gradient_checkpointing()
    assert frozen.llm.is_gradient_checkpointing and not frozen.vision.is_gradient_checkpointing
    trainable = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4,
                                      freeze_vision=False), tok)
    trainable.enable_gradient_checkpointing()
    assert trainable.llm.is_gradient_checkpointing and trainable.vision.is_gradient_checkpointing
    trainable.train()
    trainable(**_batch(tok, 4).model_inputs()).loss.backward()


def test_real_shapes_have_the_published_sizes(tok):
    """Random-weight real architectures (meta device: nothing allocated): Qwen2-0.5B has ~358M
    non-embedding parameters, CLIP ViT-L/14-336 ~303M, and the analytic count agrees."""
    from workloads.presets import REAL_LLM_SHAPES, llm_non_embedding_params

    cfg = ModelConfig(llm="qwen2-0.5b-shape", vision="clip-vit-l-336-shape")
    counts = meta_parameter_counts(cfg, len(tok))
    assert counts["llm_params"] == pytest.approx(3.58e8, rel=0.01)
    assert counts["vision_params"] == pytest.approx(3.03e8, rel=0.01)
    for name in REAL_LLM_SHAPES:
        assert llm_non_embedding_params(name) == meta_parameter_counts(ModelConfig(llm=name), len(tok))["llm_params"]


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_vision_pretraining_takes_any_number_of_steps(tmp_path, steps):
    """spec.vision.pretrain.steps accepts any count >= 1; a short warm-up must not divide by zero."""
    from workloads.pretrain_vision import pretrain_vision

    done = pretrain_vision("vit-micro", tmp_path / "tower", steps=steps, batch_size=4)
    assert (tmp_path / "tower" / "config.json").exists() and 0 <= done.cell_accuracy <= 1
