"""Batched generation for Hugging Face causal LMs, in the manner of lm-evaluation-harness.

- Prompts are sorted longest-first: padding inside a batch stays small, an out-of-memory error shows up
  in the first batch rather than after an hour, and the ETA errs high rather than low.
- Batches are left-padded (decoder-only models continue from the right edge).
- The batch size is found with ``accelerate.utils.find_executable_batch_size``: it starts at the given
  size (``auto``: ``max_batch_size``, capped by the number of prompts) and is halved on out-of-memory;
  work already done is kept, generation resumes at the batch that failed with the smaller size.
- Generation stops at any of ``stop_ids`` (the generation config's EOS ids, the tokenizer's EOS and
  end-of-turn tokens such as ``<|eot_id|>``); the stop token is not part of the output.
- Greedy by default; sampling is optional, seeded once per call with ``settings.seed``.
- An exception other than out-of-memory in a batch is retried one prompt at a time, so one bad
  example becomes one ``finish_reason="error"`` result instead of a lost run.

Token log-probabilities: a logits processor records, at each step, the log-softmax of the step's
logits and, at the next step (once the token is chosen), keeps only the chosen token's value. So
one ``[batch, vocab]`` tensor is alive at a time, instead of ``output_scores``'s
``[steps, batch, vocab]`` (for Llama 3 at batch 64 and 256 steps that is 8 GB of fp32). Custom
processors run after the repetition penalty and before temperature/top-k/top-p, so the values are
the model's own distribution (with the repetition penalty when one is set), not the sampling one.
Asked for ``top_logprobs`` (a judge whose verdict is weighted by its probabilities), the recorder also
keeps the most likely tokens of each step and their log-probabilities, as an OpenAI-compatible server
returns them.

Continuous batching (``batching="continuous"``, greedy only) hands the prompts to transformers' own
continuous-batching manager (``model.continuous_batching_context_manager``: a paged KV cache, a scheduler
that starts a waiting prompt as soon as another one finishes). Its greedy outputs are the static path's,
token for token; its log-probabilities come from the manager. Results are committed in groups of the batch
size as they finish. On this project's CPUs static batching is the faster one (docs/benchmarks.md), so it is
the default on every device until the GPU check measures otherwise.

torch and transformers are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Sequence, Union

from evaluator.types import Generation, GenerationSettings

log = logging.getLogger(__name__)

OnBatch = Callable[[list[int], list[Generation]], None]

_RECORDER_CLASS = None


def _recorder_class():
    """A LogitsProcessor that keeps the log-prob of each chosen token (defined lazily: imports torch)."""
    global _RECORDER_CLASS
    if _RECORDER_CLASS is None:
        import torch
        from transformers import LogitsProcessor

        class ChosenTokenLogprobs(LogitsProcessor):
            def __init__(self, top: int = 0) -> None:
                self.previous: Optional[torch.Tensor] = None  # [batch, vocab] log-softmax of the last step
                self.steps: list[torch.Tensor] = []  # [batch] log-prob of each chosen token
                self.top = top  # also keep this many most likely tokens of each step
                self.top_steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # ([batch, top] values, ids)

            def _keep(self, chosen: torch.Tensor) -> None:
                self.steps.append(self.previous.gather(1, chosen).squeeze(1))
                if self.top:
                    values, ids = self.previous.topk(min(self.top, self.previous.shape[1]), dim=-1)
                    self.top_steps.append((values.cpu(), ids.cpu()))

            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
                if self.previous is not None:  # the token chosen at the previous step is input_ids[:, -1]
                    self._keep(input_ids[:, -1:])
                self.previous = torch.log_softmax(scores.float(), dim=-1)
                return scores

            def finish(self, new_tokens: torch.LongTensor) -> torch.Tensor:
                """``[batch, steps]`` log-probs of ``new_tokens`` (the generated part of the sequences)."""
                if self.previous is not None and len(self.steps) < new_tokens.shape[1]:
                    self._keep(new_tokens[:, len(self.steps):len(self.steps) + 1])
                self.previous = None
                if not self.steps:
                    return torch.zeros((new_tokens.shape[0], 0))
                return torch.stack(self.steps, dim=1)

            def alternatives(self, row: int, steps: int, decode: Callable[[int], str]) -> list[dict[str, float]]:
                """The ``top`` most likely tokens of each of ``row``'s first ``steps`` steps: text -> log-prob
                (two ids that read the same keep the likelier one)."""
                out = []
                for values, ids in self.top_steps[:steps]:
                    found: dict[str, float] = {}
                    for v, t in zip(values[row].tolist(), ids[row].tolist()):
                        found.setdefault(decode(t), float(v))
                    out.append(found)
                return out

        _RECORDER_CLASS = ChosenTokenLogprobs
    return _RECORDER_CLASS


def generation_config(settings: GenerationSettings, *, stop_ids: Sequence[int], pad_id: int, bos_id: Optional[int]):
    """A transformers ``GenerationConfig`` with exactly our settings (the model's own sampling defaults,
    e.g. Llama 3 Instruct's temperature 0.6, must not leak into a greedy evaluation)."""
    from transformers import GenerationConfig

    kwargs: dict[str, Any] = dict(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        num_beams=1,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        repetition_penalty=settings.repetition_penalty,
        use_cache=True,
    )
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:  # explicit neutral values: nothing from the model's generation_config.json is inherited
        kwargs.update(temperature=1.0, top_p=1.0)  # (top_k: transformers' default, unused when greedy)
    return GenerationConfig(**kwargs)


def _generate_batch(model, tokenizer, prompts: Sequence[Sequence[int]], gen_config, stop_ids: set[int],
                    pad_id: int, top_logprobs: int = 0) -> list[Generation]:
    import torch
    from transformers import LogitsProcessorList

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):  # left padding
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids):] = 1
    device = getattr(model, "device", None) or torch.device("cpu")
    recorder = _recorder_class()(top_logprobs)
    started = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=gen_config,
            logits_processor=LogitsProcessorList([recorder]),
        )
    if not isinstance(sequences, torch.Tensor):  # a ModelOutput when a config asks for a dict
        sequences = sequences.sequences
    new_tokens = sequences[:, width:]
    logprobs = recorder.finish(new_tokens).cpu().tolist()
    new_tokens = new_tokens.cpu().tolist()
    elapsed = time.perf_counter() - started
    decode = _token_decoder(tokenizer)
    out = []
    for row, ids in enumerate(prompts):
        g = _answer(tokenizer, new_tokens[row], logprobs[row], len(ids), stop_ids, decode,
                    latency_s=elapsed / len(prompts))  # amortised: the batch's wall time shared by its rows
        if top_logprobs:
            g.top_logprobs = recorder.alternatives(row, len(g.token_ids), decode)
        out.append(g)
    return out


