"""Fine-tuning the model from the shop's own data, as ``flask finetune`` commands.

``prepare.py`` writes the training examples (the bundled dataset and the saved conversations,
filtered, masked by ``masking.py``, de-duplicated, with an optional validation split);
``validate.py`` checks a training file as OpenAI does and estimates what training it costs.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from .cli import finetune_cli

    app.cli.add_command(finetune_cli)
