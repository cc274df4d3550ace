"""The one place AutoTimm reads a Lightning internal that has no public counterpart.

Each function wraps a single private use, says why it is needed, and is covered by a test
(``tests/core/test_distributed.py``) that runs it on a real Lightning object, so that a change
in Lightning fails that test loudly instead of silently changing behaviour.
"""

from __future__ import annotations

import pytorch_lightning as pl


def uses_distributed_sampler(trainer: pl.Trainer) -> bool:
    """The ``Trainer(use_distributed_sampler=...)`` argument of ``trainer``.

    Lightning keeps it only on its private accelerator connector (no public property, as of
    2.6). The attribute is read strictly: if Lightning renames it, this raises (and the test
    fails) rather than ignoring a user's ``use_distributed_sampler=False``.
    """
    return bool(trainer._accelerator_connector.use_distributed_sampler)
