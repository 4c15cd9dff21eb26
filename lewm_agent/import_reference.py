"""Import an official LeWM checkpoint (stable-worldmodel / le-wm) as one of our folders.

The reference folder holds `weights.pt` (a torch state dict) and `config.json` (the
model's Hydra config: `_target_` entries naming stable-worldmodel's classes), the
layout of the released `lewm-{pusht,cube,tworooms,reacher}` repositories. The import
reads both without running any of their code and writes an ordinary checkpoint
folder (config.json + model.safetensors + stats.json) that `WorldModelAgent.load`
takes.

Safety: `weights.pt` is read with `torch.load(weights_only=True)`, which never
builds arbitrary objects, and it must be a flat dict of str -> Tensor. The config's
every `_target_` and every value must map onto a `ModelConfig`; anything else is
refused by name (`ReferenceImportError`), never dropped. All of it is checked in
memory, the model built and loaded, before anything is written; the folder is
written under a temporary name beside `out` and renamed at the end.

The mapping (reference -> ours) is in `docs/formats.md`. Where the reference
architecture differs from our `paper` preset the import sets the ModelConfig option
that reproduces it: ImageNet pixel scaling, the ViT's LayerNorm epsilon 1e-12
(Hugging Face's ViT), the predictor's learnable block norms and their epsilon 1e-5,
the action embedder's smoothing width. Its attention has no qkv bias: ours gets zeros.

The reference checkpoint carries no action normaliser (le-wm z-scores the dataset's
actions at training and evaluation time): the caller passes the mean and std, or
asks explicitly for the identity (mean 0, std 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    CheckpointError,
    agent_config,
    agent_sections,
    read_checkpoint,
    save_checkpoint,
)
from .config import PRESETS, ModelConfig, PlanConfig
from .data import ActionNormalizer
from .model import LeWM
from .validation import check_action_bounds

REFERENCE_WEIGHTS = "weights.pt"
REFERENCE_CONFIG = "config.json"
IMPORT_KEY = "imported_from"
"""config.json section of an imported folder: source format, file hashes, its config."""


class ReferenceImportError(CheckpointError):
    """An official checkpoint that cannot be imported as it is (the message names why)."""


# The `_target_`s of each section, as stable-worldmodel 0.1.1 and le-wm spell them.
MODEL_TARGETS = frozenset(
    {
        "stable_worldmodel.wm.lewm.LeWM",
        "stable_worldmodel.wm.lewm.lewm.LeWM",
        "stable_worldmodel.wm.LeWM",
        "jepa.JEPA",
    }
)
ENCODER_TARGETS = frozenset({"stable_pretraining.backbone.utils.vit_hf"})
PREDICTOR_TARGETS = frozenset(
    {"stable_worldmodel.wm.lewm.module.Predictor", "module.ARPredictor", "module.Predictor"}
)
EMBEDDER_TARGETS = frozenset({"stable_worldmodel.wm.lewm.module.Embedder", "module.Embedder"})
MLP_TARGETS = frozenset({"stable_worldmodel.wm.lewm.module.MLP", "module.MLP"})

# stable_pretraining's vit_hf sizes: (hidden, layers, heads); the MLP is 4 x hidden.
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
HF_VIT_EPS = 1e-12
"""Hugging Face ViTConfig's default layer_norm_eps."""
TORCH_LN_EPS = 1e-5
"""torch.nn.LayerNorm's default eps: the reference predictor's learnable norms."""

# Newer transformers name the ViT layers differently; both layouts are read, the new
# one renamed to the old (the released files use the old one).
_NEW_HF_VIT = [
    (r"^encoder\.layers\.(\d+)\.attention\.q_proj\.", r"encoder.encoder.layer.\1.attention.attention.query."),
    (r"^encoder\.layers\.(\d+)\.attention\.k_proj\.", r"encoder.encoder.layer.\1.attention.attention.key."),
    (r"^encoder\.layers\.(\d+)\.attention\.v_proj\.", r"encoder.encoder.layer.\1.attention.attention.value."),
    (r"^encoder\.layers\.(\d+)\.attention\.o_proj\.", r"encoder.encoder.layer.\1.attention.output.dense."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc1\.", r"encoder.encoder.layer.\1.intermediate.dense."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc2\.", r"encoder.encoder.layer.\1.output.dense."),
    (r"^encoder\.layers\.(\d+)\.layernorm_before\.", r"encoder.encoder.layer.\1.layernorm_before."),
    (r"^encoder\.layers\.(\d+)\.layernorm_after\.", r"encoder.encoder.layer.\1.layernorm_after."),
]  # fmt: skip