def _token_decoder(tokenizer) -> Callable[[int], str]:
    """Each token id's text, decoded once per call of generate."""
    texts: dict[int, str] = {}

    def decode(token: int) -> str:
        if token not in texts:
            texts[token] = tokenizer.decode([token])
        return texts[token]

    return decode


def _answer(tokenizer, toks: list[int], logprobs: Sequence[float], prompt_len: int, stop_ids: set[int],
            decode: Callable[[int], str], latency_s: float) -> Generation:
    """Generated tokens as a Generation: cut at the first stop token (not part of the output), "stop" if
    there was one, else "length"."""
    stop_at = next((i for i, t in enumerate(toks) if t in stop_ids), None)
    finish = "length" if stop_at is None else "stop"
    toks = toks if stop_at is None else toks[:stop_at]
    return Generation(text=tokenizer.decode(toks, skip_special_tokens=True), token_ids=toks,
                      tokens=[decode(t) for t in toks], logprobs=[float(x) for x in logprobs[:len(toks)]],
                      finish_reason=finish, prompt_tokens=prompt_len, latency_s=latency_s)


def _finished_generation(tokenizer, output, prompt_len: int, stop_ids: set[int], elapsed: float,
                         decode: Callable[[int], str]) -> Generation:
    """A continuous-batching manager's finished request as a Generation."""
    if output.error:
        return Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error",
                          prompt_tokens=prompt_len, error=str(output.error))
    return _answer(tokenizer, list(output.generated_tokens), output.logprobs, prompt_len, stop_ids, decode, elapsed)


