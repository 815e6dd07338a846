"""The local training backend launches jobs through the SageMaker training toolkit, as the Hugging Face DLC does.

Each job here is a real CreateTrainingJob request (Plan's job spec → Launch's request builder) whose code tarball
holds a stand-in `train.py` that records the argv and environment the toolkit gives it, then behaves as the test
asks (its `behaviour` hyperparameter). The demo test runs the real `train.py` the same way.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from packaging.utils import canonicalize_name

from finetune.local.backends import SAGEMAKER_TRAINING_MODULE, SubprocessTrainingBackend
from lambdas import plan, training_job
from tests.dependencies import parity

REGION = "us-east-1"
DATA_BUCKET = "data"
CODE_URI = "s3://code/sourcedir.tar.gz"
DATASET = Path(__file__).resolve().parents[2] / "examples" / "datasets" / "banking77-mini"
MODEL_ID = "demo/tiny-llama"

# Stand-in entry point: what the toolkit gave it goes to $SM_OUTPUT_DATA_DIR/invocation.json before anything else.
FAKE_TRAIN_PY = """
import json, os, signal, sys, time
from importlib import metadata
from pathlib import Path

out = Path(os.environ["SM_OUTPUT_DATA_DIR"])
behaviour = sys.argv[sys.argv.index("--behaviour") + 1]
if behaviour == "wait_for_stop":
    signal.signal(signal.SIGTERM, lambda *_: (out / "sigterm_received").write_text("yes"))
versions = {}
for distribution in metadata.distributions():  # the first found on sys.path is the one that imports
    versions.setdefault(distribution.metadata["Name"], distribution.version)
invocation = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "python": sys.executable}
(out / "invocation.json").write_text(json.dumps({**invocation, "versions": versions}))
if behaviour == "succeed":
    print("train_step=3; train_loss=0.25;")
    print("eval_intent_accuracy=0.75;")
elif behaviour == "fail_with_reason":
    Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("ValueError: approach must be full, lora or qlora")
    sys.exit(1)
elif behaviour == "crash":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: the stand-in script crashed", file=sys.stderr)
    sys.exit(3)
elif behaviour == "wait_for_stop":
    time.sleep(120)
"""


def _tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def _launch_request(job_name_prefix: str) -> dict[str, Any]:
    """The CreateTrainingJob request Launch sends for a one-job demo input, built by the real Plan and Launch code."""
    execution_input = {
        "experiments": [{"model": MODEL_ID, "approach": "lora", "max_steps": 3}],
        "dataset": {"name": "banking77-mini"},
        "budget_usd": 20,
    }
    doc, experiments = plan.validate_execution_input(execution_input)
    [job] = plan.build_jobs(
        doc,
        experiments,
        run_id="toolkit-test",
        bucket=DATA_BUCKET,
        job_name_prefix=job_name_prefix,
        price_of=plan.catalog_price,
    )
    return training_job.create_training_job_request(
        job,
        role_arn="arn:aws:iam::123456789012:role/local-sagemaker",
        image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:local",
        code_s3_uri=CODE_URI,
        hf_token_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-token",
        region=REGION,
        project="finetune",
        data_key_arn="arn:aws:kms:us-east-1:123456789012:key/local-data-key",
    )


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """moto S3 with the dataset; `publish_code(files)` puts a code tarball at CODE_URI."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=DATA_BUCKET)
        s3.create_bucket(Bucket="code")
        for split in ("train", "test"):
            s3.put_object(
                Bucket=DATA_BUCKET,
                Key=f"datasets/banking77-mini/{split}/{split}.jsonl",
                Body=(DATASET / f"{split}.jsonl").read_bytes(),
            )

        def publish_code(files: dict[str, str]) -> None:
            s3.put_object(Bucket="code", Key="sourcedir.tar.gz", Body=_tarball(files))

        yield publish_code


def _run(
    tmp_path: Path, behaviour: str, *, extra: dict[str, Any] | None = None, **backend_options: Any
) -> tuple[SubprocessTrainingBackend, dict[str, Any]]:
    backend = SubprocessTrainingBackend(
        tmp_path / "jobs",
        model_paths={MODEL_ID: str(tmp_path / "tiny-llama")},
        extra_hyperparameters={"bertscore_model": "/models/minilm"},
        **backend_options,
    )
    request = _launch_request(f"t{behaviour[:6]}")
    for name, value in {"behaviour": behaviour, **(extra or {})}.items():
        request["HyperParameters"][name] = json.dumps(value)
    backend.create(request)
    return backend, request