def _fail(message: str) -> ReferenceImportError:
    return ReferenceImportError(f"cannot import: {message}")


# --------------------------------------------------------------------- the config
@dataclass(frozen=True)
class ReferenceLayout:
    """What the reference config builds, in the terms the weights are checked against."""

    model: ModelConfig
    mask_token: bool
    """The ViT has a (forward-unused) mask token tensor, which the import drops."""
    attn_out: bool
    """The predictor's attention has an output projection (all but heads=1, dim_head=D)."""


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


class _Section:
    """One config section: its values read once each, leftovers refused by name."""

    def __init__(self, config: dict[str, Any], name: str, targets: frozenset[str]) -> None:
        value = config.get(name)
        if not isinstance(value, dict):
            raise _fail(f"{REFERENCE_CONFIG}: section {name!r} is missing or not an object")
        self.name, self.values, self.used = name, value, {"_target_", "_recursive_"}
        target = value.get("_target_")
        if target is not None and target not in targets:
            raise _fail(
                f"{REFERENCE_CONFIG}: unknown _target_ {target!r} in {name!r}; "
                f"importable: {sorted(targets)}"
            )

    def get(self, key: str, default: Any = None, kind: type = int) -> Any:
        self.used.add(key)
        value = self.values.get(key, default)
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise _fail(f"{REFERENCE_CONFIG}: {self.name}.{key} = {value!r} is not {_KINDS[kind]}")
        return value

    def require(self, key: str, value: Any, expected: Any, why: str) -> None:
        if value != expected:
            raise _fail(
                f"{REFERENCE_CONFIG}: {self.name}.{key} = {value!r} cannot be represented "
                f"({why}; expected {expected!r})"
            )

    def done(self) -> None:
        extra = sorted(set(self.values) - self.used)
        if extra:
            raise _fail(
                f"{REFERENCE_CONFIG}: {self.name} has values this import cannot represent: {extra}"
            )


def _mlp_section(config: dict[str, Any], name: str) -> tuple[int, int, int]:
    """(input, hidden, output) of a projector MLP, refusing what our Projector is not."""
    s = _Section(config, name, MLP_TARGETS)
    d_in, hidden = s.get("input_dim"), s.get("hidden_dim")
    d_out = d_in if s.values.get("output_dim") is None else s.get("output_dim")
    s.used.add("output_dim")
    norm = s.values.get("norm_fn")
    s.used.add("norm_fn")
    if not (isinstance(norm, dict) and norm.get("_target_") == "torch.nn.BatchNorm1d"):
        # Absent means the reference's default (LayerNorm): our projector is BatchNorm.
        raise _fail(
            f"{REFERENCE_CONFIG}: {name}.norm_fn = {norm!r} cannot be represented "
            "(our projector normalises with BatchNorm1d: torch.nn.BatchNorm1d only)"
        )
    extra = sorted(set(norm) - {"_target_", "_partial_"})
    if extra or norm.get("_partial_", True) is not True:
        raise _fail(f"{REFERENCE_CONFIG}: {name}.norm_fn has arguments {extra} we cannot set")
    act = s.values.get("act_fn")
    s.used.add("act_fn")
    if act is not None and not (isinstance(act, dict) and act.get("_target_") == "torch.nn.GELU"):
        raise _fail(f"{REFERENCE_CONFIG}: {name}.act_fn = {act!r} cannot be represented (GELU)")
    s.done()
    return d_in, hidden, d_out


