"""`edgeskin evaluate`: a trained run on its test split or on an external dataset."""

from edgeskin.evaluate.run import EvalResult, evaluate  # noqa: F401