def _invocation(backend: SubprocessTrainingBackend, request: dict[str, Any]) -> dict[str, Any]:
    job_dir = backend.jobs[request["TrainingJobName"]].directory
    return json.loads((job_dir / "output" / "data" / "invocation.json").read_text())


@pytest.fixture
def succeeded(account, tmp_path: Path) -> tuple[SubprocessTrainingBackend, dict[str, Any]]:
    account({"train.py": FAKE_TRAIN_PY})
    backend, request = _run(tmp_path, "succeed", extra={"note": "two words"})
    backend.wait_idle()
    return backend, request


def test_the_script_gets_the_toolkits_argv_built_from_hyperparameters_json(succeeded) -> None:
    backend, request = succeeded
    job_dir = backend.jobs[request["TrainingJobName"]].directory
    written = json.loads((job_dir / "input" / "config" / "hyperparameters.json").read_text())
    # SageMaker's hyperparameters.json holds the request's JSON-encoded strings; the toolkit decodes them.
    assert all(isinstance(value, str) for value in written.values())
    assert written["approach"] == request["HyperParameters"]["approach"] == '"lora"'
    decoded = {name: json.loads(text) for name, text in written.items() if not name.startswith("sagemaker_")}

    argv = _invocation(backend, request)["argv"]

    # The toolkit's rule: every non-`sagemaker_` hyperparameter, sorted by name, as `--name str(value)`.
    assert argv == ["train.py", *[part for name in sorted(decoded) for part in (f"--{name}", str(decoded[name]))]]
    assert argv[argv.index("--approach") + 1] == "lora"
    assert argv[argv.index("--merge_adapter") + 1] in ("True", "False")  # Python's spelling of a JSON boolean
    assert argv[argv.index("--note") + 1] == "two words"  # toolkit 5.x: no shell, so a space does not split
    assert argv[argv.index("--model_id") + 1] == str(backend.model_paths[MODEL_ID])
    assert argv[argv.index("--checkpoint_dir") + 1] == str(job_dir / "checkpoints")
    assert argv[argv.index("--bertscore_model") + 1] == "/models/minilm"
    assert not any(part.startswith("--sagemaker_") for part in argv)


def test_the_script_runs_in_the_sagemaker_environment_the_dlc_sets_up(succeeded) -> None:
    backend, request = succeeded
    job_dir = backend.jobs[request["TrainingJobName"]].directory
    invocation = _invocation(backend, request)
    env = invocation["env"]

    assert Path(invocation["cwd"]) == job_dir / "code"
    assert env["SM_FRAMEWORK_MODULE"] == SAGEMAKER_TRAINING_MODULE
    assert env["SM_CURRENT_HOST"] == "algo-1" and json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert Path(env["SM_CHANNEL_TRAIN"]) == job_dir / "input" / "data" / "train"
    assert (Path(env["SM_CHANNEL_TEST"]) / "test.jsonl").is_file()
    assert Path(env["SM_MODEL_DIR"]) == job_dir / "model"
    assert Path(env["SM_OUTPUT_DATA_DIR"]) == job_dir / "output" / "data"
    assert env["SM_HP_APPROACH"] == "lora"
    assert json.loads(env["SM_CHANNELS"]) == ["test", "train"]
    assert env["SM_NUM_GPUS"] == "0"


def test_the_script_runs_the_dlcs_library_versions(succeeded) -> None:
    # Given the versions the job's script saw (the demo's training jobs run the same interpreter and packages)
    backend, request = succeeded
    invocation = _invocation(backend, request)
    seen = {canonicalize_name(name): version for name, version in invocation["versions"].items()}

    # Then it ran the tests' interpreter, and the DLC's resolved versions of every parity package
    assert invocation["python"] == backend.python
    assert parity.disagreements(seen, parity.dlc_resolved()) == {}


