"""Frozen configs built by the CLI, one module per stage. The named training recipes that build a
TrainConfig live in edgeskin.recipes, above this package (a recipe needs the config; no config
needs a recipe)."""

from edgeskin.config.benchmark import BenchmarkConfig
from edgeskin.config.common import DEVICES
from edgeskin.config.compress import PRUNE_MODES, CompressConfig
from edgeskin.config.ensemble import CHAIN_SETS, ChainConfig, EnsembleConfig
from edgeskin.config.evaluate import EvalConfig
from edgeskin.config.export import ExportConfig
from edgeskin.config.tune import PARAMS, PRUNERS, TuneConfig
from edgeskin.config.train import BALANCE_MODES, LOSSES, PretrainConfig, PriorConfig, TrainConfig

__all__ = ["BALANCE_MODES", "CHAIN_SETS", "DEVICES", "LOSSES", "PRUNE_MODES", "BenchmarkConfig", "ChainConfig",
           "CompressConfig", "EnsembleConfig", "EvalConfig", "ExportConfig", "PretrainConfig", "PriorConfig",
           "TrainConfig", "TuneConfig", "PARAMS", "PRUNERS"]
