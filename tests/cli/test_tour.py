"""`python -m finetune.tour`: the captured session of every command against the offline emulation still runs, each
command exiting as the transcript says."""

from __future__ import annotations

import io
import re

from finetune.cli import app
from finetune.tour import run_tour


def test_the_tour_runs_every_command_with_the_expected_exit_status(workflow) -> None:
    transcript = io.StringIO()

    status = run_tour(transcript, workflow)

    text = transcript.getvalue()
    assert status == 0, text
    shown = set(re.findall(r"^\$ finetune (\S+)", text, re.MULTILINE))
    assert shown == {command.name or command.callback.__name__ for command in app.registered_commands}
    assert "Traceback" not in text and "Exception" not in text
