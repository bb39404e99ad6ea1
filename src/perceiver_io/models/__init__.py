"""Assembled models and their named presets (registered in :mod:`perceiver_io.registry`)."""

from perceiver_io.adapters.flow import OpticalFlowOutput
from perceiver_io.adapters.multimodal import MultimodalAutoencoderOutput
from perceiver_io.adapters.text import MaskedLanguageModelOutput
from perceiver_io.heads import ClassifierOutput, PerceiverIOOutput
from perceiver_io.models.base import PerceiverIOBase, PerceiverModel
from perceiver_io.models.classifier import ImageClassifier, ImageClassifierConfig, TextClassifier, TextClassifierConfig
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig
from perceiver_io.models.hip import HiP, HiPConfig, HiPOutput
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from perceiver_io.models.multimodal_classifier import MultimodalClassifier, MultimodalClassifierConfig
from perceiver_io.models.perceiver import Perceiver, PerceiverConfig
from perceiver_io.models.perceiver_ar import PerceiverAR, PerceiverARConfig, PerceiverAROutput
from perceiver_io.models.perceiver_io import PerceiverIO, PerceiverIOConfig, QueryConfig
from perceiver_io.registry import PretrainedInfo, create_model, get_config, get_preset, list_models, register_model

__all__ = [
    "PerceiverModel",
    "PerceiverIO",
    "PerceiverIOBase",
    "PerceiverIOConfig",
    "PerceiverIOOutput",
    "PretrainedInfo",
    "QueryConfig",
    "create_model",
    "get_config",
    "get_preset",
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
    "PerceiverAR",
    "PerceiverARConfig",
    "PerceiverAROutput",
    "OpticalFlow",
    "OpticalFlowConfig",
    "OpticalFlowOutput",
    "MultimodalAutoencoder",
    "MultimodalAutoencoderConfig",
    "MultimodalAutoencoderOutput",
    "MultimodalClassifier",
    "MultimodalClassifierConfig",
    "HiP",
    "HiPConfig",
    "HiPOutput",
]