def test_a_completed_job_reports_the_catalog_metrics_from_its_log(succeeded) -> None:
    backend, request = succeeded
    described = backend.describe(request["TrainingJobName"])

    assert described["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert metrics == {"train_step": 3, "train_loss": 0.25, "eval_intent_accuracy": 0.75}
    assert backend.progress()[0][2:] == (3, 0.25)
    assert (backend.jobs[request["TrainingJobName"]].directory / "output" / "success").is_file()


def test_a_completed_job_reports_its_time_split_as_sagemaker_transitions(succeeded) -> None:
    # Given a job that ran through the toolkit and was uploaded
    backend, request = succeeded
    job = backend.jobs[request["TrainingJobName"]]
    # When it is described
    transitions = backend.describe(request["TrainingJobName"])["SecondaryStatusTransitions"]
    # Then its phases are SageMaker's: queued for the instance, the container, the model upload, then Completed
    statuses = [t["Status"] for t in transitions]
    assert [s for s in statuses if s != "Starting"] in (
        ["Training", "Uploading", "Completed"],
        ["Training", "Completed"],
    )
    assert all(t["StartTime"] <= t["EndTime"] for t in transitions)
    # And the split Status derives from them adds up to the job's wall time from its creation
    split = training_job.time_split(transitions)
    assert sum(split.values()) == pytest.approx((job.ended - job.created).total_seconds(), abs=2)
    assert split["training"] >= 0 and split["downloading"] == 0


def test_the_scripts_failure_file_becomes_the_failure_reason(account, tmp_path: Path) -> None:
    account({"train.py": FAKE_TRAIN_PY})
    backend, request = _run(tmp_path, "fail_with_reason")
    backend.wait_idle()

    described = backend.describe(request["TrainingJobName"])

    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: ValueError: approach must be full, lora or qlora"


def test_a_crash_without_a_failure_file_reports_the_toolkits_execute_user_script_error(account, tmp_path) -> None:
    account({"train.py": FAKE_TRAIN_PY})
    backend, request = _run(tmp_path, "crash")
    backend.wait_idle()

    reason = backend.describe(request["TrainingJobName"])["FailureReason"]

    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 3\n")
    assert "RuntimeError: the stand-in script crashed" in reason


def test_requirements_the_environment_lacks_fail_the_job_without_installing_anything(account, tmp_path) -> None:
    account({"train.py": FAKE_TRAIN_PY, "requirements.txt": "finetune-no-such-package==0.0.1\n"})
    backend, request = _run(tmp_path, "succeed")
    backend.wait_idle()

    described = backend.describe(request["TrainingJobName"])

    assert described["TrainingJobStatus"] == "Failed"
    assert "InstallRequirementsError" in described["FailureReason"]
    assert not (backend.jobs[request["TrainingJobName"]].directory / "output" / "data" / "invocation.json").exists()


def test_stop_kills_a_running_job_after_the_grace_period_without_signalling_it_and_cancels_a_queued_one(
    account, tmp_path
) -> None:
    account({"train.py": FAKE_TRAIN_PY})
    backend, request = _run(tmp_path, "wait_for_stop", stop_grace_seconds=1.0)
    name = request["TrainingJobName"]
    data_dir = backend.jobs[name].directory / "output" / "data"
    deadline = time.monotonic() + 60
    while not (data_dir / "invocation.json").exists():
        assert time.monotonic() < deadline, "the stand-in script never started"
        time.sleep(0.2)

    queued = _launch_request("queued")
    queued["HyperParameters"]["behaviour"] = json.dumps("succeed")
    backend.create(queued)  # waits for the one local instance

    backend.stop(name)
    backend.stop(queued["TrainingJobName"])
    assert backend.describe(name)["TrainingJobStatus"] == "Stopping"
    backend.wait_idle()

    assert backend.describe(name)["TrainingJobStatus"] == "Stopped"
    # On SageMaker the SIGTERM goes to the container's first process and never reaches the script.
    assert not (data_dir / "sigterm_received").exists()
    assert backend.describe(queued["TrainingJobName"])["TrainingJobStatus"] == "Stopped"
    assert not (backend.jobs[queued["TrainingJobName"]].directory / "output" / "data" / "invocation.json").exists()
