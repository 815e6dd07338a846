"""`python -m finetune`: the same CLI as the `finetune` console command."""

from finetune.cli import app

app(prog_name="finetune")