def reference_layout(config: dict[str, Any], frameskip: int) -> ReferenceLayout:
    """The ModelConfig a reference config.json describes, or a ReferenceImportError.

    `frameskip`: environment steps per action block. The reference stores only the
    block size (action_encoder.input_dim = frameskip * action_dim), so the caller says
    how it splits (the released checkpoints: 5).
    """
    if not isinstance(frameskip, int) or isinstance(frameskip, bool) or frameskip < 1:
        raise _fail(f"frameskip must be a positive integer, got {frameskip!r}")
    if not isinstance(config, dict):
        raise _fail(f"{REFERENCE_CONFIG} must hold a JSON object")
    target = config.get("_target_")
    if target is not None and target not in MODEL_TARGETS:
        raise _fail(
            f"{REFERENCE_CONFIG}: unknown _target_ {target!r}; importable: {sorted(MODEL_TARGETS)}"
        )
    sections = {"encoder", "predictor", "action_encoder", "projector", "pred_proj"}
    known = sections | {"_target_", "_recursive_", "embed_dim", "history_size"}
    extra = sorted(set(config) - known)
    if extra:
        raise _fail(f"{REFERENCE_CONFIG}: values this import cannot represent: {extra}")

    enc = _Section(config, "encoder", ENCODER_TARGETS)
    size = enc.get("size", "tiny", str)  # vit_hf's defaults throughout
    if size not in VIT_SIZES:
        raise _fail(f"{REFERENCE_CONFIG}: encoder.size {size!r} is not one of {list(VIT_SIZES)}")
    width, depth, heads = VIT_SIZES[size]
    width = enc.get("hidden_size", width)
    depth = enc.get("num_hidden_layers", depth)
    heads = enc.get("num_attention_heads", heads)
    enc.require("intermediate_size", enc.get("intermediate_size", 4 * width), 4 * width, "MLP")
    patch, image = enc.get("patch_size", 16), enc.get("image_size", 224)
    enc.get("pretrained", False, bool)  # only the initial weights: weights.pt replaces them
    mask_token = enc.get("use_mask_token", True, bool)
    eps = float(enc.get("layer_norm_eps", HF_VIT_EPS, float))
    enc.require("hidden_act", enc.get("hidden_act", "gelu", str), "gelu", "exact GELU")
    enc.require("qkv_bias", enc.get("qkv_bias", True, bool), True, "ViT qkv has a bias")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        enc.require(key, enc.get(key, 0.0, float), 0.0, "our ViT has no dropout")
    enc.done()

    proj_in, proj_hidden, embed = _mlp_section(config, "projector")
    pp_in, pp_hidden, pp_out = _mlp_section(config, "pred_proj")
    if proj_in != width:
        raise _fail(f"{REFERENCE_CONFIG}: projector.input_dim {proj_in} != the ViT width {width}")
    if (pp_in, pp_out) != (embed, embed):
        raise _fail(
            f"{REFERENCE_CONFIG}: pred_proj maps {pp_in} -> {pp_out}, "
            f"expected the embedding size {embed} -> {embed}"
        )
    if pp_hidden != proj_hidden:
        raise _fail(
            f"{REFERENCE_CONFIG}: pred_proj.hidden_dim {pp_hidden} != projector.hidden_dim "
            f"{proj_hidden} (our two projectors share one width, projector_hidden)"
        )

    act = _Section(config, "action_encoder", EMBEDDER_TARGETS)
    block = act.get("input_dim", 10)
    smooth = act.get("smoothed_dim", 10)
    act.require("emb_dim", act.get("emb_dim", 10), embed, "the embedding size")
    ratio = act.get("mlp_scale", 4)
    act.done()
    if block % frameskip:
        raise _fail(
            f"{REFERENCE_CONFIG}: action_encoder.input_dim {block} is not a multiple of "
            f"frameskip {frameskip}; pass the frameskip the model was trained with"
        )

    pred = _Section(config, "predictor", PREDICTOR_TARGETS)
    history = pred.get("num_frames")
    pred.require("input_dim", pred.get("input_dim"), embed, "the embedding size")
    pred.require("hidden_dim", pred.get("hidden_dim"), embed, "no input/output projection")
    pred.used.add("output_dim")
    if pred.values.get("output_dim") is not None:  # None: the input size
        pred.require("output_dim", pred.get("output_dim"), embed, "no output projection")
    p_depth, p_heads, p_mlp = pred.get("depth"), pred.get("heads"), pred.get("mlp_dim")
    head_dim = pred.get("dim_head", 64)
    dropout = float(pred.get("dropout", 0.0, float))
    pred.require("emb_dropout", pred.get("emb_dropout", 0.0, float), 0.0, "no input dropout")
    pred.done()

    for key in ("embed_dim", "history_size"):
        if key in config:
            value, expected = config[key], embed if key == "embed_dim" else history
            if value != expected:
                raise _fail(f"{REFERENCE_CONFIG}: {key} = {value!r} disagrees with {expected}")

    try:
        model = ModelConfig(
            image_size=image,
            encoder="vit",
            embed_dim=embed,
            vit_patch=patch,
            vit_depth=depth,
            vit_width=width,
            vit_heads=heads,
            vit_norm_eps=eps,
            pixel_norm="imagenet",
            projector_hidden=proj_hidden,
            action_dim=block // frameskip,
            frameskip=frameskip,
            action_mlp_ratio=ratio,
            action_smooth_dim=0 if smooth == block else smooth,
            history=history,
            pred_depth=p_depth,
            pred_heads=p_heads,
            pred_head_dim=head_dim,
            pred_mlp=p_mlp,
            pred_dropout=dropout,
            pred_block_norms=True,
            pred_norm_eps=TORCH_LN_EPS,
        )
    except ValueError as e:
        raise _fail(f"{REFERENCE_CONFIG}: {e}") from None
    if image % patch:
        raise _fail(f"{REFERENCE_CONFIG}: encoder.image_size {image} is not a multiple of {patch}")
    if width % heads:
        raise _fail(f"{REFERENCE_CONFIG}: the ViT width {width} is not a multiple of {heads} heads")
    attn_out = not (p_heads == 1 and head_dim == embed)
    return ReferenceLayout(model, mask_token, attn_out)


