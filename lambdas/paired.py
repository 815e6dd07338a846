"""Paired comparison of two jobs evaluated on the same test samples: the exact McNemar test and the sample size a
difference needs.

Two jobs scored on the same samples are not independent: most samples are right (or wrong) for both, and only the
samples where they disagree say which job is better. Comparing their separate Wilson intervals ignores that pairing
and needs differences of ~3 points at 500 samples; McNemar's test looks at the discordant pairs only:

* `b` samples the first job got right and the second wrong, `c` the reverse. Under "equally accurate" each
  discordant sample is a fair coin, so `min(b, c)` follows Binomial(b + c, 1/2); the two-sided exact p-value is
  `min(1, 2 P(X <= min(b, c)))` (McNemar 1947, in its exact binomial form: Agresti, *Categorical Data Analysis*,
  3rd ed., section 11.1). The tail is computed here with integers (`math.comb`): scipy is no dependency of the
  Lambda.
* The samples a difference would need (`paired_sample_size`) follow Connor (1987), "Sample size for testing
  differences in proportions for the paired-sample design", Biometrics 43(1):207-211:
  `n = (z_{1-alpha/2} sqrt(psi) + z_{1-beta} sqrt(psi - delta^2))^2 / delta^2`, with `delta` the difference in
  accuracy and `psi` the share of discordant samples.

Each job's per-sample answers come from its `predictions.jsonl` (training_code/evaluation.py writes it next to
metrics.json: one `{"index", "reference", "prediction", "correct"}` row per evaluated test sample, `index` being the
row's position in the test split), in the job's output data folder and in its model folder. Launch asks for
uncompressed model output (CompressionType NONE), so the model folder's files land under the prefix S3ModelArtifacts
names and the Report Lambda reads `<prefix>predictions.jsonl` alone; for a job whose model is a `model.tar.gz`
(GZIP, older runs), it reads the small `output.tar.gz` SageMaker writes next to it instead.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from lambdas import naming

LOG = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"  # SageMaker's archive of /opt/ml/output/data, next to model.tar.gz
# The usual test level and power of a sample-size statement ("80% power at the 5% level").
ALPHA = 0.05
POWER = 0.8
# Larger files are not a job's answers or output data: never read one whole into a Lambda's memory.
MAX_OUTPUT_ARCHIVE_BYTES = 64 * 2**20

Answers = dict[int, bool]
"""Whether each evaluated test sample (by its index in the test split) was answered right."""


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of two jobs' paired answers."""

    samples: int
    """Samples both jobs answered (the same indices)."""
    only_first: int
    """b: right for the first job, wrong for the second."""
    only_second: int
    """c: wrong for the first job, right for the second."""
    p_value: float

    @property
    def difference(self) -> float:
        """The first job's accuracy minus the second's, on these samples (a proportion)."""
        return (self.only_first - self.only_second) / self.samples if self.samples else 0.0

    @property
    def discordant_rate(self) -> float:
        """psi: the share of samples the two jobs disagree on."""
        return (self.only_first + self.only_second) / self.samples if self.samples else 0.0

    def significant(self, alpha: float = ALPHA) -> bool:
        """Whether the two accuracies differ at level `alpha` (two-sided)."""
        return self.p_value < alpha


def binomial_lower_tail(successes: int, trials: int) -> float:
    """P(X <= successes) for X ~ Binomial(trials, 1/2), exact (integer sums; no scipy)."""
    if trials < 0 or successes < 0:
        raise ValueError(f"need 0 <= successes and 0 <= trials, got {successes} of {trials}")
    if successes >= trials:
        return 1.0
    # Python divides big integers exactly before rounding once to a float (it underflows to 0.0 only below 1e-308).
    return sum(math.comb(trials, k) for k in range(successes + 1)) / 2**trials


def mcnemar_exact(first: Answers, second: Answers) -> McNemar:
    """The exact two-sided McNemar test of two jobs' answers on the same sample indices.

    Raises `ValueError` when the indices differ: answers to different samples are not pairs."""
    if first.keys() != second.keys():
        raise ValueError(f"the jobs answered different samples ({len(first)} and {len(second)} indices)")
    only_first = sum(1 for index, right in first.items() if right and not second[index])
    only_second = sum(1 for index, right in first.items() if not right and second[index])
    discordant = only_first + only_second
    p_value = min(1.0, 2 * binomial_lower_tail(min(only_first, only_second), discordant)) if discordant else 1.0
    return McNemar(samples=len(first), only_first=only_first, only_second=only_second, p_value=p_value)


