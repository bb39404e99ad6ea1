"""perceiver_io: Perceiver IO (and family) in PyTorch.

Read (encode) -> process (latent self-attention) -> write (decode with output queries).
"""

from perceiver_io.checkpoints import from_pretrained
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.models import (
    PerceiverIO,
    PerceiverIOConfig,
    PerceiverIOOutput,
    PerceiverModel,
    QueryConfig,
    create_model,
    get_config,
    list_models,
    register_model,
)
from perceiver_io.queries import FourierQueries, InputQueries, LazyQueries, LearnedQueries, QueryBuilder
from perceiver_io.registry import PretrainedInfo, get_preset

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "EncoderConfig",
    "PerceiverEncoder",
    "DecoderConfig",
    "PerceiverDecoder",
    "PerceiverIO",
    "PerceiverIOConfig",
    "PerceiverIOOutput",
    "PerceiverModel",
    "QueryConfig",
    "QueryBuilder",
    "LearnedQueries",
    "FourierQueries",
    "InputQueries",
    "LazyQueries",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
    "get_preset",
    "PretrainedInfo",
    "from_pretrained",
]
