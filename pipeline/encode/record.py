"""Encode one sample: preprocess, generate (or teacher-force) under the final-norm hook, build a Sample."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessorList

from tamx import defaults
from tamx.dtypes import STORAGE_DTYPES
from tamx.errors import TamxError
from tamx.records import LMHead, Sample, VisionBlock

from .adapters import Adapter, AdapterError
from .capture import FinalNormCapture, TopKRecorder
from .inputs import EncodeInput, InputError, MediaItem, load_media, media_records, portable_messages, split_answer
from .prompt import context_positions, shift_spans, text_spans

log = logging.getLogger(__name__)

TORCH_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class EncodeSettings:
    """How samples are encoded: greedy decoding length, candidates per step, video frames, context."""

    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    top_k: int = defaults.TOP_K
    num_frames: int = defaults.VIDEO_FRAMES
    include_system: bool = False
    # baselines recorded on request (docs/encode.md): layers other than the last (-1) whose
    # final-norm-applied states are stored; attention (and rollout) of these layers (() all;
    # None: not recorded)
    layers: tuple[int, ...] = ()
    attention: tuple[int, ...] | None = None
    gradients: int | None = None  # the layer of Grad-CAM (None: not recorded)

    def to_json(self) -> dict[str, Any]:
        """The settings as a sample's meta stores them; the baseline options only where asked."""
        data = asdict(self)
        for key, default in (("layers", ()), ("attention", None), ("gradients", None)):
            if data[key] == default:
                del data[key]
            elif isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in TORCH_DTYPE_NAMES:
        raise AdapterError(f"model dtype {dtype} cannot be stored; load the model in bf16, fp16 or fp32")
    return TORCH_DTYPE_NAMES[dtype]


