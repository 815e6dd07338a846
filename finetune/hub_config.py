"""The shape of each Hub model an execution input names, read from its config.json, for Plan (issue 20).

`finetune validate / estimate / start` put `architecture` (lambdas/catalog.py `Architecture`'s fields) into every
experiment that names a Hugging Face Hub id and has none, so Plan sizes memory, instance and cost from the model's
real shape instead of a guess from `params_billion`. The file comes from:

- `--model-config MODEL=FILE` (repeatable; `FILE` alone when the input names one Hub model): a local config.json,
  offline;
- else the Hub, through `huggingface_hub.hf_hub_download(repo_id, "config.json")`: cached under HF_HOME, with the
  token of the user's environment (`HF_TOKEN`) or `hf auth login` for gated models; with `HF_HUB_OFFLINE=1` from
  the cache only.

A model whose file cannot be had (no network, a gated model without access) keeps no architecture: a warning says so,
and Plan then fetches the file itself (public models) or sizes the model from `params_billion`. A file the planner
cannot size is an input error on `experiments[i].architecture`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdas import catalog
from lambdas.errors import InvalidExecutionInput

# `hf_hub_download`'s shape: (repo_id, filename) -> the local path of the (cached) file.
Download = Callable[..., str]
# Where a warning goes (the CLI's stderr console).
Warn = Callable[[str], None]


def parse_model_configs(values: Sequence[str], doc: Any) -> dict[str, Path]:
    """`--model-config` values as {Hub id: file}. `MODEL=FILE` names its model; a bare `FILE` is the config of the
    input's one Hub model (an input error when it names none or several)."""
    found: dict[str, Path] = {}
    hub_ids = sorted({experiment["model"] for _, experiment in _hub_experiments(doc)})
    for value in values:
        model, sep, file = value.rpartition("=")
        if not sep:
            if len(hub_ids) != 1:
                raise InvalidExecutionInput(
                    [
                        (
                            "--model-config",
                            f"{value}: say which model it is for (MODEL=FILE); the input's Hub models: "
                            f"{', '.join(hub_ids) or 'none'}",
                        )
                    ]
                )
            model, file = hub_ids[0], value
        found[model] = Path(file)
    return found


def _hub_experiments(doc: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, experiment) of each experiment naming a Hub id (not a catalog key) in a parsed input."""
    experiments = doc.get("experiments") if isinstance(doc, dict) else None
    if not isinstance(experiments, list):
        return []
    return [
        (index, experiment)
        for index, experiment in enumerate(experiments)
        if isinstance(experiment, dict)
        and isinstance(experiment.get("model"), str)
        and experiment["model"] not in catalog.MODELS
        and catalog.is_hf_id(experiment["model"])
    ]


def read_config(model_id: str, local: Path | None, download: Download | None = None) -> dict[str, Any]:
    """`model_id`'s config.json: the local file when given, else the Hub's (cached; the user's token). OSError
    when it cannot be had; ValueError when it is not a JSON object."""
    if local is None:
        if download is None:
            from huggingface_hub import hf_hub_download  # imported only when the Hub is asked

            download = hf_hub_download
        local = Path(download(repo_id=model_id, filename="config.json"))
    found = json.loads(local.read_text())
    if not isinstance(found, dict):
        raise ValueError(f"{local} is not a JSON object")
    return found


def with_architectures(
    doc: Any, model_configs: Mapping[str, Path], *, warn: Warn, download: Download | None = None
) -> Any:
    """A copy of the input with `architecture` in each Hub-model experiment that has none (one read per model).

    `InvalidExecutionInput` on `experiments[i].architecture` for a config the planner cannot size, and on
    `--model-config` for a file that cannot be read or names a model the input does not use."""
    doc = copy.deepcopy(doc)
    hub = _hub_experiments(doc)
    unused = sorted(set(model_configs) - {experiment["model"] for _, experiment in hub})
    problems = [("--model-config", f"{model} is not a Hub model of this input") for model in unused]
    shapes: dict[str, dict[str, Any] | None] = {}
    for index, experiment in hub:
        model = experiment["model"]
        if "architecture" in experiment:
            continue
        if model not in shapes:
            shapes[model] = _shape(model, model_configs.get(model), index, problems, warn, download)
        if shapes[model] is not None:
            experiment["architecture"] = shapes[model]
    if problems:
        raise InvalidExecutionInput(problems)
    return doc


def _shape(
    model: str,
    local: Path | None,
    index: int,
    problems: list[tuple[str, str]],
    warn: Warn,
    download: Download | None,
) -> dict[str, Any] | None:
    """One model's architecture fields; None (a warning or a problem recorded) when there are none to send."""
    try:
        config = read_config(model, local, download)
    except (OSError, ValueError) as exc:  # the Hub's errors (gated, not found, offline) are OSErrors
        if local is not None:
            problems.append(("--model-config", f"cannot read {local} as a config.json: {exc}"))
        else:
            warn(
                f"{model}: config.json not read from the Hub ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "Plan will fetch it itself (public models) or size the model from params_billion. A gated model "
                "needs your token (HF_TOKEN or `hf auth login`); offline, pass --model-config MODEL=FILE."
            )
        return None
    try:
        return catalog.Architecture.from_hf_config(config).to_dict()
    except catalog.ModelConfigError as exc:
        problems.append((f"experiments[{index}].architecture", f"{model}: {exc}"))
        return None
