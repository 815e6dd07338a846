"""Generation-based evaluation: intent accuracy, parse rate, ROUGE-1/2/L, BERTScore F1, inference time.

Predictions come from batched greedy generation with left padding that stops at EOS (the way the model would be
served). A prediction parses when the stripped output is exactly one known label; accuracy counts unparsed outputs
as wrong. Constrained decoding (the default) restricts each generated token to continuations of some label, so every
output parses and accuracy measures the model's choice among labels only.

A metric never sinks a trained job: the BERTScore encoder is fetched and loaded before training (`prepare_bertscore`
fails fast), and a metric that still cannot be computed is reported as missing with its reason.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

# Every metric an evaluation pass reports (what is missing when generation itself fails).
EVAL_METRICS = (
    "eval_intent_accuracy",
    "eval_parse_rate",
    "eval_exact_match",
    "eval_rouge1",
    "eval_rouge2",
    "eval_rougeL",
    "eval_bertscore_f1",
    "eval_inference_seconds",
    "eval_seconds_per_sample",
    "eval_samples",
)
# Inference time of the adapter merged into the base (merge_adapter), next to the unmerged time above.
MERGED_METRICS = ("eval_inference_seconds_merged", "eval_seconds_per_sample_merged")
# Per-sample answers of the evaluated rows, next to metrics.json (the report's paired test reads them).
PREDICTIONS_FILE = "predictions.jsonl"
# A tokenizer whose configuration states no `model_max_length` gets transformers' VERY_LARGE_INTEGER (1e30);
# anything this large means "unbounded".
UNBOUNDED_LENGTH = 10**18
# Encoder families that number positions from padding_idx + 1, so that max_position_embeddings counts two more
# positions than the tokens they cover (roberta-large: 514 embeddings, 512 tokens).
PADDING_OFFSET_MODEL_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer"})


class EvaluationSetupError(RuntimeError):
    """An evaluation dependency (the BERTScore encoder) cannot be fetched or loaded; raised before training."""


@dataclass(frozen=True)
class BertScoreEncoder:
    """A BERTScore encoder available locally: its configured name, local directory and the layer to use."""

    name: str
    path: str
    num_layers: int


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


def normalise_answer(text: str) -> str:
    """An answer as exact match compares it: surrounding and repeated whitespace removed."""
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Share of answers equal to their reference after whitespace normalisation (task sft's accuracy)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    right = sum(answer_is_right(p, r) for p, r in zip(predictions, references, strict=True))
    return {"eval_exact_match": right / len(predictions) if predictions else 0.0}


def answer_is_right(prediction: str, reference: str) -> bool:
    """One sft sample's right/wrong: the answers are equal after whitespace normalisation."""
    return normalise_answer(prediction) == normalise_answer(reference)


def prediction_rows(
    indices: Sequence[int], predictions: Sequence[str], references: Sequence[str], *, labelled: bool
) -> list[dict[str, Any]]:
    """One `{"index", "reference", "prediction", "correct"}` row per evaluated sample; `index` is the row's position
    in the test split, so two jobs' rows pair up by it. `correct` counts as the task's accuracy does: the stripped
    output equals the label (`labelled`, classification), or the normalised answer equals the reference (sft)."""
    rows = []
    for index, prediction, reference in zip(indices, predictions, references, strict=True):
        right = prediction.strip() == reference if labelled else answer_is_right(prediction, reference)
        rows.append({"index": index, "reference": reference, "prediction": prediction.strip(), "correct": right})
    return rows


def write_predictions(rows: Sequence[dict[str, Any]], *directories: Path) -> None:
    """predictions.jsonl (one row per evaluated sample) into each directory."""
    import json

    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PREDICTIONS_FILE).write_text(text, encoding="utf-8")


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


