"""Inference-only latent rollout: `LeWM.rollout` without the wasted arithmetic.

Planning spends nearly all its time here (the solver itself is thin), so this
path is written for the CPU's arithmetic units rather than for readability of
the module graph. It computes exactly what `LeWM.rollout` computes (a test
checks equality) but:

- the AdaLN modulations of all layers and all action blocks come from ONE
  matmul per rollout (the per-layer weights are concatenated once);
- linear layers write into preallocated buffers with `addmm(out=)`: on a CPU,
  allocating a fresh output costs more than the skinny matmul itself;
- the `1 +` of AdaLN's scales is folded into the modulation bias once, at
  construction;
- attention over the 1-3 tokens of the history window is done with a few
  broadcast ops instead of the fused kernel, which is overhead-bound at this
  size, and only for the (query, key) pairs the causal mask keeps: the first
  token sees only itself (its output is its value), the second two keys, ...;
  with one token attention is skipped (softmax over one key is 1, so only the
  value projection is computed);
- in the last block only the newest token's query, output and MLP are
  computed, because only the newest token becomes a predicted frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import LeWM


class _Buffers:
    """Scratch tensors reused across steps and iterations, reallocated only on a shape change."""

    def __init__(self) -> None:
        self._store: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buf = self._store.get(name)
        numel = 1
        for s in shape:
            numel *= s
        if (
            buf is None
            or buf.numel() < numel
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._store[name] = buf
        return buf[:numel].view(shape)


class LatentRollout:
    """Fast `rollout` of a LeWM in eval mode; returns the final predicted embedding.

    The weights are read from `model` at construction (transposed, concatenated);
    rebuild the object after changing the model's weights.
    """

    def __init__(self, model: LeWM) -> None:
        if model.training:
            raise ValueError("LatentRollout needs the model in eval mode (model.eval())")
        cfg = model.cfg
        self.model = model
        self.history = cfg.history
        self.d = cfg.embed_dim
        self.heads, self.head_dim = cfg.pred_heads, cfg.pred_head_dim
        self.inner = self.heads * self.head_dim
        pred = model.predictor
        self.pos = pred.pos_embed.detach()[0]  # (history, D)
        blocks = list(pred.blocks)
        self.layers = len(blocks)
        # All layers' modulation maps in one (D, L*6D) matrix: one matmul per rollout.
        self.mod_w = torch.cat([b.modulation.weight.detach() for b in blocks], 0).t().contiguous()
        mod_b = torch.cat([b.modulation.bias.detach() for b in blocks], 0)
        # AdaLN's scales (chunks 1 and 4 of each layer's 6) enter as (1 + scale):
        # adding the 1 to their bias here saves an indexed add over every rollout's mods.
        mod_b = mod_b.clone().view(len(blocks), 6, -1)
        mod_b[:, (1, 4)] += 1.0
        self.mod_b = mod_b.reshape(-1)
        self.blocks = []
        for b in blocks:
            # The attention scale 1/sqrt(head_dim) is folded into the query weights.
            qscale = torch.ones(3 * self.inner, 1, dtype=mod_b.dtype, device=mod_b.device)
            qscale[: self.inner] = self.head_dim**-0.5
            qkv_w = b.attn.qkv.weight.detach() * qscale  # (3*inner, D)
            qkv_b = b.attn.qkv.bias.detach() * qscale[:, 0]
            self.blocks.append(
                {
                    "qkv_w": qkv_w.t().contiguous(),  # (D, 3*inner)
                    "qkv_b": qkv_b,
                    "q_w": qkv_w[: self.inner].t().contiguous(),  # (D, inner)
                    "q_b": qkv_b[: self.inner],
                    "v_w": qkv_w[2 * self.inner :].t().contiguous(),  # (D, inner)
                    "v_b": qkv_b[2 * self.inner :],
                    "kv_w": qkv_w[self.inner :].t().contiguous(),  # (D, 2*inner)
                    "kv_b": qkv_b[self.inner :],
                    "proj_w": b.attn.proj.weight.detach().t().contiguous(),  # (inner, D)
                    "proj_b": b.attn.proj.bias.detach(),
                    "fc1_w": b.mlp.fc1.weight.detach().t().contiguous(),  # (D, M)
                    "fc1_b": b.mlp.fc1.bias.detach(),
                    "fc2_w": b.mlp.fc2.weight.detach().t().contiguous(),  # (M, D)
                    "fc2_b": b.mlp.fc2.bias.detach(),
                }
            )
        self.mlp = blocks[0].mlp.fc1.out_features if blocks else 0
        self.final_norm = pred.norm
        self.buf = _Buffers()

    # ------------------------------------------------------------------ helpers
    def _linear(self, x: Tensor, w: Tensor, b: Tensor, name: str) -> Tensor:
        out = self.buf.get(name, (x.shape[0], w.shape[1]), x)
        return torch.addmm(b, x, w, out=out)

    @staticmethod
    def _norm_modulate(x: Tensor, shift: Tensor, scale_plus_one: Tensor) -> Tensor:
        """LayerNorm without affine, then x * (1 + scale) + shift; x (N, t, D)."""
        h = F.layer_norm(x, (x.shape[-1],), eps=1e-6)
        return torch.addcmul(shift, h, scale_plus_one)

    def _attention(self, x: Tensor, n: int, t: int, blk: dict, last_only: bool) -> Tensor:
        """Causal attention of (n, t, D) modulated tokens -> (n*t, inner), or (n, inner)
        for the newest token only."""
        hd, h, d = self.head_dim, self.heads, self.inner
        if t == 1:  # one key: softmax is 1, the output is the value projection
            return self._linear(x.view(n, -1), blk["v_w"], blk["v_b"], "v")
        if last_only:
            kv = self._linear(x.view(n * t, -1), blk["kv_w"], blk["kv_b"], "kv")
            kv = kv.view(n, t, 2, h, hd)
            k, v = kv[:, :, 0], kv[:, :, 1]  # (n, t, h, hd)
            q = self._linear(x[:, -1], blk["q_w"], blk["q_b"], "q").view(n, 1, h, hd)
            scores = (q * k).sum(-1)  # (n, t, h): newest query sees every key
            p = torch.softmax(scores, dim=1)
            return (p.unsqueeze(-1) * v).sum(1).reshape(n, d)  # (n, inner)
        qkv = self._linear(x.view(n * t, -1), blk["qkv_w"], blk["qkv_b"], "qkv")
        qkv = qkv.view(n, t, 3, h, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (n, t, h, hd)
        out = self.buf.get("att", (n, t, h, hd), x)
        out[:, 0] = v[:, 0]  # the first token sees only itself
        for i in range(1, t):  # query i sees keys 0..i: no masked pair is computed
            scores = (q[:, i : i + 1] * k[:, : i + 1]).sum(-1)  # (n, i+1, h)
            p = torch.softmax(scores, dim=1)
            torch.sum(p.unsqueeze(-1) * v[:, : i + 1], dim=1, out=out[:, i])  # (n, h, hd)
        return out.view(n * t, d)

    # -------------------------------------------------------------------- call
    @torch.inference_mode()
    def __call__(self, z_ctx: Tensor, past_actions: Tensor | None, plan: Tensor) -> Tensor:
        """z_ctx (N, h0, D), past_actions (N, h0-1, A) or None, plan (N, H, A) -> (N, D).

        Returns the embedding predicted after the last planned block.
        """
        model = self.model
        n, h0, dim = z_ctx.shape
        horizon = plan.shape[1]
        if past_actions is None:
            past_actions = plan.new_zeros(n, 0, plan.shape[2])
        actions = torch.cat([past_actions, plan], dim=1)  # (N, L, A), L = h0-1+H
        length = actions.shape[1]
        cond = F.silu(model.action_embed(actions))  # (N, L, D)
        mods = torch.addmm(self.mod_b, cond.reshape(n * length, dim), self.mod_w)
        mods = mods.view(n, length, self.layers, 6, dim)  # (N, L, layers, 6, D)
        emb = z_ctx.new_empty(n, h0 + horizon, dim)  # (N, h0+H, D)
        emb[:, :h0] = z_ctx
        for k in range(horizon):
            end = h0 + k
            start = max(0, end - self.history)
            t = end - start
            # Tokens stay (N, t, D) and the modulations are broadcast views of `mods`:
            # flattening a slice of `mods` would copy it every layer and step.
            x = emb[:, start:end] + self.pos[:t]  # (N, t, D)
            m = mods[:, start:end]  # (N, t, layers, 6, D), a view
            tt = t
            for li, blk in enumerate(self.blocks):
                last = li == self.layers - 1 and t > 1
                ml = m[:, :, li]  # (N, t, 6, D), a view
                h = self._norm_modulate(x, ml[:, :, 0], ml[:, :, 1])  # (N, t, D)
                att = self._attention(h, n, t, blk, last_only=last)
                if last:  # only the newest token is carried on
                    x, ml, tt = x[:, -1:], ml[:, -1:], 1  # (N, 1, D), (N, 1, 6, D)
                y = self._linear(att, blk["proj_w"], blk["proj_b"], "proj").view(n, tt, dim)
                x = torch.addcmul(x, ml[:, :, 2], y)  # x + gate1 * attn, (N, tt, D)
                h = self._norm_modulate(x, ml[:, :, 3], ml[:, :, 4])  # (N, tt, D)
                u = self._linear(h.reshape(n * tt, dim), blk["fc1_w"], blk["fc1_b"], "fc1")
                u = torch.ops.aten.gelu_(u)  # in place: no fresh (rows, MLP) tensor
                y = self._linear(u, blk["fc2_w"], blk["fc2_b"], "fc2").view(n, tt, dim)
                x = torch.addcmul(x, ml[:, :, 5], y)  # x + gate2 * mlp
            x = x[:, -1]  # (N, D): the newest token
            emb[:, end] = model.pred_proj(self.final_norm(x))
        return emb[:, -1]
