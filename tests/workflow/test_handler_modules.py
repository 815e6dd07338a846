"""The offline account starts its handlers cold (fresh modules) and puts back the ones the process had before."""

from __future__ import annotations

from typing import Any

import pytest

from finetune.local.backends import ScriptedOutcome
from lambdas import records
from lambdas.handlers import record as record_handler
from tests.support.workflow import running_account


def test_a_handler_imported_before_an_account_ran_still_parses_its_records(workflow: Any) -> None:
    # Given a handler module this process imported, and an emulated account that ran (its cold start dropped the
    # handler modules from sys.modules, where typing.get_type_hints resolves a record's annotations)
    with running_account(workflow, lambda _request: ScriptedOutcome()):
        pass
    # When the old module's record parses an event, Then JobSpec resolves (before: NameError: name 'JobSpec' is
    # not defined) and a malformed event is refused by name
    with pytest.raises(records.InvalidRecord, match="RecordEvent"):
        records.parse(record_handler.RecordEvent, {"status": {"status": "Completed"}})
