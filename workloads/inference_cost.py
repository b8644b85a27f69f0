"""Inference cost, measured: prefill latency, per-token decode latency and peak memory of one VLM
architecture (random weights: built from configs, nothing trained or downloaded) on this device.

    prefill   vision tower → compressor → projector → LLM over V visual + Q text tokens for a batch
              of B prompts, logits of the last position only (what a server computes before the
              first answer token)
    decode    one answer token at a time against the prefill's KV cache; the median step of
              ``answer_tokens`` steps over several fresh prefills
    memory    GPU: ``torch.cuda.max_memory_allocated`` over one prefill + decode (peak reset first);
              CPU: parameter bytes + the peak growth of the process's resident memory during it,
              sampled every millisecond (coarser: the allocator may reuse memory it already holds)

Timings come from :func:`workloads.device.timings` (warm-up calls, then each repeat timed with CUDA
events on a GPU, a host clock between synchronisations elsewhere). Each profiled point runs as its
own Ray task on the requested resources (orchestrator/run/profiling.py); this module has no Ray in it.
"""

from __future__ import annotations

import inspect
import os
import statistics
import threading

import torch

from .config import DataConfig, ModelConfig, ProfileSettings
from .device import median_seconds, module_device, seconds_of, synchronize, timings, to_device

COLUMNS = ("llm", "llm_params", "visual_tokens", "compressor", "batch_size", "text_tokens", "prefill_latency_s",
           "prefill_latency_p10_s", "prefill_latency_p90_s", "decode_latency_s", "peak_memory_bytes",
           "inference_flops_vision", "inference_flops_compressor", "compressor_reads_question", "device", "dtype")


def measure_prefill_latency(model, batch, repeats: int = 7) -> float:
    """Median seconds of one prefill forward pass over the first sample of ``batch``, on the model's
    device: inputs moved there, two warm-up passes, each repeat timed with CUDA events on a GPU (a
    host clock between device synchronisations elsewhere). Run it under the training autocast."""
    device = module_device(model)
    one = to_device({k: v[:1] for k, v in batch.model_inputs().items() if k != "labels"}, device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        seconds = median_seconds(lambda: model(**one), device, repeats=repeats)
    model.train(was_training)
    return seconds


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def profile_model(model: ModelConfig, data: DataConfig, settings: ProfileSettings,
                  device: torch.device | str | None = None, threads: int | None = None) -> list[dict]:
    """One row per batch size for the architecture ``model`` (see the module docstring)."""
    from .flops import model_image_cost
    from .model import build_vlm, parameter_counts, vision_geometry
    from .tokenizer import load_tokenizer

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:  # set_device, events and memory stats want an index
        device = torch.device("cuda", torch.cuda.current_device())
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    dtype = settings.torch_dtype(device)
    tokenizer = load_tokenizer(model.llm, data.source, data.tokenizer)
    with device:  # initialised where it runs: a 7B's random init on a host CPU takes minutes
        vlm = build_vlm(model, tokenizer, weights=False)
    vlm = vlm.to(dtype=dtype).eval()
    q = max(settings.text_tokens, 1)  # a prompt needs a token to answer from (and QueCC a question)
    n = parameter_counts(vlm)["llm_params"]
    image = model_image_cost(vlm).as_metrics()
    _, _, image_size = vision_geometry(vlm.vision)
    with torch.no_grad():  # the first calls of a fresh process pay one-off costs (allocator, kernels' set-up)
        _decode(vlm, _inputs(vlm, tokenizer, max(settings.batch_sizes), q, image_size, device, dtype), 2, device)
    rows = []
    for b in settings.batch_sizes:
        inputs = _inputs(vlm, tokenizer, b, q, image_size, device, dtype)
        with torch.no_grad():
            # timed here, in this iteration: the closure sees this batch size's inputs
            prefill = timings(lambda: _prefill(vlm, inputs), device, settings.repeats, settings.warmup)  # noqa: B023
            decode = _decode_steps(vlm, inputs, settings.answer_tokens, device, repeats=max(2, settings.repeats // 3))
            peak = _peak_memory(vlm, inputs, settings.answer_tokens, device)
        ordered = sorted(prefill)
        rows.append({
            "llm": model.llm, "llm_params": n, "visual_tokens": model.visual_tokens, "compressor": model.compressor,
            "batch_size": b, "text_tokens": q, "prefill_latency_s": statistics.median(prefill),
            "prefill_latency_p10_s": ordered[int(0.1 * (len(ordered) - 1))],
            "prefill_latency_p90_s": ordered[int(round(0.9 * (len(ordered) - 1)))],
            "decode_latency_s": statistics.median(decode), "peak_memory_bytes": int(peak),
            **image, "device": device_name(device), "dtype": str(dtype).removeprefix("torch."),
        })
    return rows


def _inputs(vlm, tokenizer, batch: int, text_tokens: int, image_size: int, device, dtype) -> dict:
    """A batch of prompts: V <image> placeholders then ``text_tokens`` ordinary tokens each."""
    g = torch.Generator().manual_seed(1)
    vocab = len(tokenizer)
    text = torch.randint(0, vocab, (batch, text_tokens), generator=g)
    text[text == vlm.image_token_id] = 0
    images = torch.full((batch, vlm.visual_tokens), vlm.image_token_id)
    ids = torch.cat([images, text], dim=1)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": torch.randn(batch, 3, image_size, image_size, generator=g).to(device=device, dtype=dtype),
            "query_ids": text.to(device), "query_mask": torch.ones_like(text).to(device)}


def _prefill(vlm, inputs: dict):
    features = vlm.encode_images(inputs["pixel_values"], inputs["query_ids"], inputs["query_mask"])
    embeds = vlm.merge(inputs["input_ids"], features)
    return vlm.llm(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], use_cache=True, logits_to_keep=1)


def _decode(vlm, inputs: dict, steps: int, device, timed: list[float] | None = None) -> None:
    out = _prefill(vlm, inputs)
    # transformers renamed past_key_values to cache (5.2x); take whichever this version has
    kw = "cache" if "cache" in inspect.signature(type(vlm.llm).forward).parameters else "past_key_values"
    cache, mask = getattr(out, kw), inputs["attention_mask"]
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(steps):
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)

        def step():
            nonlocal out
            # called only within this step of the loop, on this step's token and mask
            out = vlm.llm(input_ids=token, attention_mask=mask, use_cache=True, logits_to_keep=1, **{kw: cache})  # noqa: B023

        if timed is None:
            step()
        else:
            timed.append(seconds_of(step, device))
        token = out.logits[:, -1].argmax(-1, keepdim=True)


def _decode_steps(vlm, inputs: dict, steps: int, device, repeats: int) -> list[float]:
    _decode(vlm, inputs, min(steps, 2), device)  # warm-up
    timed: list[float] = []
    for _ in range(repeats):
        _decode(vlm, inputs, steps, device, timed)
    return timed


def _peak_memory(vlm, inputs: dict, steps: int, device) -> int:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        _decode(vlm, inputs, steps, device)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    weights = sum(p.numel() * p.element_size() for p in vlm.parameters()) + \
        sum(b.numel() * b.element_size() for b in vlm.buffers())
    start = _rss()
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.wait(0.001):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _decode(vlm, inputs, steps, device)
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], _rss())
    return weights + max(0, peak[0] - start)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
