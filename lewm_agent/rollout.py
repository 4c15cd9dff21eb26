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
  computed, because only the newest token becomes a predicted frame;
- with `repeats=S` (a plan's S samples of each env), the context tokens that
  every sample shares (the observed frames before the last one, modulated by the
  action blocks already executed) are computed once per env instead of once per
  sample: by causality nothing a sample plans reaches them, so their keys and
  values in every layer are the same for all S samples (with `history` 3, 3 of
  the 15 windowed tokens of a 5-block rollout; none with `history` 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import autocast_context
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
                    # ModelConfig.pred_block_norms: learnable norms after the modulation.
                    "attn_norm": b.attn_norm if isinstance(b.attn_norm, nn.LayerNorm) else None,
                    "mlp_norm": b.mlp_norm if isinstance(b.mlp_norm, nn.LayerNorm) else None,
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
    def _norm_modulate(
        x: Tensor, shift: Tensor, scale_plus_one: Tensor, norm: nn.LayerNorm | None = None
    ) -> Tensor:
        """LayerNorm without affine, then x * (1 + scale) + shift [, then `norm`]; x (N, t, D)."""
        h = F.layer_norm(x, (x.shape[-1],), eps=1e-6)
        h = torch.addcmul(shift, h, scale_plus_one)
        if norm is None:
            return h
        return F.layer_norm(h, (h.shape[-1],), norm.weight, norm.bias, norm.eps)

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
    def bind(self, z_ctx: Tensor, past: Tensor | None, repeats: int) -> Callable[[Tensor], Tensor]:
        """`plans (G*repeats, H, A) -> (G*repeats, D)` from this context: one plan's cost calls."""
        return lambda plans: self(z_ctx, past, plans, repeats=repeats)

    @torch.inference_mode()
    def __call__(
        self, z_ctx: Tensor, past_actions: Tensor | None, plan: Tensor, repeats: int = 1
    ) -> Tensor:
        """z_ctx (G, h0, D), past_actions (G, h0-1, A) or None, plan (G*repeats, H, A) -> (G*repeats, D).

        Returns the embedding predicted after the last planned block. Plan rows
        g*repeats .. (g+1)*repeats-1 start from context row g (problem-major, as
        `repeat_interleave`); the context is computed once per row of `z_ctx`.
        """
        g = z_ctx.shape[0]
        if plan.shape[0] != g * repeats:
            raise ValueError(f"plan has {plan.shape[0]} rows for {g} contexts x {repeats} repeats")
        if repeats > 1 and z_ctx.shape[1] > 1 and past_actions is not None:
            return self._shared(z_ctx, past_actions, plan, repeats)
        if repeats > 1:  # one context frame: nothing is shared but the frame itself
            z_ctx = z_ctx.repeat_interleave(repeats, dim=0)  # (N, 1, D)
            if past_actions is not None:
                past_actions = past_actions.repeat_interleave(repeats, dim=0)
        return self._per_row(z_ctx, past_actions, plan)

    def _per_row(self, z_ctx: Tensor, past_actions: Tensor | None, plan: Tensor) -> Tensor:
        """Every row its own context: z_ctx (N, h0, D), plan (N, H, A) -> (N, D)."""
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
                h = self._norm_modulate(x, ml[:, :, 0], ml[:, :, 1], blk["attn_norm"])  # (N, t, D)
                att = self._attention(h, n, t, blk, last_only=last)
                if last:  # only the newest token is carried on
                    x, ml, tt = x[:, -1:], ml[:, -1:], 1  # (N, 1, D), (N, 1, 6, D)
                y = self._linear(att, blk["proj_w"], blk["proj_b"], "proj").view(n, tt, dim)
                x = torch.addcmul(x, ml[:, :, 2], y)  # x + gate1 * attn, (N, tt, D)
                h = self._norm_modulate(x, ml[:, :, 3], ml[:, :, 4], blk["mlp_norm"])  # (N, tt, D)
                u = self._linear(h.reshape(n * tt, dim), blk["fc1_w"], blk["fc1_b"], "fc1")
                u = torch.ops.aten.gelu_(u)  # in place: no fresh (rows, MLP) tensor
                y = self._linear(u, blk["fc2_w"], blk["fc2_b"], "fc2").view(n, tt, dim)
                x = torch.addcmul(x, ml[:, :, 5], y)  # x + gate2 * mlp
            x = x[:, -1]  # (N, D): the newest token
            emb[:, end] = model.pred_proj(self.final_norm(x))
        return emb[:, -1]

    def _block_rest(self, x: Tensor, att: Tensor, ml: Tensor, blk: dict, rows: int) -> Tensor:
        """Attention output projection, gated residual and modulated MLP of one block.

        x (rows, tt, D) tokens, att (rows*tt, inner), ml (rows, tt, 6, D) -> (rows, tt, D).
        """
        dim, tt = x.shape[-1], x.shape[1]
        y = self._linear(att, blk["proj_w"], blk["proj_b"], "proj").view(rows, tt, dim)
        x = torch.addcmul(x, ml[:, :, 2], y)  # x + gate1 * attn
        h = self._norm_modulate(x, ml[:, :, 3], ml[:, :, 4], blk["mlp_norm"])
        u = self._linear(h.reshape(rows * tt, dim), blk["fc1_w"], blk["fc1_b"], "fc1")
        u = torch.ops.aten.gelu_(u)
        y = self._linear(u, blk["fc2_w"], blk["fc2_b"], "fc2").view(rows, tt, dim)
        return torch.addcmul(x, ml[:, :, 5], y)  # x + gate2 * mlp

    def _shared(self, z_ctx: Tensor, past: Tensor, plan: Tensor, reps: int) -> Tensor:
        """`__call__` with h0 > 1 and `reps` samples per context row.

        Global token i < h0-1 (an observed frame with an executed block) is shared by
        the samples of its env and lives at (G, ...); token h0-1 (the last observed
        frame, modulated by the first PLANNED block) and every predicted token are
        per sample and live at (N, ...) = (G*reps, ...).
        """
        model = self.model
        g, h0, dim = z_ctx.shape
        n, horizon = plan.shape[0], plan.shape[1]
        hd, heads, inner = self.head_dim, self.heads, self.inner
        ns = h0 - 1  # shared tokens
        cond_s = F.silu(model.action_embed(past))  # (G, ns, D); kernel-1 conv: per token
        mods_s = torch.addmm(self.mod_b, cond_s.reshape(g * ns, dim), self.mod_w)
        mods_s = mods_s.view(g, ns, self.layers, 6, dim)  # (G, ns, layers, 6, D)
        cond_u = F.silu(model.action_embed(plan))  # (N, H, D)
        mods_u = torch.addmm(self.mod_b, cond_u.reshape(n * horizon, dim), self.mod_w)
        mods_u = mods_u.view(n, horizon, self.layers, 6, dim)  # (N, H, layers, 6, D)
        emb = z_ctx.new_empty(n, 1 + horizon, dim)  # (N, 1+H, D): last frame, predictions
        emb[:, 0] = z_ctx[:, -1].repeat_interleave(reps, dim=0)
        for k in range(horizon):
            end = h0 + k
            start = max(0, end - self.history)
            t = end - start
            s = max(0, ns - start)  # shared tokens in the window
            us, ue = max(start, ns) - ns, end - ns  # per-sample tokens, local indices
            u = ue - us
            xu = emb[:, us:ue] + self.pos[s:t]  # (N, u, D)
            mu = mods_u[:, us:ue]  # (N, u, layers, 6, D), a view
            if s == 0:
                xs = ms = None
            else:
                xs = z_ctx[:, start:ns] + self.pos[:s]  # (G, s, D)
                ms = mods_s[:, start:ns]  # (G, s, layers, 6, D)
            for li, blk in enumerate(self.blocks):
                last = li == self.layers - 1
                mlu = mu[:, :, li]  # (N, u, 6, D)
                hu = self._norm_modulate(xu, mlu[:, :, 0], mlu[:, :, 1], blk["attn_norm"])
                qkv = self._linear(hu.reshape(n * u, dim), blk["qkv_w"], blk["qkv_b"], "qkv")
                qkv = qkv.view(g, reps, u, 3, heads, hd)
                qu, ku, vu = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]  # (G, R, u, h, hd)
                if xs is not None:
                    mls = ms[:, :, li]  # (G, s, 6, D)
                    hs = self._norm_modulate(xs, mls[:, :, 0], mls[:, :, 1], blk["attn_norm"])
                    qkv_s = torch.addmm(blk["qkv_b"], hs.reshape(g * s, dim), blk["qkv_w"])
                    qkv_s = qkv_s.view(g, s, 3, heads, hd)
                    qs, ks, vs = qkv_s[:, :, 0], qkv_s[:, :, 1], qkv_s[:, :, 2]  # (G, s, h, hd)
                    ks_b, vs_b = ks.unsqueeze(1), vs.unsqueeze(1)  # (G, 1, s, h, hd)
                queries = [u - 1] if last else range(u)
                outs = []
                for j in queries:  # per-sample query j sees every shared key and keys <= j
                    q = qu[:, :, j : j + 1]  # (G, R, 1, h, hd)
                    scores = (q * ku[:, :, : j + 1]).sum(-1)  # (G, R, j+1, h)
                    if xs is not None:
                        scores = torch.cat([(q * ks_b).sum(-1), scores], dim=2)  # (G, R, s+j+1, h)
                    p = torch.softmax(scores, dim=2).unsqueeze(-1)  # (G, R, keys, h, 1)
                    o = (p[:, :, -(j + 1) :] * vu[:, :, : j + 1]).sum(2)  # (G, R, h, hd)
                    if xs is not None:
                        o = o + (p[:, :, :s] * vs_b).sum(2)
                    outs.append(o)
                att_u = torch.stack(outs, dim=2).reshape(-1, inner)  # (N*len(queries), inner)
                if last:  # only the newest token becomes a frame
                    xu, mlu = xu[:, -1:], mlu[:, -1:]
                xu = self._block_rest(xu, att_u, mlu, blk, n)  # (N, u or 1, D)
                if xs is not None and not last:  # shared tokens attend among themselves
                    att_s = xs.new_empty(g, s, heads, hd)
                    att_s[:, 0] = vs[:, 0]
                    for i in range(1, s):
                        sc = (qs[:, i : i + 1] * ks[:, : i + 1]).sum(-1)  # (G, i+1, h)
                        pr = torch.softmax(sc, dim=1).unsqueeze(-1)
                        att_s[:, i] = (pr * vs[:, : i + 1]).sum(1)
                    xs = self._block_rest(xs, att_s.view(g * s, inner), mls, blk, g)
            emb[:, 1 + k] = model.pred_proj(self.final_norm(xu[:, -1]))  # (N, D)
        return emb[:, -1]


class ReferenceRollout:
    """`LeWM.rollout` under the device's autocast; returns the final predicted embedding.

    The rollout for mixed precision (bf16 autocast on CUDA): LatentRollout's
    preallocated float32 matmuls would bypass autocast there.
    """

    def __init__(self, model: LeWM, device: torch.device) -> None:
        self.model, self.device = model, device

    def bind(self, z_ctx: Tensor, past: Tensor | None, repeats: int) -> Callable[[Tensor], Tensor]:
        """As `LatentRollout.bind`; the context is expanded once, for every cost call."""
        z_rep = z_ctx.repeat_interleave(repeats, dim=0)  # (G*S, h0, D)
        past_rep = past.repeat_interleave(repeats, dim=0) if past is not None else None
        return lambda plans: self(z_rep, past_rep, plans)

    def __call__(self, z_ctx: Tensor, past_actions: Tensor | None, plan: Tensor) -> Tensor:
        """z_ctx (N, h0, D), past_actions (N, h0-1, A) or None, plan (N, H, A) -> (N, D)."""
        with autocast_context(self.device):
            return self.model.rollout(z_ctx, past_actions, plan)[:, -1].float()


def make_rollout(model: LeWM, device: torch.device) -> LatentRollout | ReferenceRollout:
    """The rollout for the precision `model` computes in on `device`.

    LatentRollout (exact, fast) where the device computes in float32; the reference
    rollout where the device's autocast runs mixed precision. The model must not
    change weights afterwards (LatentRollout copies them).
    """
    with autocast_context(device):
        mixed_precision = torch.is_autocast_enabled(device.type)
    return ReferenceRollout(model, device) if mixed_precision else LatentRollout(model)