def _continuous_config(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, requests: int):
    """Sizes for the manager: on a GPU transformers infers them from free memory; on a CPU it would size
    for the whole RAM (measured 100x slower), so the cache holds ``requests`` prompts of the longest length."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    if getattr(getattr(model, "device", None), "type", "cpu") != "cpu":
        return ContinuousBatchingConfig(return_logprobs=True, max_requests_per_batch=requests)
    block = 32
    per_request = -(-(max(len(p) for p in prompts) + max_new_tokens) // block)
    return ContinuousBatchingConfig(return_logprobs=True, block_size=block, num_blocks=per_request * requests,
                                    max_batch_tokens=512, max_requests_per_batch=requests)


def generate_continuous(model, tokenizer, prompts: Sequence[Sequence[int]], gen_config, *, stop_ids: set[int],
                        requests: int, on_finished: Callable[[int, Generation], None]) -> None:
    """Generate every prompt with transformers' continuous batching, at most ``requests`` at once;
    ``on_finished(index, generation)`` as each one ends. A manager that dies is a RuntimeError (the run fails
    with it; what was committed stays)."""
    decode = _token_decoder(tokenizer)
    config = _continuous_config(model, prompts, gen_config.max_new_tokens, requests)
    with model.continuous_batching_context_manager(generation_config=gen_config, continuous_batching_config=config,
                                                   block=True, timeout=5, warmup=False) as manager:
        ids = manager.add_requests(inputs=[list(p) for p in prompts], max_new_tokens=gen_config.max_new_tokens)
        index = {rid: i for i, rid in enumerate(ids)}
        started, left = time.perf_counter(), len(ids)
        while left:
            out = manager.get_result(timeout=1)
            if out is None:
                if not manager.is_running():
                    raise RuntimeError(f"continuous batching stopped with {left} of {len(ids)} prompts unanswered")
                continue
            if out.is_finished() and out.request_id in index:
                i = index.pop(out.request_id)
                left -= 1
                elapsed = out.lifespan[1] - out.lifespan[0] if out.lifespan[0] >= 0 else time.perf_counter() - started
                on_finished(i, _finished_generation(tokenizer, out, len(prompts[i]), stop_ids, elapsed, decode))


def _is_oom(exc: BaseException) -> bool:
    from accelerate.utils.memory import should_reduce_batch_size

    return should_reduce_batch_size(exc)


def _batch_or_one_by_one(model, tokenizer, prompts: Sequence[Sequence[int]], idx: list[int], gen_config,
                         stops: set[int], pad_id: int, top_logprobs: int = 0) -> list[Generation]:
    """The prompts ``idx`` as one batch; if that fails with anything but out-of-memory (which the
    caller handles by halving the batch), one prompt at a time, so one bad prompt costs only itself:
    it gets an empty generation with finish reason "error" and the exception's text."""
    try:
        return _generate_batch(model, tokenizer, [prompts[i] for i in idx], gen_config, stops, pad_id, top_logprobs)
    except Exception as exc:
        if _is_oom(exc) or len(idx) == 1:
            raise
        log.warning("batch of %d failed (%s); retrying one prompt at a time", len(idx), exc)
    gens = []
    for i in idx:
        try:
            gens.extend(_generate_batch(model, tokenizer, [prompts[i]], gen_config, stops, pad_id, top_logprobs))
        except Exception as exc:
            if _is_oom(exc):
                raise
            log.warning("generation failed for prompt %d: %s", i, exc)
            gens.append(Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error",
                                   prompt_tokens=len(prompts[i]), error=f"{type(exc).__name__}: {exc}"))
    return gens


