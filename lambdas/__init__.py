"""The Lambda asset: thin handlers in `lambdas/handlers/`, pure logic (AWS clients passed in) beside them.

Where each step's code lives. One line per handler: what invokes it, its handler module, and the logic modules it
calls (a name in parentheses is a module of that package). tests/infra/test_module_map.py holds this map to the code.

- Plan (state Plan): handlers/plan.py -> plan, catalog, memory, estimate, calibration
- Launch (state Launch): handlers/launch.py -> training_job
- Status (state Status): handlers/status.py -> training_job
- Classify (state Classify): handlers/classify.py -> failures, training_job
- Remedy (state Remedy): handlers/remedy.py -> remedies, plan, cost
- Record (states Record, RecordFailure, RecordAttempt, RecordUnremedied): handlers/record.py -> ledger, cost,
  run_metrics, job_resources
- Report (state Report): handlers/report.py -> report (ranking, columns, markdown, charts), ledger, paired
- Cleanup (EventBridge: an execution failed, timed out or was aborted): handlers/cleanup.py -> cleanup, ledger
- Reconcile (EventBridge schedule): handlers/reconcile.py -> reconcile, cleanup, ledger
- QuotaRequests (FinetuneQuotas' custom resource): handlers/quota_requests.py -> quotas
- Observability (every handler's Powertools logger and tracer): handlers/observability.py

Shared by many: `settings` (environment variables, parsed at cold start), `aws` (clients, built once per container),
`errors` (typed errors: the class name is the Step Functions error name), `job_spec` (the Map item), `naming`.
"""
