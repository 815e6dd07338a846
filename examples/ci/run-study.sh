#!/usr/bin/env bash
# Run one study on the deployed stack with nothing but the AWS CLI and python3, and gate it on quality.
#
#   examples/ci/run-study.sh INPUT_JSON EXECUTION_NAME
#
# Starts an execution of the stack's state machine, polls it until it ends, fails unless it SUCCEEDED, downloads
# the run's report.json and report.md (their S3 URIs are the execution's output), appends report.md to the GitHub
# job summary when there is one, and applies examples/ci/quality_gate.py. Exit status: 0 passed, 1 the execution
# did not succeed or the gate failed, 2 bad usage.
#
# Environment (all optional):
#   STACK_NAME         the stack whose outputs name the state machine (Finetune)
#   STATE_MACHINE_ARN  skip the stack lookup
#   POLL_SECONDS       seconds between DescribeExecution calls (60)
#   MIN_ACCURACY       best completed job's intent accuracy must reach this (0.80)
#   MIN_PARSE_RATE     every completed job's parse rate must reach this (0.95)
#   OUT_DIR            where report.json, report.md and execution-arn go (report)
# The AWS CLI's own variables apply as usual (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL ...).
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 INPUT_JSON EXECUTION_NAME" >&2
  exit 2
fi
input=$1
name=$2
here=$(cd "$(dirname "$0")" && pwd)
out_dir=${OUT_DIR:-report}
poll=${POLL_SECONDS:-60}
mkdir -p "$out_dir"

if [ -z "${STATE_MACHINE_ARN:-}" ]; then
  STATE_MACHINE_ARN=$(aws cloudformation describe-stacks --stack-name "${STACK_NAME:-Finetune}" \
    --query "Stacks[0].Outputs[?OutputKey=='StateMachineArn'].OutputValue" --output text)
fi

execution_arn=$(aws stepfunctions start-execution --state-machine-arn "$STATE_MACHINE_ARN" --name "$name" \
  --input "file://$input" --query executionArn --output text)
# A cancelled CI job stops the execution with this (see github-actions.yml); the stack's Cleanup Lambda then stops
# its training jobs.
echo "$execution_arn" > "$out_dir/execution-arn"
region=$(echo "$execution_arn" | cut -d: -f4)
echo "started $execution_arn"
echo "console: https://$region.console.aws.amazon.com/states/home?region=$region#/v2/executions/details/$execution_arn"

while true; do
  status=$(aws stepfunctions describe-execution --execution-arn "$execution_arn" --query status --output text)
  [ "$status" != "RUNNING" ] && break
  sleep "$poll"
done

aws stepfunctions describe-execution --execution-arn "$execution_arn" > "$out_dir/execution.json"
if [ "$status" != "SUCCEEDED" ]; then
  echo "execution $status" >&2
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d.get("error", ""), d.get("cause", ""), file=sys.stderr)' \
    "$out_dir/execution.json"
  exit 1
fi

# The execution's output is the Report step's: {run_id, report_json_uri, report_md_uri, message}.
read -r json_uri md_uri < <(python3 -c 'import json, sys
out = json.loads(json.load(open(sys.argv[1]))["output"])
print(out["report_json_uri"], out["report_md_uri"])' "$out_dir/execution.json")
aws s3 cp --only-show-errors "$json_uri" "$out_dir/report.json"
aws s3 cp --only-show-errors "$md_uri" "$out_dir/report.md"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$out_dir/report.md" >> "$GITHUB_STEP_SUMMARY"
fi

python3 "$here/quality_gate.py" "$out_dir/report.json" \
  --min-accuracy "${MIN_ACCURACY:-0.80}" --min-parse-rate "${MIN_PARSE_RATE:-0.95}"