def to_storage(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as the store holds it: bf16 as its uint16 bits, fp16 / fp32 as they are."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy().astype(STORAGE_DTYPES[dtype_name(tensor.dtype)], copy=False)


def _device_inputs(inputs: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        moved[key] = value
    return moved


def _head_logits(adapter: Adapter, states: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits [n, V] float32 for a few hidden states (soft-capped like the model)."""
    logits = adapter.model.get_output_embeddings()(states).float()
    cap = adapter.logit_softcap()
    return torch.tanh(logits / cap) * cap if cap else logits


def _eos_ids(adapter: Adapter) -> list[int]:
    ids = adapter.model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if adapter.tokenizer.eos_token_id is not None:
        ids.append(int(adapter.tokenizer.eos_token_id))
    return sorted(set(ids))


@dataclass
class Prepared:
    """One sample after preprocessing: prompt, media, processor outputs, blocks and context."""

    sample: EncodeInput
    messages: list[dict[str, Any]]
    answer: str | None
    media: list[MediaItem]
    prompt: str
    prompt_ids: np.ndarray
    context: np.ndarray
    blocks: list[VisionBlock]
    processed: Any
    add_special_tokens: bool


@dataclass
class Produced:
    """What the model produced for one sample: the final ids, hidden [L-1, C], answer span, candidates."""

    input_ids: np.ndarray
    hidden: torch.Tensor
    answer_positions: np.ndarray
    candidate_ids: np.ndarray | None
    candidate_logprobs: np.ndarray | None
    answer: str
    mode: str
    answer_logprobs: np.ndarray | None = None  # [N] log p of each answer token (report only)
    layer_states: list[torch.Tensor] = field(default_factory=list)  # [L-1, C] per EncodeSettings.layers


def processor_call(
    adapter: Adapter, prompts: list[str], media: list[MediaItem], add_special_tokens: bool, per_prompt=None, **extra
):
    """Call the processor; `per_prompt` gives each prompt's media (`Adapter.processor_images`)."""
    videos = [m.pixels for m in media if m.kind == "video"]
    return adapter.processor(
        text=prompts,
        images=adapter.processor_images(media, per_prompt),
        videos=videos or None,
        return_tensors="pt",
        add_special_tokens=add_special_tokens,
        **adapter.processor_kwargs(media),
        **extra,
    )


def prepare_sample(adapter: Adapter, sample: EncodeInput, settings: EncodeSettings) -> Prepared:
    """Load the media, render the chat template, run the processor, find blocks and context."""
    processor, tokenizer = adapter.processor, adapter.tokenizer
    messages, answer = split_answer(sample)
    media = load_media(sample.id, messages, settings.num_frames, adapter.frame_multiple())
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    spans = text_spans(prompt, messages, settings.include_system)
    if any(m.kind == "video" for m in media) and getattr(processor, "video_processor", None) is None:
        raise InputError(
            sample.id,
            f"video input needs the {type(processor).__name__} video processor, which needs torchvision; "
            "install torchvision (pip install torchvision) or give images",
        )
    bos = tokenizer.bos_token
    add_special_tokens = not (bos and prompt.startswith(bos))
    try:
        processed = processor_call(
            adapter,
            [prompt],
            media,
            add_special_tokens,
            per_prompt=[media],
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
        )
    except (ValueError, TypeError) as exc:
        raise InputError(sample.id, f"the processor rejected the inputs: {exc}") from None
    prompt_ids = processed["input_ids"][0].numpy().astype(np.int64)
    spans = shift_spans(spans, processed.get("text_replacement_offsets", [[]])[0])
    offsets = np.asarray(processed["offset_mapping"][0], dtype=np.int64).reshape(-1, 2)
    blocks = adapter.find_blocks(prompt_ids, adapter.block_specs(media, processed))
    return Prepared(
        sample=sample,
        messages=messages,
        answer=answer,
        media=media,
        prompt=prompt,
        prompt_ids=prompt_ids,
        context=context_positions(offsets, spans, prompt_ids, adapter.special_ids()),
        blocks=blocks,
        processed=processed,
        add_special_tokens=add_special_tokens,
    )


def _candidates(logits: torch.Tensor, top_k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if top_k <= 0:
        return None, None
    top = torch.topk(torch.log_softmax(logits.float(), dim=-1), k=min(top_k, logits.shape[-1]), dim=-1)
    return top.indices.cpu().numpy().astype(np.int64), top.values.cpu().numpy().astype(np.float32)


def _token_logprobs(logits: torch.Tensor, token_ids: list[int]) -> np.ndarray:
    """log p of each given token under its row of logits: [n] float32."""
    chosen = torch.as_tensor(token_ids, device=logits.device).unsqueeze(1)
    return torch.log_softmax(logits.float(), dim=-1).gather(1, chosen)[:, 0].cpu().numpy().astype(np.float32)


def teacher_force(adapter: Adapter, prepared: Prepared, settings: EncodeSettings) -> Produced:
    """One forward pass over prompt + the given answer under the hook."""
    model, tokenizer = adapter.model, adapter.tokenizer
    inputs = _device_inputs(adapter.model_inputs(prepared.processed), model.device, model.dtype)
    answer_ids = tokenizer(prepared.answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise InputError(prepared.sample.id, "the given answer tokenizes to nothing")
    extra = torch.tensor([answer_ids], dtype=inputs["input_ids"].dtype, device=model.device)
    inputs = adapter.extend_inputs(inputs, extra)
    with (
        torch.inference_mode(),
        FinalNormCapture(adapter.final_norm(), inputs["input_ids"].shape[1]) as capture,
        ExitStack() as stack,
    ):
        layers = layer_captures(adapter, settings, stack, inputs["input_ids"].shape[1], 1)
        model(**inputs, use_cache=False, logits_to_keep=1)
        input_ids = np.concatenate([prepared.prompt_ids, np.asarray(answer_ids, dtype=np.int64)])
        hidden = capture.states[0, : len(input_ids) - 1]
        layer_states = [layer.states[0, : len(input_ids) - 1] for layer in layers]
        answer_positions = np.arange(len(prepared.prompt_ids), len(input_ids), dtype=np.int64)
        logits = _head_logits(adapter, hidden[answer_positions - 1])
        candidate_ids, candidate_logprobs = _candidates(logits, settings.top_k)
        forced = _token_logprobs(logits, answer_ids)
    return Produced(
        input_ids,
        hidden,
        answer_positions,
        candidate_ids,
        candidate_logprobs,
        prepared.answer,
        "teacher-forced",
        answer_logprobs=forced,
        layer_states=layer_states,
    )


def _greedy_config(adapter: Adapter, settings: EncodeSettings, eos: list[int]) -> GenerationConfig:
    tokenizer = adapter.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else None)
    # plain greedy: generate fills every field left None from the checkpoint's generation config
    # (repetition penalty, n-gram blocking, ...), so set them explicitly; then every answer token is
    # the argmax of the logits explain recomputes
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos or None,
        pad_token_id=pad,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_length=0,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


def generate(adapter: Adapter, batch: list[Prepared], settings: EncodeSettings) -> list[Produced]:
    """Greedy generation for a batch of samples (left-padded) under the hook."""
    model, tokenizer = adapter.model, adapter.tokenizer
    if len(batch) == 1:
        processed = batch[0].processed
    else:
        media = [m for p in batch for m in p.media]
        processed = processor_call(
            adapter,
            [p.prompt for p in batch],
            media,
            batch[0].add_special_tokens,
            per_prompt=[p.media for p in batch],
            padding=True,
            padding_side="left",
        )
    inputs = _device_inputs(adapter.model_inputs(processed), model.device, model.dtype)
    width = inputs["input_ids"].shape[1]
    mask = inputs.get("attention_mask")
    pads = [0] * len(batch) if mask is None else (mask == 0).sum(dim=1).tolist()
    for p, pad, row in zip(batch, pads, inputs["input_ids"].cpu().numpy()):
        if not np.array_equal(row[pad:], p.prompt_ids):
            raise AdapterError(f"sample {p.sample.id!r}: batched preprocessing changed its prompt tokens")
    eos = _eos_ids(adapter)
    recorder = TopKRecorder(settings.top_k)
    with (
        torch.inference_mode(),
        FinalNormCapture(adapter.final_norm(), width + settings.max_new_tokens, rows=len(batch)) as capture,
        ExitStack() as stack,
    ):
        layers = layer_captures(adapter, settings, stack, width + settings.max_new_tokens, len(batch))
        sequences = model.generate(
            **inputs,
            generation_config=_greedy_config(adapter, settings, eos),
            logits_processor=LogitsProcessorList([recorder]),
        )
        produced = []
        for row, (p, pad) in enumerate(zip(batch, pads)):
            generated = sequences[row, width:].cpu().numpy().astype(np.int64)
            stops = np.flatnonzero(np.isin(generated, eos))
            count = int(stops[0]) if len(stops) else len(generated)
            if count == 0:
                raise InputError(p.sample.id, "the model ended its answer at once (first token is end-of-sequence)")
            input_ids = np.concatenate([p.prompt_ids, generated[:count]])
            hidden = capture.states[row, pad : width + count - 1]
            answer_positions = np.arange(len(p.prompt_ids), len(input_ids), dtype=np.int64)
            candidate_ids = candidate_logprobs = None
            if settings.top_k > 0:
                candidate_ids = torch.stack([ids[row] for ids in recorder.ids[:count]]).cpu().numpy().astype(np.int64)
                candidate_logprobs = torch.stack([lp[row] for lp in recorder.logprobs[:count]]).cpu().numpy()
                if not np.array_equal(candidate_ids[:, 0], generated[:count]):
                    raise AdapterError(
                        "a logits processor from the checkpoint's generation config changed the greedy tokens; "
                        "the answer would not be the argmax that explain recomputes"
                    )
            answer = tokenizer.decode(generated[:count].tolist())
            greedy = None if candidate_logprobs is None else candidate_logprobs[:, 0].astype(np.float32)
            produced.append(
                Produced(
                    input_ids,
                    hidden,
                    answer_positions,
                    candidate_ids,
                    candidate_logprobs,
                    answer,
                    "generate",
                    answer_logprobs=greedy,
                    layer_states=[layer.states[row, pad : width + count - 1] for layer in layers],
                )
            )
    return produced


def max_positions(config: Any) -> int | None:
    """The language model's max_position_embeddings (in its text config for most VLMs), if it has one."""
    for source in (getattr(config, "text_config", None), config):
        value = getattr(source, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def warn_if_too_long(adapter: Adapter, sample_id: str, tokens: int, prompt_tokens: int) -> None:
    """Say so when a sample runs past the positions the model was trained for: it still encodes,
    but what the model says (and so its maps) there is not what it would say within them."""
    limit = max_positions(adapter.model.config)
    if limit is not None and tokens > limit:
        log.warning(
            "sample %r has %d tokens (%d of them the prompt), over the model's max_position_embeddings of %d; "
            "its answer and maps past that are unreliable: shorten the prompt or use fewer or smaller images",
            sample_id,
            tokens,
            prompt_tokens,
            limit,
        )


def build_sample(
    adapter: Adapter, prepared: Prepared, produced: Produced, settings: EncodeSettings, model_id: str
) -> Sample:
    """The store record of one sample from its preprocessing and what the model produced."""
    warn_if_too_long(adapter, prepared.sample.id, len(produced.input_ids), len(prepared.prompt_ids))
    hidden = produced.hidden
    if len(hidden) != len(produced.input_ids) - 1:
        raise AdapterError(
            f"the final-norm hook recorded {len(hidden)} states for {len(produced.input_ids)} tokens; "
            f"the {adapter.family} adapter hooks the wrong module"
        )
    unique_ids, inverse = np.unique(produced.input_ids, return_inverse=True)
    names = [adapter.tokenizer.decode([int(t)]) for t in unique_ids]
    candidate_tokens = None
    if produced.candidate_ids is not None:
        candidate_tokens = [
            [adapter.tokenizer.decode([int(t)]) for t in row] for row in produced.candidate_ids.tolist()
        ]
    media = prepared.media
    record = Sample(
        id=prepared.sample.id,
        hidden=to_storage(hidden),
        hidden_dtype=dtype_name(hidden.dtype),
        input_ids=produced.input_ids,
        vision_blocks=tuple(prepared.blocks),
        answer_positions=produced.answer_positions,
        context_positions=prepared.context,
        lm_head=LMHead(ids=np.zeros(0, np.int64), rows=np.zeros((0, hidden.shape[1]), np.float32)),
        candidate_ids=produced.candidate_ids,
        candidate_tokens=candidate_tokens,
        candidate_logprobs=None
        if produced.candidate_logprobs is None
        else produced.candidate_logprobs.astype(np.float32),
        tokens=[names[i] for i in inverse.tolist()],
        answer_logprobs=produced.answer_logprobs,
        media=media_records(media),
        messages=portable_messages(prepared.messages, prepared.sample.base_dir),
        meta={
            "model_id": model_id,
            "mode": produced.mode,
            "prompt": prepared.prompt,
            "answer": produced.answer,
            "settings": settings.to_json(),
            "video_fps": [m.fps for m in media if m.kind == "video"],
        },
    )
    record.lm_head = lm_head_rows(adapter, record.needed_token_ids())
    if settings.layers:
        record_layers(adapter, record, produced, settings)
    if settings.attention is not None:
        record_attention(adapter, prepared, record, settings)
    if settings.gradients is not None:
        record_gradients(adapter, prepared, record, settings.gradients)
    return record


# ------------------------------------------------------------------ baselines (docs/encode.md)


def decoder_layers(adapter: Adapter) -> torch.nn.ModuleList:
    """The language model's decoder layers (the residual stream after each is a layer's state)."""
    layers = getattr(adapter.language_model(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise AdapterError(f"the language model of the {adapter.family} adapter has no .layers to record")
    return layers


def resolve_layers(adapter: Adapter, layers: tuple[int, ...] | list[int], option: str) -> tuple[int, ...]:
    """Layer indices counted from the last (-1 the last), sorted from the last, without repeats;
    a non-negative index counts from the first (0 the first). TamxError past the model's layers."""
    count = len(decoder_layers(adapter))
    resolved = set()
    for layer in layers:
        if not -count <= layer < count:
            raise TamxError(f"{option}: the model has {count} decoder layers; give layers from -{count} to -1")
        resolved.add(layer - count if layer >= 0 else layer)
    return tuple(sorted(resolved, reverse=True))


def resolve_settings(adapter: Adapter, settings: EncodeSettings) -> EncodeSettings:
    """`settings` with its baseline layers counted from the last (the last one out of `layers`:
    the hidden states hold it already)."""
    layers = tuple(layer for layer in resolve_layers(adapter, settings.layers, "--layers") if layer != -1)
    attention = settings.attention
    if attention is not None:
        attention = resolve_layers(adapter, attention or range(-len(decoder_layers(adapter)), 0), "--attention")
    gradients = settings.gradients
    if gradients is not None:
        (gradients,) = resolve_layers(adapter, (gradients,), "--gradients")
    return replace(settings, layers=layers, attention=attention, gradients=gradients)


def layer_captures(
    adapter: Adapter, settings: EncodeSettings, stack: ExitStack, capacity: int, rows: int
) -> list[FinalNormCapture]:
    """A capture of the output of every decoder layer in `settings.layers` (none by default)."""
    if not settings.layers:
        return []
    modules = decoder_layers(adapter)
    return [stack.enter_context(FinalNormCapture(modules[layer], capacity, rows)) for layer in settings.layers]


def record_layers(adapter: Adapter, record: Sample, produced: Produced, settings: EncodeSettings) -> None:
    """Store the final-norm-applied states of the requested layers at the positions explain reads."""
    from tamx.explain import read_positions

    positions = read_positions(record)
    index = torch.as_tensor(positions, device=produced.hidden.device)
    norm = adapter.final_norm()
    with torch.inference_mode():
        states = torch.stack([norm(layer.index_select(0, index)[None])[0] for layer in produced.layer_states])
    record.lens_layers = list(settings.layers)
    record.lens_positions = positions
    record.lens_hidden = to_storage(states.to(produced.hidden.dtype))


def target_rows(record: Sample) -> np.ndarray:
    """The query row of every answer token, then every prompt token: the position whose state
    predicts it (P - 1)."""
    return np.maximum(np.concatenate([record.answer_positions, record.context_positions]) - 1, 0)


def _answer_inputs(adapter: Adapter, prepared: Prepared, record: Sample) -> dict[str, Any]:
    """The model inputs of prompt + the record's answer (one sample, on the model's device)."""
    model = adapter.model
    inputs = _device_inputs(adapter.model_inputs(prepared.processed), model.device, model.dtype)
    extra = record.input_ids[len(prepared.prompt_ids) :]
    answer = torch.as_tensor(extra[None], dtype=inputs["input_ids"].dtype, device=model.device)
    return adapter.extend_inputs(inputs, answer)


def record_gradients(adapter: Adapter, prepared: Prepared, record: Sample, layer: int) -> None:
    """Grad-CAM for a decoder at `layer`: relu(sum_c d logit / d h[v, c] * h[v, c]) over the vision
    cells v, for every answer and prompt token's logit at the position that predicts it; one
    forward pass with gradients and one batched backward pass over all those tokens."""
    from tamx.layout import vision_positions

    model = adapter.model
    inputs = _answer_inputs(adapter, prepared, record)
    kept: dict[str, torch.Tensor] = {}

    def leaf(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        # the layer's states become the graph's leaf: with the weights not requiring gradients,
        # nothing before them (vision tower, earlier layers) is recorded for autograd
        states = output[0] if isinstance(output, tuple) else output
        kept["layer"] = states = states.detach().requires_grad_(True)
        return (states, *output[1:]) if isinstance(output, tuple) else states

    def final(module: torch.nn.Module, args: tuple, output: Any) -> None:
        kept["final"] = output[0] if isinstance(output, tuple) else output

    handles = [
        decoder_layers(adapter)[layer].register_forward_hook(leaf),
        adapter.final_norm().register_forward_hook(final),
    ]
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        with torch.enable_grad():
            model(**inputs, use_cache=False, logits_to_keep=1)
            rows = torch.as_tensor(target_rows(record), device=model.device)
            classes = torch.as_tensor(
                record.input_ids[np.concatenate([record.answer_positions, record.context_positions])],
                device=model.device,
            )
            logits = _head_logits(adapter, kept["final"][0].index_select(0, rows))
            chosen = logits.gather(1, classes[:, None])[:, 0]  # [T]
            states = kept["layer"]
            eye = torch.eye(len(chosen), device=model.device, dtype=chosen.dtype)
            try:
                (grads,) = torch.autograd.grad(chosen, states, grad_outputs=eye, is_grads_batched=True)
            except RuntimeError:  # an op without a batching rule: one backward pass per token
                grads = torch.stack(
                    [torch.autograd.grad(chosen[i], states, retain_graph=True)[0] for i in range(len(chosen))]
                )
    finally:
        for handle in handles:
            handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)
    cells = torch.as_tensor(vision_positions(record.vision_blocks), device=model.device)
    with torch.no_grad():
        cam = (grads[:, 0].index_select(1, cells).float() * states[0].index_select(0, cells).float()).sum(-1)
        cam = torch.relu(cam).cpu().numpy().astype(np.float32)
    n = len(record.answer_positions)
    record.gradient_layer = layer
    record.gradient, record.gradient_prompt = cam[:n], cam[n:]


def record_attention(adapter: Adapter, prepared: Prepared, record: Sample, settings: EncodeSettings) -> None:
    """One more forward pass over prompt + answer with eager attention: the head-mean attention
    of every target row (`target_rows`) to the vision cells for the requested layers, and
    attention rollout over all layers (Abnar and Zuidema 2020), computed on the device."""
    from tamx.layout import vision_positions

    model = adapter.model
    inputs = _device_inputs(adapter.model_inputs(prepared.processed), model.device, model.dtype)
    extra = record.input_ids[len(prepared.prompt_ids) :]
    inputs = adapter.extend_inputs(
        inputs, torch.as_tensor(extra[None], dtype=inputs["input_ids"].dtype, device=model.device)
    )
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            attentions = model(**inputs, use_cache=False, output_attentions=True, logits_to_keep=1).attentions
    finally:
        model.set_attn_implementation(previous)
    count = len(decoder_layers(adapter))
    if attentions is None or len(attentions) != count:
        raise AdapterError(f"the {adapter.family} adapter's model returned no attention weights of its {count} layers")
    rows = torch.as_tensor(target_rows(record), device=model.device)
    cells = torch.as_tensor(vision_positions(record.vision_blocks), device=model.device)
    n = len(record.answer_positions)
    size = attentions[0].shape[-1]
    eye = torch.eye(size, device=model.device, dtype=torch.float32)
    rollout = eye
    kept = []
    for index, weights in enumerate(attentions):
        mean = weights[0].float().mean(dim=0)  # [S, S] over heads
        if index - count in settings.attention:
            kept.append((index - count, mean.index_select(0, rows).index_select(1, cells)))
        mixed = 0.5 * mean + 0.5 * eye
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    kept.sort(key=lambda pair: -pair[0])  # the order of settings.attention: from the last
    stacked = torch.stack([rows_ for _, rows_ in kept]).cpu().numpy().astype(np.float32)
    rolled = rollout.index_select(0, rows).index_select(1, cells).cpu().numpy().astype(np.float32)
    record.attention_layers = [layer for layer, _ in kept]
    record.attention, record.attention_prompt = stacked[:, :n], stacked[:, n:]
    record.rollout, record.rollout_prompt = rolled[:n], rolled[n:]


def lm_head_rows(adapter: Adapter, token_ids: np.ndarray) -> LMHead:
    """The LM-head rows (and bias) of `token_ids`, copied in the model's dtype."""
    head = adapter.model.get_output_embeddings()
    index = torch.as_tensor(token_ids, dtype=torch.long, device=head.weight.device)
    rows = head.weight.detach().index_select(0, index)
    bias = None if getattr(head, "bias", None) is None else head.bias.detach().index_select(0, index)
    return LMHead(
        ids=np.asarray(token_ids, dtype=np.int64),
        rows=to_storage(rows),
        dtype=dtype_name(rows.dtype),
        bias=None if bias is None else to_storage(bias),
    )