def paired_sample_size(difference: float, discordant_rate: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Samples a paired test needs to detect `difference` in accuracy (Connor 1987; see the module docstring).

    `discordant_rate` (psi) is the share of samples two jobs disagree on; it must be at least |difference| (every
    sample that makes the difference is a discordant one). Rounded up."""
    delta = abs(difference)
    if delta == 0:
        raise ValueError("a zero difference needs infinitely many samples")
    if not delta <= discordant_rate <= 1:
        raise ValueError(f"the discordant rate {discordant_rate} must be in [|difference|={delta}, 1]")
    normal = NormalDist()
    z_alpha, z_beta = normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)
    root = z_alpha * math.sqrt(discordant_rate) + z_beta * math.sqrt(discordant_rate - delta * delta)
    return math.ceil(root * root / (delta * delta))


def answers_from_rows(rows: Iterable[Mapping[str, Any]]) -> Answers:
    """Per-sample correctness from predictions.jsonl rows (`index`, `correct`)."""
    answers: Answers = {}
    for row in rows:
        answers[int(row["index"])] = bool(row["correct"])
    return answers


def parse_predictions(text: str) -> Answers:
    """The answers of a predictions.jsonl file's text (blank lines skipped)."""
    return answers_from_rows(json.loads(line) for line in text.splitlines() if line.strip())


def output_archive_uri(artifact_uri: str | None) -> str | None:
    """The job's output.tar.gz, which SageMaker writes next to its model.tar.gz (None without an artifact)."""
    if not artifact_uri or not artifact_uri.endswith(f"/{MODEL_ARCHIVE}"):
        return None
    return artifact_uri[: -len(MODEL_ARCHIVE)] + OUTPUT_ARCHIVE


def predictions_uri(artifact_uri: str | None) -> str | None:
    """Where a job's answers are: predictions.jsonl under an uncompressed model's prefix (S3ModelArtifacts ends in
    `/`), else the output.tar.gz next to a model.tar.gz (None without an artifact)."""
    if artifact_uri and artifact_uri.endswith("/"):
        return artifact_uri + PREDICTIONS_FILE
    return output_archive_uri(artifact_uri)


def read_answers(s3: Any, artifact_uri: str | None) -> Answers | None:
    """A job's per-sample answers from S3 (`predictions_uri`); None (logged) when it has none or cannot be read.

    Never raises: a report without a paired test falls back to Wilson intervals, it does not fail."""
    uri = predictions_uri(artifact_uri)
    if uri is None:
        return None
    bucket, key = naming.split_s3_uri(uri)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        if int(obj.get("ContentLength") or 0) > MAX_OUTPUT_ARCHIVE_BYTES:
            LOG.warning("%s is larger than %d bytes: not read", uri, MAX_OUTPUT_ARCHIVE_BYTES)
            return None
        if key.endswith(PREDICTIONS_FILE):
            return parse_predictions(obj["Body"].read().decode("utf-8"))
        with tarfile.open(fileobj=io.BytesIO(obj["Body"].read()), mode="r:gz") as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("./") == PREDICTIONS_FILE), None)
            handle = archive.extractfile(member) if member is not None else None
            if handle is None:
                return None
            return parse_predictions(handle.read().decode("utf-8"))
    except Exception as exc:  # a missing archive (older jobs), a malformed file: the report goes on without it
        LOG.warning("no per-sample answers for %s: %s", uri, f"{type(exc).__name__}: {exc}"[:300])
        return None


def fetch_answers(
    rows: Iterable[Mapping[str, Any]], read: Callable[[str | None], Answers | None]
) -> dict[str, Answers]:
    """Per-sample answers by job name for the completed rows that have them (`read(artifact_uri)`)."""
    found: dict[str, Answers] = {}
    for row in rows:
        if row.get("status") != "Completed" or not row.get("job_name"):
            continue
        answers = read(row.get("artifact_uri"))
        if answers:
            found[str(row["job_name"])] = answers
    return found


def compare_with_best(best: Answers, other: Answers, alpha: float = ALPHA, power: float = POWER) -> dict[str, Any]:
    """The paired comparison of a job with the best one, as report fields: the test, whether they are tied
    (no significant difference), and how many samples the observed difference would need to be told apart."""
    test = mcnemar_exact(best, other)
    needed = None
    if test.difference != 0:
        needed = paired_sample_size(test.difference, test.discordant_rate, alpha, power)
    return {
        "test": "mcnemar_exact",
        "samples": test.samples,
        "best_only_right": test.only_first,
        "other_only_right": test.only_second,
        "p_value": round(test.p_value, 6),
        "tied": not test.significant(alpha),
        "difference_pts": round(test.difference * 100, 2),
        "samples_needed": needed,
    }
