"""A LLaVA-style VLM: vision tower → visual-token compressor → 2-layer MLP projector → causal LM.

Composed of transformers parts (``AutoModel`` / CLIP or SigLIP vision towers,
``AutoModelForCausalLM``) built either from pretrained names/paths or from the tiny presets with
random init. The V projected visual tokens replace the V ``<image>`` placeholders of each
sequence with ``masked_scatter`` after the counts are checked, as in ``transformers``' LLaVA.
"""

from __future__ import annotations

import torch
from torch import nn

from .compressors.module import Compressor, CompressorInputs, build_compressor
from .config import ModelConfig, Part
from .presets import is_llm_preset, is_vision_preset, llm_config, vision_config
from .storage import localize
from .tokenizer import image_token_id


class Projector(nn.Module):
    """LLaVA-1.5's projector: Linear → GELU → Linear."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VisionLanguageModel(nn.Module):
    def __init__(self, vision: nn.Module, compressor: Compressor, projector: Projector, llm: nn.Module,
                 image_token_id: int, grid: int, feature_layer: int, kv_layers: tuple[int, ...]):
        super().__init__()
        self.vision, self.compressor, self.projector, self.llm = vision, compressor, projector, llm
        self.image_token_id, self.grid = image_token_id, grid
        self.logits = "all"  # training.logits: "supervised" runs the LM head only where a label is (speed.py)
        self.feature_layer, self.kv_layers = feature_layer, kv_layers

    @property
    def visual_tokens(self) -> int:
        return self.compressor.visual_tokens

    def _patches(self, hidden: torch.Tensor) -> torch.Tensor:
        # CLIP prepends a class token, SigLIP does not: keep the last grid² tokens either way
        return hidden[:, -self.grid * self.grid:]

    def question_embedding(self, query_ids: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """The LLM's final hidden state at each question's last non-pad token (no gradient)."""
        with torch.no_grad():
            hidden = self.llm.get_decoder()(input_ids=query_ids, attention_mask=query_mask).last_hidden_state
        last = query_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def encode_images(self, pixel_values: torch.Tensor, query_ids: torch.Tensor | None = None,
                      query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels [B, 3, H, W] → projected visual tokens [B, V, H_llm]."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states
        query = None
        if self.compressor.needs_query:
            if query_ids is None or query_mask is None:
                raise ValueError("this compressor is query-conditioned: pass query_ids and query_mask")
            query = self.question_embedding(query_ids, query_mask)
        inputs = CompressorInputs(
            features=self._patches(hidden[self.feature_layer]),
            grid=self.grid,
            layers=tuple(self._patches(hidden[i]) for i in self.kv_layers[: self.compressor.num_layers]),
            query=query,
        )
        return self.projector(self.compressor(inputs))

    def merge(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        embeds = self.llm.get_input_embeddings()(input_ids)
        mask = input_ids == self.image_token_id
        n_tokens, n_features = int(mask.sum()), image_features.shape[0] * image_features.shape[1]
        if n_tokens != n_features:
            raise ValueError(
                f"image placeholders and image features do not match: {n_tokens} <image> tokens in the "
                f"batch, {n_features} visual tokens ({image_features.shape[0]} images x {image_features.shape[1]})"
            )
        if not n_features:
            return embeds
        mask = mask.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, image_features.to(embeds.dtype))

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass of every trainable transformer (LLM, and the
        vision tower when it trains): memory for compute, at real sizes and long visual sequences."""
        towers = [self.llm] + ([self.vision] if any(p.requires_grad for p in self.vision.parameters()) else [])
        for tower in towers:
            _enable_checkpointing(tower)

    def forward(self, input_ids, attention_mask, pixel_values, labels=None, query_ids=None, query_mask=None,
                image_mask=None):
        """``image_mask`` [B] bool marks the samples that have an image (None: all of them); only
        those are encoded, and their V features fill their placeholders."""
        if image_mask is not None:
            pixel_values = pixel_values[image_mask]
            query_ids = None if query_ids is None else query_ids[image_mask]
            query_mask = None if query_mask is None else query_mask[image_mask]
        if len(pixel_values):
            features = self.encode_images(pixel_values, query_ids, query_mask)
        else:  # a batch of text-only conversations
            features = self.llm.get_input_embeddings().weight.new_zeros((0, self.visual_tokens, 1))
        embeds = self.merge(input_ids, features)
        if labels is not None and self.training and self.logits == "supervised":
            from types import SimpleNamespace

            from .speed import supervised_loss

            hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            return SimpleNamespace(loss=supervised_loss(hidden, labels, self.llm.get_output_embeddings()), logits=None)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)


def _enable_checkpointing(model: nn.Module) -> None:
    kwargs = {"use_reentrant": False}  # the reentrant variant breaks with DDP and frozen inputs
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.2x; the old name is deprecated
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _build_llm(cfg: ModelConfig, vocab_size: int, weights: bool = True):
    from transformers import AutoConfig, AutoModelForCausalLM

    if is_llm_preset(cfg.llm):
        return AutoModelForCausalLM.from_config(llm_config(cfg.llm, vocab_size))
    if weights:
        llm = AutoModelForCausalLM.from_pretrained(localize(cfg.llm))
    else:  # the architecture only (profiling): random weights, nothing downloaded but the config
        llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(localize(cfg.llm)))
    if llm.get_input_embeddings().num_embeddings < vocab_size:  # the added <image> token
        llm.resize_token_embeddings(vocab_size)
    return llm


