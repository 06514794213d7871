"""Build a tiny, randomly initialised CLIP model folder that sentence-transformers can load.

No CLIP weights exist offline, so tests (and the throughput benchmark) make their own: a
two-layer, 32-wide CLIP with a byte-level vocabulary and no BPE merges (every character is one
token), 32x32 images cut into 8x8 patches. It is saved with ``save_pretrained`` (model,
tokenizer and a PIL image processor, so torchvision is not needed) and loads through
``SentenceTransformer(folder)`` like any hub CLIP checkpoint. Weights are random but seeded,
so vectors are reproducible; they carry no meaning, which tests must design around.
"""

from __future__ import annotations

from pathlib import Path

#: Width of the shared text-image space of the tiny model.
TINY_CLIP_DIM = 16


def _byte_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and as a word end (``</w>``)."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    for symbol in symbols:
        vocab.setdefault(symbol + "</w>", len(vocab))
    return vocab


def build_tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random CLIP (model, tokenizer, image processor) to ``folder``."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(folder)
    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
        },
        projection_dim=TINY_CLIP_DIM,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