# -------------------------------------------------------------------- the weights
def reference_shapes(layout: ReferenceLayout) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor the reference model's state dict holds."""
    c = layout.model
    w, e, h = c.vit_width, c.embed_dim, c.projector_hidden
    patches = (c.image_size // c.vit_patch) ** 2
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.embeddings.cls_token": (1, 1, w),
        "encoder.embeddings.position_embeddings": (1, patches + 1, w),
        "encoder.embeddings.patch_embeddings.projection.weight": (w, 3, c.vit_patch, c.vit_patch),
        "encoder.embeddings.patch_embeddings.projection.bias": (w,),
        "encoder.layernorm.weight": (w,),
        "encoder.layernorm.bias": (w,),
    }
    if layout.mask_token:
        shapes["encoder.embeddings.mask_token"] = (1, 1, w)
    for i in range(c.vit_depth):
        p = f"encoder.encoder.layer.{i}."
        for name, (rows, cols) in {
            "attention.attention.query": (w, w),
            "attention.attention.key": (w, w),
            "attention.attention.value": (w, w),
            "attention.output.dense": (w, w),
            "intermediate.dense": (4 * w, w),
            "output.dense": (w, 4 * w),
        }.items():
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (rows, cols), (rows,)
        for norm in ("layernorm_before", "layernorm_after"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (w,)
    for prefix, d_in in (("projector", w), ("pred_proj", e)):
        shapes[f"{prefix}.net.0.weight"], shapes[f"{prefix}.net.0.bias"] = (h, d_in), (h,)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.net.1.{stat}"] = (h,)
        shapes[f"{prefix}.net.1.num_batches_tracked"] = ()
        shapes[f"{prefix}.net.3.weight"], shapes[f"{prefix}.net.3.bias"] = (e, h), (e,)
    block, smooth = c.action_block_dim, c.action_smooth_dim or c.action_block_dim
    r = c.action_mlp_ratio * e
    shapes.update(
        {
            "action_encoder.patch_embed.weight": (smooth, block, 1),
            "action_encoder.patch_embed.bias": (smooth,),
            "action_encoder.embed.0.weight": (r, smooth),
            "action_encoder.embed.0.bias": (r,),
            "action_encoder.embed.2.weight": (e, r),
            "action_encoder.embed.2.bias": (e,),
            "predictor.pos_embedding": (1, c.history, e),
            "predictor.transformer.norm.weight": (e,),
            "predictor.transformer.norm.bias": (e,),
        }
    )
    inner = c.pred_heads * c.pred_head_dim
    for i in range(c.pred_depth):
        p = f"predictor.transformer.layers.{i}."
        shapes[p + "attn.norm.weight"] = shapes[p + "attn.norm.bias"] = (e,)
        shapes[p + "attn.to_qkv.weight"] = (3 * inner, e)
        if layout.attn_out:
            shapes[p + "attn.to_out.0.weight"], shapes[p + "attn.to_out.0.bias"] = (e, inner), (e,)
        shapes[p + "mlp.net.0.weight"] = shapes[p + "mlp.net.0.bias"] = (e,)
        shapes[p + "mlp.net.1.weight"], shapes[p + "mlp.net.1.bias"] = (
            (c.pred_mlp, e),
            (c.pred_mlp,),
        )
        shapes[p + "mlp.net.4.weight"], shapes[p + "mlp.net.4.bias"] = (e, c.pred_mlp), (e,)
        shapes[p + "adaLN_modulation.1.weight"] = (6 * e, e)
        shapes[p + "adaLN_modulation.1.bias"] = (6 * e,)
    return shapes


def read_reference_weights(path: Path) -> dict[str, torch.Tensor]:
    """weights.pt as a flat dict of str -> Tensor, loaded without unpickling objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the refused global ("Unsupported global: GLOBAL module.Class").
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"an object of type {found.group(1)}" if found else "objects that are not tensors"
        raise _fail(
            f"{path} holds {what}, which would need unpickling arbitrary code; only a "
            "plain state dict of tensors is imported"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise _fail(
            f"{path} is not a readable torch state dict ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(state, dict):
        raise _fail(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str):
            raise _fail(f"{path}: entry {key!r} has a {type(key).__name__} name, not a string")
        if not isinstance(value, torch.Tensor):
            raise _fail(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor (only a "
                "flat state dict of tensors is imported)"
            )
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in _NEW_HF_VIT:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        renamed[key] = value
    return renamed


def check_reference_tensors(
    tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], where: Path
) -> None:
    """Every expected tensor present, nothing else, right shapes, finite floats."""
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise _fail(f"{where}: missing tensor {missing[0]!r}{more} (the config expects it)")
    extra = sorted(set(tensors) - set(shapes))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise _fail(f"{where}: unexpected tensor {extra[0]!r}{more} (not in the config's model)")
    for key, shape in shapes.items():
        t = tensors[key]
        if tuple(t.shape) != shape:
            raise _fail(
                f"{where}: tensor {key!r} has shape {list(t.shape)}, the config implies "
                f"{list(shape)}"
            )
        if key.endswith("num_batches_tracked"):
            continue
        if not t.is_floating_point():
            raise _fail(f"{where}: tensor {key!r} is {t.dtype}, expected floating point")
        if not torch.isfinite(t).all():
            raise _fail(f"{where}: tensor {key!r} holds NaN or infinite values")


def to_our_state_dict(
    tensors: dict[str, torch.Tensor], layout: ReferenceLayout
) -> dict[str, torch.Tensor]:
    """The reference state dict under our LeWM's names (float32), checked by shape already."""
    c = layout.model
    f = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    out: dict[str, torch.Tensor] = {
        "encoder.cls_token": f["encoder.embeddings.cls_token"],
        "encoder.pos_embed": f["encoder.embeddings.position_embeddings"],
        "encoder.patch_embed.weight": f["encoder.embeddings.patch_embeddings.projection.weight"],
        "encoder.patch_embed.bias": f["encoder.embeddings.patch_embeddings.projection.bias"],
        "encoder.norm.weight": f["encoder.layernorm.weight"],
        "encoder.norm.bias": f["encoder.layernorm.bias"],
    }
    for i in range(c.vit_depth):
        src, dst = f"encoder.encoder.layer.{i}.", f"encoder.blocks.{i}."
        for part in ("weight", "bias"):
            qkv = [f[f"{src}attention.attention.{n}.{part}"] for n in ("query", "key", "value")]
            out[f"{dst}attn.qkv.{part}"] = torch.cat(qkv, 0)  # (3W, W) / (3W,): q, k, v
            out[f"{dst}attn.proj.{part}"] = f[f"{src}attention.output.dense.{part}"]
            out[f"{dst}norm1.{part}"] = f[f"{src}layernorm_before.{part}"]
            out[f"{dst}norm2.{part}"] = f[f"{src}layernorm_after.{part}"]
            out[f"{dst}mlp.fc1.{part}"] = f[f"{src}intermediate.dense.{part}"]
            out[f"{dst}mlp.fc2.{part}"] = f[f"{src}output.dense.{part}"]
    for src, dst in (("projector", "enc_proj"), ("pred_proj", "pred_proj")):
        for part in ("weight", "bias"):
            out[f"{dst}.fc1.{part}"] = f[f"{src}.net.0.{part}"]
            out[f"{dst}.fc2.{part}"] = f[f"{src}.net.3.{part}"]
        for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"{dst}.norm.{stat}"] = f[f"{src}.net.1.{stat}"]
    for src, dst in (("patch_embed", "smooth"), ("embed.0", "fc1"), ("embed.2", "fc2")):
        for part in ("weight", "bias"):
            out[f"action_embed.{dst}.{part}"] = f[f"action_encoder.{src}.{part}"]
    out["predictor.pos_embed"] = f["predictor.pos_embedding"]
    out["predictor.norm.weight"] = f["predictor.transformer.norm.weight"]
    out["predictor.norm.bias"] = f["predictor.transformer.norm.bias"]
    e, inner = c.embed_dim, c.pred_heads * c.pred_head_dim
    for i in range(c.pred_depth):
        src, dst = f"predictor.transformer.layers.{i}.", f"predictor.blocks.{i}."
        qkv = f[f"{src}attn.to_qkv.weight"]  # (3*inner, D): q, k, v, heads-major as ours
        out[f"{dst}attn.qkv.weight"] = qkv
        out[f"{dst}attn.qkv.bias"] = qkv.new_zeros(3 * inner)  # the reference has no bias
        if layout.attn_out:
            out[f"{dst}attn.proj.weight"] = f[f"{src}attn.to_out.0.weight"]
            out[f"{dst}attn.proj.bias"] = f[f"{src}attn.to_out.0.bias"]
        else:  # one head as wide as the model: the reference skips the projection
            out[f"{dst}attn.proj.weight"] = torch.eye(e)
            out[f"{dst}attn.proj.bias"] = torch.zeros(e)
        for part in ("weight", "bias"):
            out[f"{dst}attn_norm.{part}"] = f[f"{src}attn.norm.{part}"]
            out[f"{dst}mlp_norm.{part}"] = f[f"{src}mlp.net.0.{part}"]
            out[f"{dst}mlp.fc1.{part}"] = f[f"{src}mlp.net.1.{part}"]
            out[f"{dst}mlp.fc2.{part}"] = f[f"{src}mlp.net.4.{part}"]
            out[f"{dst}modulation.{part}"] = f[f"{src}adaLN_modulation.1.{part}"]
    return out


