"""`edgeskin train`: fit a backbone + head on a lesion-grouped split; checkpoint, resume, card."""

from edgeskin.train.loop import TrainResult, train  # noqa: F401