def _build_vision(cfg: ModelConfig, weights: bool = True):
    from transformers import AutoConfig, AutoModel, CLIPVisionModel

    if is_vision_preset(cfg.vision):
        return CLIPVisionModel(vision_config(cfg.vision))
    if weights:
        model = AutoModel.from_pretrained(localize(cfg.vision))
    else:
        model = AutoModel.from_config(AutoConfig.from_pretrained(localize(cfg.vision)))
    # a full CLIP/SigLIP checkpoint: keep only its vision tower
    return getattr(model, "vision_model", model) if hasattr(model, "text_model") else model


def vision_geometry(vision_module: nn.Module) -> tuple[int, int, int]:
    """(hidden size, patch grid side, image size) of a CLIP/SigLIP vision tower."""
    c = vision_module.config
    return c.hidden_size, c.image_size // c.patch_size, c.image_size


def build_vlm(cfg: ModelConfig, tokenizer, weights: bool = True) -> VisionLanguageModel:
    """The VLM of ``cfg``; ``weights=False`` builds hub models from their configs (random weights:
    what latency and memory profiling needs, without downloading checkpoints)."""
    vision = _build_vision(cfg, weights)
    llm = _build_llm(cfg, len(tokenizer), weights)
    v_dim, grid, _ = vision_geometry(vision)
    llm_dim = llm.config.hidden_size
    compressor = build_compressor(cfg.compressor, cfg.visual_tokens, grid, v_dim, llm_dim,
                                  cfg.compressor_heads, num_layers=len(cfg.kv_layers))
    projector = Projector(v_dim, llm_dim)
    compressor.kind.init_projector(projector)
    model = VisionLanguageModel(vision, compressor, projector, llm,
                                image_token_id(tokenizer), grid, cfg.vision_feature_layer, tuple(cfg.kv_layers))
    set_trainable(model, default_trainable(cfg))
    if cfg.projector_from or cfg.compressor_from:
        load_parts(model, cfg.projector_from, cfg.compressor_from)
    return model


# ----------------------------------------------------------------------------------------------
# trainable parts (a training stage trains some of them) and weights started from a file

PARTS: tuple[Part, ...] = ("compressor", "projector", "llm", "vision")


def default_trainable(cfg: ModelConfig) -> tuple[Part, ...]:
    """Every part, less a frozen tower or LLM."""
    return tuple(p for p in PARTS if not (p == "vision" and cfg.freeze_vision or p == "llm" and cfg.freeze_llm))


def set_trainable(model: VisionLanguageModel, parts: tuple[str, ...]) -> None:
    for part in PARTS:
        getattr(model, part).requires_grad_(part in parts)
    # The VLM reads hidden states, never the tower's pooled output: the pooling-only parts (CLIP's
    # post_layernorm, SigLIP's attention-pooling head) stay frozen, so DDP sees no unused parameters.
    tower = getattr(model.vision, "vision_model", model.vision)
    for pooling_only in ("post_layernorm", "head"):
        if isinstance(getattr(tower, pooling_only, None), nn.Module):
            getattr(tower, pooling_only).requires_grad_(False)


def load_parts(model: VisionLanguageModel, projector_from: str | None, compressor_from: str | None) -> None:
    """Start the projector — with the compressor, from a file in LLaVA's layout: its reference's
    ``mm_projector.bin`` — and the compressor (a checkpoint's ``compressor.*``) from saved weights;
    every key must fit (workloads/weights.py)."""
    from .weights import load_into

    if projector_from:
        load_into(model, projector_from, "projector")
    if compressor_from:
        load_into(model, compressor_from, "compressor")


# ----------------------------------------------------------------------------------------------
# parameter counts


def count_parameters(module: nn.Module) -> int:
    return sum(_numel(p) for p in module.parameters())


def _numel(p: torch.Tensor) -> int:
    # ZeRO-3 leaves each rank an empty placeholder per parameter and keeps the true size in ds_numel
    return getattr(p, "ds_numel", p.numel())


def llm_parameter_counts(llm: nn.Module) -> dict[str, int]:
    """Total and non-embedding parameters of a causal LM (tied output head counted once)."""
    total = count_parameters(llm)
    embedding = _numel(llm.get_input_embeddings().weight)
    head = llm.get_output_embeddings()
    if head is not None and head.weight is not llm.get_input_embeddings().weight:
        embedding += _numel(head.weight)
    return {"total": total, "non_embedding": total - embedding}


def parameter_counts(model: VisionLanguageModel) -> dict[str, int]:
    llm = llm_parameter_counts(model.llm)
    return {
        "llm_params": llm["non_embedding"],
        "llm_params_total": llm["total"],
        "vision_params": count_parameters(model.vision),
        "compressor_params": count_parameters(model.compressor),
        "projector_params": count_parameters(model.projector),
        "total_params": count_parameters(model),
    }


def llm_size_from_config(location: str, total: bool = False) -> int:
    """Non-embedding (``total``: all) parameters of a saved or hub causal LM, built from its config
    alone on the meta device (no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(localize(location)))
    return llm_parameter_counts(llm)["total" if total else "non_embedding"]


def meta_parameter_counts(cfg: ModelConfig, vocab_size: int) -> dict[str, int]:
    """Parameter counts without allocating weights (the model is built on the meta device)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, CLIPVisionModel

    with torch.device("meta"):
        if is_llm_preset(cfg.llm):
            llm = AutoModelForCausalLM.from_config(llm_config(cfg.llm, vocab_size))
        else:
            llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(localize(cfg.llm)))
        if is_vision_preset(cfg.vision):
            vision = CLIPVisionModel(vision_config(cfg.vision))
        else:
            vision = AutoModel.from_config(AutoConfig.from_pretrained(localize(cfg.vision)))
            vision = getattr(vision, "vision_model", vision) if hasattr(vision, "text_model") else vision
    counts = llm_parameter_counts(llm)
    return {"llm_params": counts["non_embedding"], "llm_params_total": counts["total"],
            "vision_params": count_parameters(vision)}
