"""A tiny random-weight vision projector (mmproj GGUF) for gemma3-270m, written with ``gguf``.

No small vision model exists in the package registries, so the multimodal tests build one: a
one-block SigLIP-style encoder and llama.cpp's ``gemma3`` projector whose output dimension is
the text model's embedding size (640). llama.cpp's mtmd loads it beside gemma3-270m exactly as it
loads a real Gemma 3 mmproj; the answers are gibberish, but every byte of the image path runs:
decoding, resizing, the encoder graph, and the image embeddings in the prompt.

Tensor and key names follow llama.cpp ``tools/mtmd/clip-impl.h``; shapes are given the NumPy way
(reversed from ggml's ``ne``).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

TEXT_EMBEDDING = 640  # gemma3-270m's n_embd: the projector must output this size
IMAGE_SIZE = 32
PATCH_SIZE = 4
MERGE = 2  # average-pool kernel: (32/4 / 2)^2 = 16 image tokens per frame
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE // MERGE) ** 2
EMBED = 32
FFN = 64
HEADS = 2
BLOCKS = 1


def write_gemma3_mmproj(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("general.name", "heisenberg-test-mmproj")
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", EMBED)
    writer.add_uint32("clip.vision.feed_forward_length", FFN)
    writer.add_uint32("clip.vision.projection_dim", TEXT_EMBEDDING)
    writer.add_uint32("clip.vision.block_count", BLOCKS)
    writer.add_uint32("clip.vision.attention.head_count", HEADS)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_uint32("clip.vision.projector.scale_factor", MERGE)

    n_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    writer.add_tensor("v.patch_embd.weight", rand(EMBED, 3, PATCH_SIZE, PATCH_SIZE))
    writer.add_tensor("v.patch_embd.bias", rand(EMBED))
    writer.add_tensor("v.position_embd.weight", rand(n_patches, EMBED))
    for i in range(BLOCKS):
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{norm}.weight", np.ones(EMBED, np.float32))
            writer.add_tensor(f"v.blk.{i}.{norm}.bias", np.zeros(EMBED, np.float32))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"v.blk.{i}.{proj}.weight", rand(EMBED, EMBED))
            writer.add_tensor(f"v.blk.{i}.{proj}.bias", rand(EMBED))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", rand(FFN, EMBED))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", rand(FFN))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", rand(EMBED, FFN))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", rand(EMBED))
    writer.add_tensor("v.post_ln.weight", np.ones(EMBED, np.float32))
    writer.add_tensor("v.post_ln.bias", np.zeros(EMBED, np.float32))
    writer.add_tensor("mm.soft_emb_norm.weight", np.ones(EMBED, np.float32))
    writer.add_tensor("mm.input_projection.weight", rand(EMBED, TEXT_EMBEDDING))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
