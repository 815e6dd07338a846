"""Generation-based evaluation: intent accuracy, parse rate, ROUGE-1/2/L, BERTScore F1, inference time.

Predictions come from batched greedy generation with left padding that stops at EOS (the way the model would be
served). A prediction parses when the stripped output is exactly one known label; accuracy counts unparsed outputs
as wrong. Optional constrained decoding restricts each generated token to continuations of some label, so every
output parses and accuracy measures the model's choice among labels only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)


def intent_metrics(predictions: Sequence[str], references: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Intent accuracy and parse rate of stripped predictions against reference labels."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {"eval_intent_accuracy": 0.0, "eval_parse_rate": 0.0}
    known = set(labels)
    parsed = [prediction.strip() in known for prediction in predictions]
    correct = [prediction.strip() == reference for prediction, reference in zip(predictions, references, strict=True)]
    return {
        "eval_intent_accuracy": sum(correct) / len(predictions),
        "eval_parse_rate": sum(parsed) / len(predictions),
    }


def rouge_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (rouge-score; its tokenizer splits `card_arrival` into `card arrival`)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction.strip())
        for key in totals:
            totals[key] += scores[key].fmeasure
    count = max(len(predictions), 1)
    return {f"eval_{key}": value / count for key, value in totals.items()}


def bertscore_f1(predictions: Sequence[str], references: Sequence[str], model: str, device: str) -> float:
    """Mean BERTScore F1 with `model` (a bert-score model name or a local encoder directory, for offline use)."""
    import bert_score
    from bert_score.utils import model2layers

    if model in model2layers:
        num_layers = model2layers[model]
    else:
        from transformers import AutoConfig

        # A local or unlisted encoder: bert-score cannot look its layer up, use the last hidden layer.
        num_layers = AutoConfig.from_pretrained(model).num_hidden_layers
    # An empty output scores 0 (it says nothing). bert-score itself cannot encode an empty string with
    # transformers 5 tokenizers (it calls the removed build_inputs_with_special_tokens), so it never sees one.
    scored = [i for i, prediction in enumerate(predictions) if prediction.strip()]
    if not scored:
        return 0.0
    _, _, f1 = bert_score.score(
        [predictions[i].strip() for i in scored],
        [references[i] for i in scored],
        model_type=model,
        num_layers=num_layers,
        device=device,
        verbose=False,
    )
    return float(f1.sum()) / len(predictions)


class LabelTrie:
    """Token sequences of ` <label><eos>` after the prompt, as a trie for constrained decoding."""

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int) -> None:
        self.root: dict[int, dict] = {}
        self.eos_token_id = eos_token_id
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """Tokens that continue some label after `generated`; EOS once a label is complete or the path is lost."""
        node = self.root
        for token in generated:
            if token == self.eos_token_id or token not in node:
                return [self.eos_token_id]
            node = node[token]
        return list(node) or [self.eos_token_id]


def label_token_sequences(tokenizer: Any, prompt: str, labels: Sequence[str], eos_token: str) -> list[list[int]]:
    """The token ids each label's completion gets right after `prompt` (as in training: tokenized jointly)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    sequences = []
    for label in labels:
        ids = tokenizer(f"{prompt} {label}{eos_token}")["input_ids"]
        start = 0
        while start < min(len(ids), len(prompt_ids)) and ids[start] == prompt_ids[start]:
            start += 1
        sequences.append(ids[start:])
    return sequences


def _constrain(trie: LabelTrie, prompt_length: int):  # -> Callable[[int, torch.Tensor], list[int]]
    """`generate`'s prefix_allowed_tokens_fn: the tokens `trie` allows after what was generated so far."""
    return lambda _batch_id, ids: trie.allowed(ids[prompt_length:].tolist())


@dataclass
class Generations:
    """Outputs of one generation pass."""

    outputs: list[str]
    seconds: float


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    device: str,
    trie: LabelTrie | None = None,
) -> Generations:
    """Batched greedy generation, left-padded, stopping at EOS; returns the decoded new tokens and wall seconds."""
    import torch

    model.eval()
    tokenizer.padding_side = "left"  # so every prompt ends at the same position and generation starts together
    outputs: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True).to(device)
        prompt_length = batch["input_ids"].shape[1]
        kwargs: dict[str, Any] = {}
        if trie is not None:
            kwargs["prefix_allowed_tokens_fn"] = _constrain(trie, prompt_length)
        with torch.inference_mode():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
                **kwargs,
            )
        outputs.extend(tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return Generations(outputs=outputs, seconds=time.perf_counter() - started)


def score(
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str],
    inference_seconds: float,
    bertscore_model: str,
    device: str,
) -> dict[str, float]:
    """Every evaluation metric of the catalog for these predictions."""
    metrics: dict[str, float] = {}
    metrics.update(intent_metrics(predictions, references, labels))
    metrics.update(rouge_metrics(predictions, references))
    if bertscore_model.strip().lower() == "none":
        LOG.warning("bertscore_model=none: BERTScore skipped, eval_bertscore_f1 is not reported")
    else:
        metrics["eval_bertscore_f1"] = bertscore_f1(predictions, references, bertscore_model, device)
    metrics["eval_inference_seconds"] = inference_seconds
    metrics["eval_seconds_per_sample"] = inference_seconds / max(len(predictions), 1)
    metrics["eval_samples"] = len(predictions)
    return metrics
