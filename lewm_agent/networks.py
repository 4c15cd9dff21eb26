"""The building blocks of LeWM: encoders, projector, action embedder, predictor.

Shapes follow the convention B = batch, T = time steps (frames), D = embedding,
A = flattened action block (frameskip * action_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class Projector(nn.Module):
    """MLP D_in -> H -> BatchNorm1d -> GELU -> D applied to the last dimension.

    The BatchNorm is what lets SIGReg shape the embedding distribution; the
    ViT's final LayerNorm alone fights the regulariser (paper, section 3).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        h = self.fc1(x.reshape(-1, x.shape[-1]))  # (N, H)
        h = F.gelu(self.norm(h))
        return self.fc2(h).reshape(*lead, -1)  # (..., D)


class Attention(nn.Module):
    """Multi-head self-attention on (B, T, width) with a separate head width."""

    def __init__(self, width: int, heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(width, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, width)
        self.dropout = dropout

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim)  # (B, T, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
        if t == 1:
            out = v  # softmax over one key is 1: skip the kernel (hot in planning)
        else:
            p = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        out = out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)  # (B, T, h*d)
        return self.proj(out)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


def mlp_stack(
    in_dim: int, hidden: int, layers: int, out_dim: int, norm: bool = False
) -> nn.Sequential:
    """``layers`` x (Linear -> [LayerNorm ->] GELU) of width ``hidden``, then Linear -> ``out_dim``.

    Torch's default init; the modules are numbered in that order (``0.weight``, ...), so
    the state-dict keys of the heads built with it (the policy head's ``net``, GCBC's
    ``head``) are what their saved weights hold.
    """
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules.append(nn.Linear(width, hidden))
        if norm:
            modules.append(nn.LayerNorm(hidden))
        modules.append(nn.GELU())
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class ViTBlock(nn.Module):
    """Pre-norm transformer block of the ViT encoder."""

    def __init__(self, width: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads, width // heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, 4 * width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """ViT (tiny by default) returning the CLS token: (B, 3, S, S) -> (B, width)."""

    def __init__(
        self, image_size: int, patch: int, width: int, depth: int, heads: int, eps: float = 1e-6
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        n_patches = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, width) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(width, heads, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=eps)
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, P, W)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, W)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, P+1, W)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # (B, W)


class CNNEncoder(nn.Module):
    """Stride-2 convolutions then a linear map of the flattened feature map.

    Flattening (rather than pooling) keeps where things are in the image, which
    is most of what the 2-D tasks need.
    """

    def __init__(self, image_size: int, channels: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = 3, image_size
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                nn.GroupNorm(max(1, c_out // 16), c_out),
                nn.GELU(),
            ]
            c_in, size = c_out, size // 2
        if size < 1:
            raise ValueError(f"{len(channels)} stride-2 convs shrink {image_size} px to nothing")
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * size * size, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1))  # (B, out_dim)


