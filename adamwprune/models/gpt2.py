"""GPT-2 in plain PyTorch (nanoGPT-shaped): presets, weight tying, GPT-2 init.

The model is the standard pre-LayerNorm decoder: token + learned position embeddings,
``n_layer`` blocks of causal self-attention and a 4x GELU MLP, a final LayerNorm and an
LM head that shares its weight with the token embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from adamwprune.data.encoding import GPT2_N_TOKEN_IDS
from adamwprune.data.tokens import padded_vocab_size
from adamwprune.errors import UserError

# GPT-2's BPE vocabulary (50257) padded up to a multiple of 64 (50304), which is faster on
# GPUs: the same rounding as a dataset's vocab_size. (adamwprune.data imports no torch.)
PADDED_GPT2_VOCAB = padded_vocab_size(GPT2_N_TOKEN_IDS)


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    vocab_size: int = PADDED_GPT2_VOCAB
    block_size: int = 1024
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in the original GPT-2

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if min(self.n_layer, self.n_head, self.n_embd, self.vocab_size, self.block_size) < 1:
            raise ValueError(f"GPTConfig sizes must be positive: {self}")


# name -> (n_layer, n_head, n_embd); the four OpenAI sizes plus a CPU-sized one.
PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),          # 124M
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),   # 774M
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),      # 1558M
    "gpt2-tiny": GPTConfig(n_layer=4, n_head=4, n_embd=128),       # ~0.8M + embeddings, for CPU runs
}


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True  # gets the scaled init
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying
        self.apply(self._init_weights)

    @classmethod
    def from_preset(cls, name: str, *, vocab_size: int = PADDED_GPT2_VOCAB, block_size: int = 1024,
                    dropout: float = 0.0, bias: bool = True) -> "GPT":
        """Build a freshly initialised model of a named size (see ``PRESETS``)."""
        if name not in PRESETS:
            raise UserError(f"unknown GPT-2 model {name!r}; choose one of: {', '.join(PRESETS)}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {dropout}")
        if block_size < 1 or vocab_size < 1:
            raise UserError(f"block_size and vocab_size must be positive, got {block_size} and {vocab_size}")
        return cls(replace(PRESETS[name], vocab_size=vocab_size, block_size=block_size,
                           dropout=dropout, bias=bias))

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init: N(0, 0.02) weights, zero biases, and residual projections scaled
        by 1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_projection", False):
                std /= math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for every position; with ``targets`` (B, T) also the mean
        cross-entropy over all positions (targets of -1 are ignored)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                               ignore_index=-1)
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (tied weights counted once). ``non_embedding`` leaves out the
        position embeddings only: the token embedding is also the LM head, whose matmul
        is real compute (the nanoGPT convention)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token, for MFU:

            6 * N  +  12 * L * H * Q * T

        N = ``num_params(non_embedding=True)`` (each weight: 2 FLOPs forward, 4 backward),
        L layers, H heads, Q head size, T = ``seq_len`` (default block_size): the attention
        score and value matmuls, which have no parameters (PaLM paper, appendix B).
        """
        cfg = self.config
        T = seq_len or cfg.block_size
        return 6 * self.num_params(non_embedding=True) + 12 * cfg.n_layer * cfg.n_embd * T

    def configure_optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Two param groups: weight decay on every tensor with >= 2 dims (Linear weights and
        the embeddings, the token one being tied to the LM head), none on the 1-D ones
        (biases and LayerNorm gains/biases)."""
        params = [p for p in self.parameters() if p.requires_grad]  # tied weight appears once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def prunable_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """The Linear weights inside the transformer blocks (attention and MLP), which
        pruning and the sparsity metric act on. The tied embedding / LM head, position
        embeddings, biases and LayerNorms are left dense."""
        return [(f"{name}.weight", module.weight) for name, module in self.transformer.h.named_modules(
            prefix="transformer.h") if isinstance(module, nn.Linear)]
