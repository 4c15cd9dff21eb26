"""LeWM: encoder + action-conditioned predictor, trained with MSE + SIGReg.

This module knows tensors only: no environments, no planning, no files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .networks import ActionEmbedder, Predictor, Projector, build_encoder, init_weights
from .sigreg import SIGReg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's channel statistics, for ModelConfig.pixel_norm "imagenet"."""


def scale_pixels(x: Tensor, pixel_norm: str = "symmetric") -> Tensor:
    """Float pixel values in [0, 255], channels first (..., 3, H, W) -> the encoder's input.

    "symmetric": [-1, 1]. "imagenet": x / 255 standardised by ImageNet's channel
    mean and std (what the official LeWM checkpoints were trained on).
    """
    if pixel_norm == "symmetric":
        return x / 127.5 - 1.0
    if pixel_norm == "imagenet":
        mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)  # (3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
        return (x / 255.0 - mean) / std
    raise ValueError(f"unknown pixel_norm {pixel_norm!r}; choose 'symmetric' or 'imagenet'")


def preprocess(pixels: Tensor, pixel_norm: str = "symmetric") -> Tensor:
    """uint8 images (..., H, W, 3) -> float (..., 3, H, W), scaled by `scale_pixels`."""
    if pixels.shape[-1] != 3:
        raise ValueError(
            f"expected channels-last RGB images (..., H, W, 3), got {tuple(pixels.shape)}"
        )
    x = pixels.movedim(-1, -3).float()  # (..., 3, H, W)
    return scale_pixels(x, pixel_norm)


class LeWM(nn.Module):
    """The LeWorldModel.

    - `encode`: frames -> one embedding per frame (encoder, then BN projector).
    - `predict`: embeddings + action blocks -> next embeddings (teacher forcing).
    - `rollout`: autoregressive prediction with a sliding `history` window.
    - `loss`: next-embedding MSE + lambda * SIGReg, no stop-gradient, no EMA.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.enc_proj = Projector(self.encoder.out_dim, cfg.projector_hidden, cfg.embed_dim)
        self.action_embed = ActionEmbedder(
            cfg.action_block_dim, cfg.embed_dim, cfg.action_mlp_ratio, cfg.action_smooth_dim
        )
        self.predictor = Predictor(cfg)
        self.pred_proj = Projector(cfg.embed_dim, cfg.projector_hidden, cfg.embed_dim)
        init_weights(self)

    # ------------------------------------------------------------------ encode
    def encode(self, pixels: Tensor) -> Tensor:
        """uint8 frames (..., H, W, 3) -> embeddings (..., D)."""
        size = self.cfg.image_size
        if pixels.dim() < 4 or tuple(pixels.shape[-3:]) != (size, size, 3):
            raise ValueError(
                f"expected frames of shape (..., {size}, {size}, 3), got {tuple(pixels.shape)}; "
                f"render the env at image_size={size}"
            )
        lead = pixels.shape[:-3]
        x = preprocess(pixels.reshape(-1, size, size, 3), self.cfg.pixel_norm)  # (N, 3, H, W)
        h = self.encoder(x)  # (N, W)
        z = self.enc_proj(h)  # (N, D)
        return z.reshape(*lead, -1)

    # ----------------------------------------------------------------- predict
    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        """Teacher-forced prediction: z (B, T, D), actions (B, T, A) -> (B, T, D).

        Output t is the predicted embedding of frame t+1.
        """
        cond = self.action_embed(actions)  # (B, T, D)
        h = self.predictor(z, cond)  # (B, T, D)
        return self.pred_proj(h)

    # ----------------------------------------------------------------- rollout
    def rollout(self, z_ctx: Tensor, past_actions: Tensor | None, plan: Tensor) -> Tensor:
        """Predict the embeddings after each planned action block.

        Args:
            z_ctx: (B, h0, D) embeddings of the last h0 observed frames (h0 >= 1).
            past_actions: (B, h0 - 1, A) action blocks taken between those frames,
                or None when h0 == 1.
            plan: (B, H, A) planned action blocks, the first applied to the last
                observed frame.
        Returns:
            (B, H, D): predicted embedding after each planned block.
        """
        b, h0, d = z_ctx.shape
        horizon = plan.shape[1]
        if past_actions is None:
            past_actions = plan.new_zeros(b, 0, plan.shape[2])
        if past_actions.shape[1] != h0 - 1:
            raise ValueError(
                f"past_actions must hold h0-1={h0 - 1} blocks, got {past_actions.shape[1]}"
            )
        actions = torch.cat([past_actions, plan], dim=1)  # (B, h0-1+H, A)
        # Action conditioning of every block, once per rollout (not once per window).
        mods = self.predictor.modulations(self.action_embed(actions))  # L x (B, h0-1+H, 6, D)
        emb = z_ctx.new_empty(b, h0 + horizon, d)  # preallocated trajectory buffer
        emb[:, :h0] = z_ctx
        window = self.predictor.history
        for k in range(horizon):
            end = h0 + k  # frames [0, end) are known
            start = max(0, end - window)
            h = self.predictor.forward_tokens(
                emb[:, start:end], [m[:, start:end] for m in mods]
            )  # (B, end-start, D)
            emb[:, end] = self.pred_proj(h[:, -1])  # only the last token is a new frame
        return emb[:, h0:]

    # -------------------------------------------------------------------- loss
    def loss(
        self,
        pixels: Tensor,
        actions: Tensor,
        sigreg: SIGReg,
        sigreg_weight: float,
        generator: torch.Generator | None = None,
        distributed: bool = False,
    ) -> dict[str, Tensor]:
        """LeWM's objective on windows of T = history + 1 frames.

        Args:
            pixels: uint8 (B, T, H, W, 3).
            actions: (B, T, A) normalised action blocks; block t follows frame t.
        Returns a dict with `loss`, `pred_loss`, `sigreg_loss` and the
        detached diagnostics `emb_std` (mean per-dimension std).
        """
        z = self.encode(pixels)  # (B, T, D)
        pred = self.predict(z[:, :-1], actions[:, :-1])  # (B, T-1, D)
        pred_loss = F.mse_loss(pred, z[:, 1:])
        sig = sigreg(
            z.transpose(0, 1), generator=generator, distributed=distributed
        )  # over (T, B, D)
        loss = pred_loss + sigreg_weight * sig
        with torch.no_grad():
            emb_std = z.reshape(-1, z.shape[-1]).float().std(dim=0).mean()
        return {
            "loss": loss,
            "pred_loss": pred_loss.detach(),
            "sigreg_loss": sig.detach(),
            "emb_std": emb_std,
        }

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by part, for `lewm info` and the reference-architecture test."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        parts = {
            "encoder": count(self.encoder),
            "encoder_projector": count(self.enc_proj),
            "action_embedder": count(self.action_embed),
            "predictor": count(self.predictor),
            "predictor_projector": count(self.pred_proj),
        }
        parts["total"] = sum(parts.values())
        return parts
