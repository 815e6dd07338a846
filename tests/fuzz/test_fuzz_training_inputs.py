"""Fuzzed hyperparameters and dataset files for the training code: a clear error of its own before any model loads.

`train.run` is driven with the tokenizer and model loaders replaced by tripwires: a malformed argv or dataset must
end in `ConfigError` / `DataError` (which `main` turns into the job's failure reason) before either is touched.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.fuzz.inputs import FUZZ, INJECTIONS, any_text, hub_ids, within
from training_code import data, modeling, train
from training_code.config import (
    RANGES,
    ConfigError,
    SageMakerEnv,
    TrainConfig,
    in_range,
    parse_hyperparameters,
    validate,
)

GOOD_ROWS = [
    json.dumps({"text": "where is my card?", "label": "card_arrival"}),
    json.dumps({"text": "my card was declined", "label": "declined_card_payment"}),
    json.dumps({"text": "how do I top up?", "label": "top_up_by_card"}),
]


@contextmanager
def _channels(train_lines: list[bytes] | None = None, test_lines: list[bytes] | None = None) -> Iterator[SageMakerEnv]:
    """A SageMaker environment whose train and test channels hold the given lines (good rows by default)."""
    good = [line.encode() for line in GOOD_ROWS]
    with tempfile.TemporaryDirectory() as root:
        base = Path(root)
        for name, lines in (("train", train_lines or good), ("test", test_lines or good)):
            (base / name).mkdir()
            (base / name / "part-0.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        yield SageMakerEnv(
            train_dir=base / "train",
            test_dir=base / "test",
            model_dir=base / "model",
            output_data_dir=base / "output" / "data",
            output_dir=base / "output",
        )


def _tripwire(*_: Any, **__: Any) -> Any:
    raise AssertionError("a tokenizer or model was loaded for an input that should have been refused")


def _run_until_a_model_would_load(argv: list[str], env: SageMakerEnv) -> None:
    """`train.run` as the job runs it, refusing to get as far as loading a tokenizer or model."""
    with (
        mock.patch.object(modeling, "load_tokenizer", _tripwire),
        mock.patch.object(modeling, "load_model", _tripwire),
        mock.patch.object(modeling, "inspect_model", _tripwire),
    ):
        train.run(argv, env)


# ---------------------------------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------------------------------
def _spellings(name: str, value: Any) -> st.SearchStrategy[str]:
    """How the toolkit may spell a value on the command line (a rounded spelling only where the rounding keeps it
    in range: 0.9999999 rounds to 1, which is a different, refused, learning rate)."""
    if isinstance(value, bool):
        return st.sampled_from(["true", "True", "1", "yes"] if value else ["false", "False", "0", "no"])
    if isinstance(value, float):
        spellings = [repr(value), f"{value:e}", f"{value:.6g}"]
        return st.sampled_from([s for s in spellings if name not in RANGES or in_range(float(s), RANGES[name])])
    return st.just(str(value))


VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "approach": st.sampled_from(["full", "lora", "LoRA", "qlora"]),
    "epochs": st.floats(0.01, 50),
    "per_device_batch_size": st.integers(1, 64),
    "learning_rate": within(RANGES["learning_rate"], float),
    "lora_r": st.integers(1, 256),
    "lora_alpha": st.integers(1, 512),
    "lora_dropout": within(RANGES["lora_dropout"], float),
    "max_seq_length": st.integers(16, 8192),
    "prompt_style": st.sampled_from(["compact", "listed"]),
    "eval_samples": st.integers(0, 1000),
    "seed": st.integers(0, 2**31),
    "merge_adapter": st.booleans(),
    "max_steps": st.one_of(st.just(-1), st.integers(1, 10**6)),
    "save_interval_seconds": st.integers(60, 86400),
    "save_total_limit": st.integers(2, 10),
    "gradient_accumulation_steps": st.integers(1, 64),
    "warmup_ratio": within(RANGES["warmup_ratio"], float),
    "decoding": st.sampled_from(["free", "constrained"]),
    "batching": st.sampled_from(["auto", "padding_free", "length_grouped"]),
}


@st.composite
def valid_argv(draw: st.DrawFn) -> list[str]:
    argv = ["--model_id", draw(hub_ids)]
    for name in draw(st.lists(st.sampled_from(sorted(VALID_VALUES)), unique=True, max_size=8)):
        value = draw(VALID_VALUES[name])
        argv += [f"--{name}", draw(_spellings(name, value))] if draw(st.booleans()) else [f"--{name}={value}"]
    argv += ["--sagemaker_program", "train.py"]  # toolkit keys are ignored
    return argv


# (name, what makes it wrong) for the mutations below.
NUMBERS = {
    "epochs": (float, "> 0"),
    "per_device_batch_size": (int, ">= 1"),
    "learning_rate": (float, "(0, 1)"),
    "lora_r": (int, ">= 1"),
    "lora_alpha": (int, ">= 1"),
    "lora_dropout": (float, "[0, 1)"),
    "max_seq_length": (int, ">= 16"),
    "eval_samples": (int, ">= 0"),
    "max_steps": (int, "-1 or >= 1"),
    "save_interval_seconds": (int, ">= 60"),
    "save_total_limit": (int, ">= 2"),
    "gradient_accumulation_steps": (int, ">= 1"),
    "warmup_ratio": (float, "[0, 0.5)"),
    "logging_steps": (int, ">= 1"),
    "eval_batch_size": (int, ">= 1"),
}
OUT_OF_RANGE = {
    "epochs": st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400"]),
    "per_device_batch_size": st.integers(-(10**6), 0).map(str),
    "learning_rate": st.sampled_from(["0", "1", "1.5", "-2e-4", "nan", "inf"]),
    "lora_r": st.integers(-100, 0).map(str),
    "lora_alpha": st.integers(-100, 0).map(str),
    "lora_dropout": st.sampled_from(["1", "1.0", "-0.1", "nan", "inf", "7"]),
    "max_seq_length": st.integers(-100, 15).map(str),
    "eval_samples": st.integers(-1000, -1).map(str),
    "max_steps": st.sampled_from(["0", "-2", "-100"]),
    "save_interval_seconds": st.integers(-10, 59).map(str),
    "save_total_limit": st.integers(-10, 1).map(str),
    "gradient_accumulation_steps": st.integers(-10, 0).map(str),
    "warmup_ratio": st.sampled_from(["0.5", "-0.01", "nan", "inf", "3"]),
    "logging_steps": st.integers(-10, 0).map(str),
    "eval_batch_size": st.integers(-10, 0).map(str),
}
not_a_number = st.one_of(
    st.sampled_from(INJECTIONS), st.sampled_from(["", "ten", "0x10", "1,5", "[1]", "{}", "None"]), any_text
).filter(lambda s: not _parses_as_float(s))


def _parses_as_float(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


@st.composite
def malformed_argv(draw: st.DrawFn) -> tuple[str, list[str]]:
    argv = draw(valid_argv())
    kind = draw(
        st.sampled_from(
            [
                "not a number",
                "not an integer",
                "unknown hyperparameter",
                "bad choice",
                "not a boolean",
                "no value",
                "stray argument",
                "no model_id",
                "strategy on CPU or unknown",
                "model_id a missing local path",
                "number out of range or not finite",
            ]
        )
    )
    if kind == "number out of range or not finite":
        name = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
        argv += [f"--{name}", draw(OUT_OF_RANGE[name])]
        if name == "epochs":
            argv += ["--max_steps", "-1"]  # epochs only matter when max_steps leaves them to decide
    elif kind == "not a number":
        argv += [f"--{draw(st.sampled_from(sorted(NUMBERS)))}", draw(not_a_number)]
    elif kind == "not an integer":
        name = draw(st.sampled_from(sorted(n for n, (t, _) in NUMBERS.items() if t is int)))
        argv += [f"--{name}", draw(st.sampled_from(["1.5", "2.25", "1e-3", "nan", "inf"]))]
    elif kind == "unknown hyperparameter":
        name = draw(
            st.one_of(
                st.sampled_from(["learningrate", "lora-rank", "epoch", "model"]), st.from_regex(r"\A[a-z]\w{0,20}\Z")
            )
        ).replace("-", "_")
        if name in TrainConfig.__dataclass_fields__ or name.startswith("sagemaker_"):
            name = f"{name}_typo"
        argv += [f"--{name}", "1"]
    elif kind == "bad choice":
        name = draw(st.sampled_from(["approach", "prompt_style", "decoding", "batching", "gradient_checkpointing"]))
        allowed = {"full", "lora", "qlora", "compact", "listed", "free", "constrained", "auto", "padding_free"}
        allowed |= {"length_grouped", "true", "false"}
        argv += [
            f"--{name}",
            draw(
                st.one_of(st.sampled_from(INJECTIONS), any_text).filter(
                    lambda s: s.strip().lower() not in allowed and not s.startswith("--")
                )
            ),
        ]
    elif kind == "not a boolean":
        argv += ["--merge_adapter", draw(st.sampled_from(["maybe", "2", "-1", "truee", "", "nan", "$(id)"]))]
    elif kind == "no value":
        argv += [f"--{draw(st.sampled_from(sorted(NUMBERS)))}"]
    elif kind == "stray argument":
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(["train.py", "-x", "value", "lora"])))
        # Inserted between a name and its value it is a value (and may be fine): put one at the very front too.
        argv.insert(0, "stray")
    elif kind == "no model_id":
        index = argv.index("--model_id")
        del argv[index : index + 2]
    elif kind == "strategy on CPU or unknown":
        strategies = ["fsdp", "fsdp_offload", "shard_everything", "$(id)", "full_shard"]
        argv += ["--strategy", draw(st.sampled_from(strategies))]
        argv += ["--approach", "full"]
    elif kind == "model_id a missing local path":
        missing = ["/nonexistent/model", "./no-such-dir", "../../no-such-model", "~/nope"]
        argv += ["--model_id", draw(st.sampled_from(missing))]
    return kind, argv


@FUZZ
@given(argv=valid_argv())
def test_valid_hyperparameters_parse_and_validate(argv: list[str]) -> None:
    with _channels() as env:
        config = parse_hyperparameters(argv)
        validate(config, env)
    assert math.isfinite(config.epochs) and config.approach in ("full", "lora", "qlora")


@FUZZ
@given(case=malformed_argv())
def test_malformed_hyperparameters_fail_with_a_config_error_before_any_model_loads(case: tuple[str, list[str]]) -> None:
    kind, argv = case
    event(kind)
    with _channels() as env, pytest.raises(ConfigError) as raised:
        _run_until_a_model_would_load(argv, env)
    assert "hyperparameter" in str(raised.value) or "argument" in str(raised.value), str(raised.value)


# ---------------------------------------------------------------------------------------------------------------------
# Dataset files
# ---------------------------------------------------------------------------------------------------------------------
BAD_ROWS: dict[str, st.SearchStrategy[bytes]] = {
    "not JSON": st.one_of(
        st.sampled_from(["{", "{'text': 'x'}", "text,label", '{"text": "a", "label": }', "NaNx", "[1,"]),
        any_text.map(lambda s: "{" + s).filter(lambda s: not _is_json(s)),
    ).map(str.encode),
    "not UTF-8": st.sampled_from(
        [b'{"text": "\xff\xfe", "label": "a"}', b"\x80\x81", b'{"text": "caf\xe9", "label": "x"}']
    ),
    "not an object": st.sampled_from(["[1, 2]", "42", '"text"', "null", "true", "3.5"]).map(str.encode),
    "missing text": st.just(b'{"label": "card_arrival"}'),
    "missing label": st.just(b'{"text": "where is my card?"}'),
    "empty text": st.sampled_from(["", " ", "\t\n", "\u00a0", "\u2003"]).map(
        lambda t: json.dumps({"text": t, "label": "a"}).encode()
    ),
    "empty label": st.sampled_from(["", " ", "\t", "\u3000"]).map(
        lambda t: json.dumps({"text": "hello", "label": t}).encode()
    ),
    "text of the wrong type": st.sampled_from([1, 1.5, None, True, [], {}, ["a"]]).map(
        lambda t: json.dumps({"text": t, "label": "a"}).encode()
    ),
    "label of the wrong type": st.sampled_from([None, 1.5, True, False, [], {}, ["a"], {"x": 1}]).map(
        lambda t: json.dumps({"text": "hello", "label": t}).encode()
    ),
    "lone surrogate": st.sampled_from(
        ['{"text": "a\\ud800b", "label": "x"}', '{"text": "ok", "label": "\\udfff"}']
    ).map(str.encode),
    "deeply nested": st.integers(2_000, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
}


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@st.composite
def malformed_dataset(draw: st.DrawFn) -> tuple[str, list[bytes], list[bytes] | None]:
    """(what is wrong, train lines, test lines or None for good ones)."""
    good = [line.encode() for line in GOOD_ROWS]
    kind = draw(st.sampled_from([*BAD_ROWS, "a single label", "no rows", "empty test channel"]))
    if kind == "a single label":
        label = draw(st.sampled_from(["card_arrival", "x", "ünïcode"]))
        texts = draw(st.lists(st.sampled_from(["hi", "hello there", "where?"]), min_size=1, max_size=50))
        return kind, [json.dumps({"text": t, "label": label}).encode() for t in texts], None
    if kind == "no rows":
        return kind, [b"", b"   ", b"\t"], None
    if kind == "empty test channel":
        return kind, good, [b"", b" "]
    lines = list(good)
    bad = draw(BAD_ROWS[kind])
    lines.insert(draw(st.integers(0, len(lines))), bad)
    in_test = draw(st.booleans())
    return (kind, good, lines) if in_test else (kind, lines, None)


ARGV = ["--model_id", "org/tiny", "--approach", "lora"]


@FUZZ
@given(case=malformed_dataset())
def test_malformed_datasets_fail_with_a_data_error_before_any_model_loads(
    case: tuple[str, list[bytes], list[bytes] | None],
) -> None:
    kind, train_lines, test_lines = case
    event(kind)
    with _channels(train_lines, test_lines) as env, pytest.raises(data.DataError) as raised:
        _run_until_a_model_would_load(ARGV, env)
    message = str(raised.value)
    assert message and len(message) < 2000, message


class CharTokenizer:
    """One token per character: enough to measure a huge row without a real tokenizer."""

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [[0] * (len(text) + int(add_special_tokens)) for text in texts]}


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(size=st.integers(100_000, 4_000_000), where=st.sampled_from(["text", "label"]))
def test_a_huge_row_is_read_and_refused_for_the_models_positions_before_any_model_loads(size: int, where: str) -> None:
    row = {"text": "hi", "label": "b", where: "x" * size}
    lines = [json.dumps(row).encode(), *(line.encode() for line in GOOD_ROWS)]
    with _channels(lines) as env:
        examples = data.read_jsonl_dir(env.train_dir)
        labels = data.label_set(examples)
        fmt = data.prompt_format("compact", labels)
        dataset = {
            "prompt": [fmt.prompt(e.text) for e in examples],
            "completion": [fmt.completion(e.label, "</s>") for e in examples],
        }
        lengths = data.measure_lengths(CharTokenizer(), dataset, [], 4)
        with pytest.raises(data.DataError, match="positions end at 4096"):
            data.resolve_max_seq_length(None, lengths, model_limit=4096)