# -------------------------------------------------------------------- the import
@dataclass
class ReferenceCheckpoint:
    """A reference folder read, checked and converted, nothing written yet."""

    folder: Path
    config: dict[str, Any]
    """Its config.json."""
    layout: ReferenceLayout
    model: LeWM
    """Our LeWM with its weights, in eval mode (CPU)."""
    sha256: dict[str, str]
    """SHA-256 of weights.pt and config.json."""


def read_reference(path: str | os.PathLike, frameskip: int = 5) -> ReferenceCheckpoint:
    """Read, check and convert a reference folder in memory (ReferenceImportError if not)."""
    folder = Path(path)
    if not folder.is_dir():
        raise _fail(f"{folder} is not a folder (expected one with {REFERENCE_WEIGHTS} and "
                    f"{REFERENCE_CONFIG}, as the released lewm-* repositories hold)")  # fmt: skip
    config_path, weights_path = folder / REFERENCE_CONFIG, folder / REFERENCE_WEIGHTS
    for p in (config_path, weights_path):
        if not p.is_file():
            raise _fail(f"{p} is missing; download the checkpoint's folder first")
    config_bytes = config_path.read_bytes()
    try:
        config = json.loads(config_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(f"{config_path} is not valid JSON ({e})") from None
    layout = reference_layout(config, frameskip)
    tensors = read_reference_weights(weights_path)
    check_reference_tensors(tensors, reference_shapes(layout), weights_path)
    tensors.pop("encoder.embeddings.mask_token", None)  # used only for masked pre-training
    model = LeWM(layout.model)
    model.load_state_dict(to_our_state_dict(tensors, layout), strict=True)
    sha = {
        REFERENCE_WEIGHTS: hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        REFERENCE_CONFIG: hashlib.sha256(config_bytes).hexdigest(),
    }
    return ReferenceCheckpoint(folder, config, layout, model.eval(), sha)


def import_reference(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    action_low: Any,
    action_high: Any,
    action_mean: Any = None,
    action_std: Any = None,
    identity_action_stats: bool = False,
    frameskip: int = 5,
    env_id: str | None = None,
    env_build: dict[str, Any] | None = None,
    plan: PlanConfig | None = None,
) -> Path:
    """Import reference folder `path` as our checkpoint folder `out`; returns `out`.

    Args:
        action_low, action_high: the env's action bounds (A,), for the planner's clipping.
        action_mean, action_std: the action normaliser (A,) the model was trained with
            (the z-score of the training data's actions); the reference checkpoint does
            not carry it. Or `identity_action_stats=True` for mean 0, std 1.
        frameskip: env steps per action block (action_encoder.input_dim / action_dim).
        env_id, env_build: recorded in config.json's env section (`lewm eval` uses them).
        plan: the planner settings (default: the `paper` preset's, LeWM's CEM).
    Raises ReferenceImportError (a CheckpointError) naming the problem, before `out`
    exists; `out` must be new or an empty folder.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise _fail(f"{target} exists and is not an empty folder: import to a new folder")
    ref = read_reference(path, frameskip)
    cfg = ref.layout.model
    try:
        low, high = check_action_bounds(action_low, action_high, cfg.action_dim, "action bounds")
    except ValueError as e:
        raise _fail(str(e)) from None
    if (action_mean is None) != (action_std is None):
        raise _fail("pass both the action mean and std, or neither")
    identity = action_mean is None
    if identity:
        if not identity_action_stats:
            raise _fail(
                "the reference checkpoint carries no action normaliser (le-wm z-scores "
                "actions with the training data's mean and std); pass them "
                '(--action-stats FILE with {"mean": [...], "std": [...]}, one entry per '
                "action dimension) or ask for mean 0, std 1 (--identity-action-stats)"
            )
        action_mean, action_std = np.zeros(cfg.action_dim), np.ones(cfg.action_dim)
    try:
        normalizer = ActionNormalizer(action_mean, action_std)
    except ValueError as e:
        raise _fail(f"action normaliser: {e}") from None
    if normalizer.action_dim != cfg.action_dim:
        raise _fail(
            f"action normaliser has {normalizer.action_dim} entries, the model's actions "
            f"{cfg.action_dim} (action_encoder.input_dim / frameskip {frameskip})"
        )
    config = agent_config(
        cfg,
        plan or PRESETS["paper"].plan,
        None,
        {"env_id": env_id, "build": env_build},
        low,
        high,
    )
    config[IMPORT_KEY] = {
        "format": "stable-worldmodel LeWM (weights.pt + config.json)",
        "sha256": ref.sha256,
        "identity_action_stats": identity,
        "config": ref.config,
    }
    stats = {"action_normalizer": normalizer.to_dict(), "training": None}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".import", dir=target.parent))
    try:
        save_checkpoint(tmp, ref.model, config, stats)
        agent_sections(read_checkpoint(tmp))  # what load will check, before the rename
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = [
    "ReferenceCheckpoint",
    "ReferenceImportError",
    "ReferenceLayout",
    "check_reference_tensors",
    "import_reference",
    "read_reference",
    "read_reference_weights",
    "reference_layout",
    "reference_shapes",
    "to_our_state_dict",
]