def _continuous(model, tokenizer, prompts, gen_config, stops: set[int], size: int,
                done: Callable[[list[int], list[Generation], int], None]) -> None:
    """Continuous batching, committed in groups of ``size`` finished prompts (and the rest at the end)."""
    group: list[tuple[int, Generation]] = []

    def finished(i: int, g: Generation) -> None:
        group.append((i, g))
        if len(group) >= size:
            done([j for j, _ in group], [h for _, h in group], size)
            group.clear()

    generate_continuous(model, tokenizer, prompts, gen_config, stop_ids=stops, requests=size, on_finished=finished)
    if group:
        done([j for j, _ in group], [h for _, h in group], size)


def generate(model, tokenizer, prompts: Sequence[Sequence[int]], settings: GenerationSettings, *,
             stop_ids: Sequence[int], pad_id: Optional[int] = None,
             batch_size: Union[int, str] = "auto", max_batch_size: int = 128,
             on_batch: Optional[OnBatch] = None, progress: bool = True, desc: str = "generating",
             truncated: Optional[Sequence[bool]] = None, stats: Optional[dict] = None,
             top_logprobs: int = 0, batching: str = "static") -> list[Generation]:
    """Generate a continuation of each tokenized prompt; returns Generations in input order (with the
    ``top_logprobs`` most likely tokens of every step when that is above 0).

    ``batching``: "static" (batches of equal-length-ish prompts, halved on out-of-memory) or "continuous"
    (transformers' continuous batching, greedy only, at most the batch size in flight).

    ``stats``, if given, receives ``batch_size`` (the size in use at the end), ``tokens`` and ``elapsed_s``.

    ``on_batch(indices, generations)`` is called after each batch (indices into ``prompts``): the
    runner commits there, so a crash loses at most the batch in flight.
    """
    from accelerate.utils import find_executable_batch_size
    from tqdm.auto import tqdm

    n = len(prompts)
    results: list[Optional[Generation]] = [None] * n
    if n == 0:
        return []
    if settings.do_sample:
        import torch

        torch.manual_seed(settings.seed)  # also seeds every CUDA device
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else list(stop_ids)[0]
    gen_config = generation_config(settings, stop_ids=stop_ids, pad_id=pad_id,
                                   bos_id=getattr(tokenizer, "bos_token_id", None))
    stops = set(stop_ids)
    order = sorted(range(n), key=lambda i: -len(prompts[i]))  # stable: equal lengths keep input order
    start = min(max_batch_size if batch_size == "auto" else int(batch_size), n)
    state = {"pos": 0, "batch_size": start, "tokens": 0}

    def halve() -> int:
        state["batch_size"] //= 2
        log.warning("out of memory at batch size %d; retrying with %d", state["batch_size"] * 2, state["batch_size"])
        return state["batch_size"]

    bar = tqdm(total=n, desc=desc, unit="ex", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    def done(idx: list[int], gens: list[Generation], size: int) -> None:
        for i, g in zip(idx, gens):
            if truncated is not None:
                g.prompt_truncated = bool(truncated[i])
            results[i] = g
        if on_batch is not None:
            on_batch(idx, gens)
        state["pos"] += len(idx)
        state["tokens"] += sum(len(g.token_ids) for g in gens)
        bar.update(len(idx))
        bar.set_postfix(batch=size, tok_s=f"{state['tokens'] / max(time.perf_counter() - started, 1e-9):.1f}")

    @find_executable_batch_size(starting_batch_size=start, reduce_batch_size_fn=halve)
    def loop(size: int) -> None:
        while state["pos"] < n:
            idx = order[state["pos"]:state["pos"] + size]
            done(idx, _batch_or_one_by_one(model, tokenizer, prompts, idx, gen_config, stops, pad_id, top_logprobs),
                 size)

    try:
        if batching == "continuous":
            _continuous(model, tokenizer, prompts, gen_config, stops, start, done)
        else:
            loop()
    finally:
        bar.close()
    state["elapsed_s"] = time.perf_counter() - started
    if stats is not None:
        stats.update(batch_size=state["batch_size"], tokens=state["tokens"], elapsed_s=state["elapsed_s"],
                     batching=batching)
    log.debug("generated %d tokens for %d prompts in %.1fs (final batch size %d)",
              state["tokens"], n, state["elapsed_s"], state["batch_size"])
    return [g for g in results if g is not None]