def prepare_bertscore(model: str, token: str | None) -> BertScoreEncoder | None:
    """Fetch and load the BERTScore encoder once, before training; None when `model` is `none` (skipped).

    A Hub name (bert-score's default `roberta-large`) is downloaded now and then used from its local directory, so
    scoring after training needs no Hub access; a local directory is loaded to check it. Anything that fails here
    raises `EvaluationSetupError` before a GPU hour is spent on training.
    """
    if model.strip().lower() == "none":
        return None
    try:
        from bert_score.utils import model2layers
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import cached_file

        local = Path(model).expanduser()
        # Loading once downloads exactly the files bert-score will load (the weights in one format, the tokenizer)
        # and proves they load with this transformers version.
        AutoTokenizer.from_pretrained(str(local) if local.is_dir() else model, token=token)
        encoder = AutoModel.from_pretrained(str(local) if local.is_dir() else model, token=token)
        del encoder
        config_file = None if local.is_dir() else cached_file(model, "config.json", token=token)
        path = str(local) if config_file is None else str(Path(config_file).parent)
        encoder_config = AutoConfig.from_pretrained(path)
        path = bounded_tokenizer_dir(path, encoder_token_limit(encoder_config))
        # bert-score's tuned layer for known names; the last hidden layer for a local or unlisted encoder.
        num_layers = model2layers.get(model) or encoder_config.num_hidden_layers
        prepared = BertScoreEncoder(name=model, path=path, num_layers=num_layers)
        # Score one pair now, the way bert-score will after training: whatever breaks its tokenizer or model path
        # fails the job here, not as a missing metric after the GPU hours.
        bertscore_f1(["ok"], ["ok"], prepared, "cpu")
    except Exception as exc:
        raise EvaluationSetupError(
            f"bertscore_model={model!r} cannot be fetched or loaded ({type(exc).__name__}: {exc}); pass a local "
            "encoder directory, or none to skip BERTScore"
        ) from exc
    LOG.info("BERTScore encoder %s ready in %s (layer %d)", model, path, num_layers)
    return prepared


def encoder_token_limit(encoder_config: Any) -> int:
    """The longest input (in tokens, special tokens included) the encoder's position embeddings cover."""
    positions = int(encoder_config.max_position_embeddings)
    if encoder_config.model_type in PADDING_OFFSET_MODEL_TYPES:
        return positions - (int(encoder_config.pad_token_id) + 1)
    return positions


