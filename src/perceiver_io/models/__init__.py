"""Assembled models and their named presets."""

from perceiver_io.models.base import PerceiverModel
from perceiver_io.models.classifier import (
    ClassifierOutput,
    ImageClassifier,
    ImageClassifierConfig,
    TextClassifier,
    TextClassifierConfig,
)
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig, OpticalFlowOutput
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig, MaskedLanguageModelOutput
from perceiver_io.models.multimodal import (
    MultimodalAutoencoder,
    MultimodalAutoencoderConfig,
    MultimodalAutoencoderOutput,
)
from perceiver_io.models.perceiver import Perceiver, PerceiverConfig
from perceiver_io.models.perceiver_io import (
    PerceiverIO,
    PerceiverIOBase,
    PerceiverIOConfig,
    PerceiverIOOutput,
    QueryConfig,
)
from perceiver_io.models.registry import create_model, get_config, list_models, register_model

__all__ = [
    "PerceiverModel",
    "PerceiverIO",
    "PerceiverIOBase",
    "PerceiverIOConfig",
    "PerceiverIOOutput",
    "QueryConfig",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
    "ClassifierOutput",
    "ImageClassifier",
    "ImageClassifierConfig",
    "TextClassifier",
    "TextClassifierConfig",
    "MaskedLanguageModel",
    "MaskedLanguageModelConfig",
    "MaskedLanguageModelOutput",
    "Perceiver",
    "PerceiverConfig",
    "OpticalFlow",
    "OpticalFlowConfig",
    "OpticalFlowOutput",
    "MultimodalAutoencoder",
    "MultimodalAutoencoderConfig",
    "MultimodalAutoencoderOutput",
]
