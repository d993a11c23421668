"""What a run prints: its stages, one progress bar each (with an ETA), the table, and w2s's own
warnings. What the dependencies print besides (Lightning's hardware lines and tips,
transformers' load reports and progress bars, bitsandbytes' missing-kernel message,
deprecation warnings) is silenced unless ``--verbose``; a weight that a load newly initializes
when it should not is still reported, by :func:`report_new_weights`."""
from __future__ import annotations

import logging
import sys
import warnings
from typing import Sequence

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
_verbose = False


def configure(verbose: bool = False) -> None:
    """Silence the dependencies' chatter (``verbose``: leave everything as it is): warnings now;
    the libraries themselves when a command that runs them starts (:func:`quiet_libraries`),
    since importing them here would slow every command, ``--help`` too."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*(is deprecated|deprecated)")
    if {"transformers", "pytorch_lightning"} & set(sys.modules):  # already loaded (a notebook): now
        quiet_libraries()


def quiet_libraries() -> None:
    """Unless ``--verbose``: Lightning's hardware lines, tips and hints for small runs,
    transformers' load reports and progress bars ("Loading weights", "Writing model shards"; w2s
    reports an unexpected new weight itself), bitsandbytes' missing-kernel message. Called by
    the commands that train or evaluate, before they do."""
    if _verbose:
        return
    import pytorch_lightning  # noqa: F401  (sets its loggers' levels when imported: after that)
    from lightning_fabric.utilities.warnings import PossibleUserWarning
    from transformers.utils import logging as transformers_logging

    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # the CPU build lacks optional kernels
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=PossibleUserWarning)


def report_new_weights(name: str, info: dict, expected: Sequence[str]) -> None:
    """One warning line when loading ``name`` newly initialized weights other than those
    ``expected`` (prefixes: a new classification head, a dropped pooler)."""
    new = [k for k in info.get("missing_keys", []) if not k.startswith(tuple(expected))]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        print(f"w2s: warning: {name}: missing from the checkpoint, so random: {len(new)} weight(s): {shown}",
              file=sys.stderr, flush=True)