def bounded_tokenizer_dir(path: str, limit: int) -> str:
    """`path`, or where its tokenizer has no length limit, a folder that states one and links everything else.

    bert-score truncates every input to `tokenizer.model_max_length`. roberta-large (its default encoder) ships no
    tokenizer_config.json, so transformers 5 (which dropped the built-in per-checkpoint limits) reports 1e30, and
    the tokenizers backend cannot take it: `OverflowError: int too big to convert` on the first sentence. The
    folder holds a tokenizer_config.json with `model_max_length` set to the encoder's position limit and links to
    every other file, so the weights are neither copied nor changed.
    """
    from transformers import AutoTokenizer

    if AutoTokenizer.from_pretrained(path).model_max_length < UNBOUNDED_LENGTH:
        return path
    source = Path(path)
    bounded = Path(tempfile.mkdtemp(prefix="bertscore-encoder-"))
    for entry in source.iterdir():
        if entry.name != "tokenizer_config.json":
            (bounded / entry.name).symlink_to(entry.resolve())
    stated = source / "tokenizer_config.json"
    tokenizer_config = json.loads(stated.read_text()) if stated.is_file() else {}
    tokenizer_config["model_max_length"] = limit
    (bounded / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    LOG.info("the tokenizer of %s states no length limit: BERTScore truncates at %d tokens", path, limit)
    return str(bounded)


def bertscore_f1(
    predictions: Sequence[str], references: Sequence[str], encoder: BertScoreEncoder, device: str
) -> float:
    """Mean BERTScore F1 with a prepared encoder (see `prepare_bertscore`)."""
    import bert_score

    # An empty output scores 0 (it says nothing). bert-score itself cannot encode an empty string with
    # transformers 5 tokenizers (it calls the removed build_inputs_with_special_tokens), so it never sees one.
    scored = [i for i, prediction in enumerate(predictions) if prediction.strip()]
    if not scored:
        return 0.0
    _, _, f1 = bert_score.score(
        [predictions[i].strip() for i in scored],
        [references[i] for i in scored],
        model_type=encoder.path,
        num_layers=encoder.num_layers,
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


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    device: str,
    trie: LabelTrie | None = None,
    warmup: bool = False,
    add_special_tokens: bool = True,
    stop_token_ids: Sequence[int] | None = None,
) -> Generations:
    """Batched greedy generation, left-padded, stopping at EOS; returns the decoded new tokens and wall seconds.

    With `warmup`, one untimed batch runs first (CUDA kernels, allocator, caches), so that the timed seconds of
    two models (e.g. adapter and merged) compare like for like, whichever runs first. `add_special_tokens=False`
    for prompts that already hold them (a chat template's text); `stop_token_ids`: tokens that end an answer
    besides EOS (a chat template's end of turn).
    """
    import torch

    model.eval()
    tokenizer.padding_side = "left"  # so every prompt ends at the same position and generation starts together

    def run_batch(batch_prompts: Sequence[str], new_tokens: int) -> list[str]:
        batch = tokenizer(
            list(batch_prompts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
        ).to(device)
        prompt_length = batch["input_ids"].shape[1]
        kwargs: dict[str, Any] = {}
        if trie is not None:
            kwargs["prefix_allowed_tokens_fn"] = _constrain(trie, prompt_length)
        with torch.inference_mode():
            generated = model.generate(
                **batch,
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=list(stop_token_ids) if stop_token_ids else tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
                **kwargs,
            )
        return tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)

    if warmup and prompts:
        run_batch(prompts[:batch_size], max_new_tokens)
        _synchronize(device)
    outputs: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        outputs.extend(run_batch(prompts[start : start + batch_size], max_new_tokens))
    _synchronize(device)
    return Generations(outputs=outputs, seconds=time.perf_counter() - started)


@dataclass
class Scores:
    """Metrics computed, and metrics that could not be computed with the reason why."""

    metrics: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    """Per-sample answers (`prediction_rows`), written as predictions.jsonl; empty when not evaluated."""


def failure_reason(exc: BaseException) -> str:
    """A one-line reason for a metric that could not be computed."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def score(
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str],
    inference_seconds: float,
    bertscore: BertScoreEncoder | None,
    device: str,
    indices: Sequence[int] | None = None,
) -> Scores:
    """Every evaluation metric of the catalog for these predictions; a metric that fails is recorded as missing.

    With `labels` (classification): intent accuracy and parse rate; without (sft, free text): exact match, and no
    parse rate (there is no label set to parse against). `indices`: the samples' positions in the test split, for
    the per-sample rows (in order 0..n-1 when not given)."""
    scores = Scores()
    if labels:
        scores.metrics.update(intent_metrics(predictions, references, labels))
    else:
        scores.metrics.update(exact_match(predictions, references))
    positions = list(indices) if indices is not None else list(range(len(predictions)))
    scores.predictions = prediction_rows(positions, predictions, references, labelled=bool(labels))
    try:
        scores.metrics.update(rouge_metrics(predictions, references))
    except Exception as exc:
        LOG.exception("ROUGE could not be computed")
        scores.missing.update(dict.fromkeys(("eval_rouge1", "eval_rouge2", "eval_rougeL"), failure_reason(exc)))
    if bertscore is None:
        LOG.warning("bertscore_model=none: BERTScore skipped, eval_bertscore_f1 is not reported")
        scores.missing["eval_bertscore_f1"] = "skipped: bertscore_model=none"
    else:
        try:
            scores.metrics["eval_bertscore_f1"] = bertscore_f1(predictions, references, bertscore, device)
        except Exception as exc:
            LOG.exception("BERTScore could not be computed")
            scores.missing["eval_bertscore_f1"] = failure_reason(exc)
    scores.metrics["eval_inference_seconds"] = inference_seconds
    scores.metrics["eval_seconds_per_sample"] = inference_seconds / max(len(predictions), 1)
    scores.metrics["eval_samples"] = len(predictions)
    return scores