class ActionEmbedder(nn.Module):
    """Action block (B, T, A) -> Conv1d(kernel 1) -> MLP(SiLU) -> (B, T, D)."""

    def __init__(self, block_dim: int, embed_dim: int, mlp_ratio: int, smooth_dim: int = 0) -> None:
        super().__init__()
        smooth_dim = smooth_dim or block_dim
        self.smooth = nn.Conv1d(block_dim, smooth_dim, kernel_size=1)
        self.fc1 = nn.Linear(smooth_dim, mlp_ratio * embed_dim)
        self.fc2 = nn.Linear(mlp_ratio * embed_dim, embed_dim)

    def forward(self, a: Tensor) -> Tensor:
        a = self.smooth(a.transpose(1, 2)).transpose(1, 2)  # (B, T, S), S = smooth_dim
        return self.fc2(F.silu(self.fc1(a)))  # (B, T, D)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Transformer block whose norms are modulated by the action (AdaLN-zero).

    The modulation (shift, scale, gate for attention and MLP) is a linear map
    of the action embedding, zero-initialised so every block starts as the
    identity and actions enter the model gradually.

    `inner_norms` adds a learnable LayerNorm (epsilon `inner_eps`) between the
    modulation and attention, and between the modulation and the MLP: the layout
    of stable-worldmodel's predictor, whose checkpoints `import_reference` reads.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        head_dim: int,
        mlp: int,
        dropout: float,
        inner_norms: bool = False,
        inner_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(width, mlp, dropout)
        # Identity when off: the default model keeps its state-dict keys.
        self.attn_norm: nn.Module = (
            nn.LayerNorm(width, eps=inner_eps) if inner_norms else nn.Identity()
        )
        self.mlp_norm: nn.Module = (
            nn.LayerNorm(width, eps=inner_eps) if inner_norms else nn.Identity()
        )
        self.drop = nn.Dropout(dropout)
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def modulations(self, cond: Tensor) -> Tensor:
        """(B, T, D) action embeddings -> (B, T, 6, D) shift/scale/gate x2."""
        b, t, d = cond.shape
        return self.modulation(F.silu(cond)).view(b, t, 6, d)

    def forward(self, x: Tensor, mods: Tensor, causal: bool = True) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = mods.unbind(dim=2)  # each (B, T, D)
        h = self.attn_norm(modulate(self.norm1(x), shift1, scale1))  # (B, T, D)
        x = x + gate1 * self.drop(self.attn(h, causal))
        return x + gate2 * self.mlp(self.mlp_norm(modulate(self.norm2(x), shift2, scale2)))


class Predictor(nn.Module):
    """Causal transformer over the last `history` frame embeddings, action-modulated.

    Token i carries frame i's embedding and is modulated by the action block
    taken after frame i; its output predicts frame i+1's embedding.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.history = cfg.history
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.history, d) * 0.02)
        self.blocks = nn.ModuleList(
            AdaLNBlock(
                d,
                cfg.pred_heads,
                cfg.pred_head_dim,
                cfg.pred_mlp,
                cfg.pred_dropout,
                cfg.pred_block_norms,
                cfg.pred_norm_eps,
            )
            for _ in range(cfg.pred_depth)
        )
        self.norm = nn.LayerNorm(d, eps=cfg.pred_norm_eps)

    def modulations(self, cond: Tensor) -> list[Tensor]:
        """Per-block modulations of (B, T, D) action embeddings: list of (B, T, 6, D).

        Computed once per rollout: every window that reuses an action block
        reuses its modulation.
        """
        return [block.modulations(cond) for block in self.blocks]

    def forward_tokens(self, z: Tensor, mods: list[Tensor]) -> Tensor:
        """z (B, T, D) with T <= history and matching modulations -> (B, T, D)."""
        t = z.shape[1]
        if t > self.history:
            raise ValueError(f"predictor sees at most {self.history} frames, got {t}")
        x = z + self.pos_embed[:, :t]
        for block, m in zip(self.blocks, mods, strict=True):
            x = block(x, m, causal=True)
        return self.norm(x)

    def forward(self, z: Tensor, cond: Tensor) -> Tensor:
        """z (B, T, D) frame embeddings, cond (B, T, D) action embeddings -> (B, T, D)."""
        return self.forward_tokens(z, self.modulations(cond))


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """The image encoder named by `cfg.encoder`, outputting (B, D_enc)."""
    if cfg.encoder == "vit":
        return ViTEncoder(
            cfg.image_size,
            cfg.vit_patch,
            cfg.vit_width,
            cfg.vit_depth,
            cfg.vit_heads,
            cfg.vit_norm_eps,
        )
    if cfg.encoder == "cnn":
        return CNNEncoder(cfg.image_size, cfg.cnn_channels, cfg.embed_dim)
    raise ValueError(f"unknown encoder {cfg.encoder!r}; choose 'vit' or 'cnn'")


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases; AdaLN modulations stay zero."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and not name.endswith("modulation"):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
