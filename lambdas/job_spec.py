"""The job spec: one fully resolved training job, as Plan emits it and Launch, Record and Report consume it.

A `TypedDict`, so it stays plain JSON on its way through Step Functions (the Map item) while the code that builds and
reads it is type-checked. Its hyperparameter fields are exactly the catalog's `HYPERPARAMETERS` (less the deployment
ones Launch adds); the rest is identity, placement, limits, price and S3 locations.
"""

from __future__ import annotations

from typing import Any, TypedDict


class AttemptFields(TypedDict, total=False):
    """A JobSpec's optional fields: what remedies (lambdas/remedies.py) add to an attempt after the first, and the
    demo's failure injection. Absent on Plan's specs (attempt 1)."""

    # Attempts (lambdas/remedies.py): absent on Plan's specs, which are attempt 1.
    attempt: int  # 1-based
    base_job_name: str  # the first attempt's name
    prior_cost_usd: float  # what the earlier attempts cost
    allowance_usd: float  # the most all attempts of this job may cost (its share of budget_usd)
    tried_instance_types: list[str]
    remedies_applied: list[str]
    # Demo only (offline runner): the failure the local training backend injects into this job's first attempt.
    inject_failure: str


class Hyperparameters(TypedDict):
    """A JobSpec's hyperparameters: exactly the catalog's `HYPERPARAMETERS` less the deployment ones Launch adds (see
    there for defaults and meaning; tests/lambdas/test_lambda_hyperparameters.py keeps the two equal)."""

    approach: str
    model_id: str
    instance_type: str
    instance_count: int
    epochs: float
    batch_size: int
    learning_rate: float | None  # None: the training code chooses
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    max_seq_length: int | str  # an int, or "auto"
    prompt_style: str
    merge_adapter: bool
    max_steps: int
    eval_samples: int | str  # an int, or "all" (the whole test split)
    task: str  # classification | sft
    primary_metric: str  # the metric the report ranks by (Plan resolves the task's default)
    spot: bool
    strategy: str  # catalog.STRATEGIES: single | ddp | fsdp | fsdp_offload | split | lean (the planner's choice)
    save_interval_seconds: int
    seed: int
    gradient_accumulation_steps: int
    warmup_ratio: float
    eval_batch_size: int
    decoding: str
    checkpoint_dir: str


class EstimateFields(TypedDict):
    """A JobSpec's expected time and cost (lambdas/estimate.spec_fields: Plan and Remedy write the same ones)."""

    estimated_hours: float  # expected wall hours incl. startup and download (lambdas/estimate.py)
    estimated_cost_usd: float  # expected $ at the job's pricing (the expected spot price if spot)
    estimated_low_cost_usd: float  # the low end of the band (every constant at its best, the lowest spot fraction)
    estimated_high_cost_usd: float  # the high end (every constant at its worst, the highest spot fraction)
    estimated_on_demand_cost_usd: float
    estimated_seconds: dict[str, float]  # expected seconds per part (estimate.PARTS) and "total"
    estimated_bottleneck: str  # what bounds a training step: compute, memory, communication (none: no training)
    # lambdas.calibration.calibration_key, "<instance family>#<approach>#<strategy>": which recorded jobs correct
    # this one's estimate
    calibration_key: str
    calibration: dict[str, Any]  # the calibration in force: {key, samples, factors, source}


class JobSpec(AttemptFields, Hyperparameters, EstimateFields):
    """One training job (docs/architecture.md, "Plan output and the job spec")."""

    run_id: str
    job_name: str
    model_key: str  # catalog key or Hub id
    # The model as Plan sized it (catalog.model_of_job rebuilds it, so a remedy re-plans the same model):
    architecture: dict[str, Any]  # catalog.Architecture's fields
    architecture_source: str  # catalog.SizedFrom: catalog | input | hub | params_billion (a guessed shape)
    params_billion: float  # the size Plan used (a guessed shape's: the input's params_billion, or 7)
    gpus_per_instance: int
    # Limits and money
    max_runtime_seconds: int
    max_wait_seconds: int | None  # None for on-demand jobs
    hourly_price_usd: float
    price_source: str
    estimated_max_cost_usd: float  # the upper bound: max runtime x instances x hourly price (the budget gate's figure)
    estimated_train_rows: float  # the train channel's rows the estimate assumed
    estimated_test_rows: float  # the test channel's rows the estimate assumed (what eval_samples "all" evaluates)
    # S3 layout
    train_s3_uri: str
    test_s3_uri: str
    checkpoint_s3_uri: str
    output_s3_uri: str


class PlanOutput(TypedDict):
    """What the Plan step returns to the state machine."""

    run_id: str
    jobs: list[JobSpec]
    total_estimated_max_cost_usd: float
    total_estimated_cost_usd: float  # sum of the jobs' expected costs; shown, never gated on
    budget_usd: float
    calibration: dict[str, dict[str, Any]]  # the calibration in force per key of the run's jobs
