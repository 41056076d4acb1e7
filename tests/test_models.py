"""GPT-2 model: shapes, init, tying, preset sizes, FLOPs estimate, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from adamwprune.errors import UserError
from adamwprune.models.gpt2 import GPT, PADDED_GPT2_VOCAB, PRESETS, GPTConfig


@pytest.fixture
def tiny() -> GPT:
    torch.manual_seed(0)
    return GPT.from_preset("gpt2-tiny", vocab_size=256, block_size=64)


def random_batch(batch: int, length: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(vocab, (batch, length), generator=g),
            torch.randint(vocab, (batch, length), generator=g))


def test_default_vocab_is_the_padded_gpt2_vocab_of_the_data_side():
    from adamwprune.data.tokens import padded_vocab_size

    assert PADDED_GPT2_VOCAB == padded_vocab_size(50257) == 50304 == GPTConfig().vocab_size


def test_forward_shapes_and_optional_loss(tiny):
    idx, targets = random_batch(3, 40, 256, seed=1)
    logits, loss = tiny(idx)
    assert logits.shape == (3, 40, 256) and loss is None
    logits, loss = tiny(idx, targets)
    assert logits.shape == (3, 40, 256) and loss.dim() == 0
    with pytest.raises(ValueError, match="block_size"):
        tiny(torch.zeros(1, 65, dtype=torch.long))


def test_loss_at_init_is_near_uniform(tiny):
    idx, targets = random_batch(8, 64, 256, seed=2)
    _, loss = tiny(idx, targets)
    assert abs(loss.item() - math.log(256)) < 0.1


def test_loss_is_mean_cross_entropy_ignoring_minus_one(tiny):
    idx, targets = random_batch(2, 16, 256, seed=3)
    targets[0, :5] = -1
    logits, loss = tiny(idx, targets)
    keep = targets != -1
    expected = -torch.log_softmax(logits, -1)[keep].gather(1, targets[keep][:, None]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_attention_is_causal(tiny):
    idx, _ = random_batch(1, 32, 256, seed=4)
    changed = idx.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    tiny.eval()
    a, _ = tiny(idx)
    b, _ = tiny(changed)
    assert torch.allclose(a[0, :20], b[0, :20], atol=1e-5)
    assert not torch.allclose(a[0, 20:], b[0, 20:], atol=1e-3)


def test_weight_tying_shares_storage_and_survives_a_step(tiny):
    wte, head = tiny.transformer.wte.weight, tiny.lm_head.weight
    assert head is wte and head.data_ptr() == wte.data_ptr()
    opt = torch.optim.SGD(tiny.parameters(), lr=0.1)
    idx, targets = random_batch(2, 16, 256, seed=5)
    tiny(idx, targets)[1].backward()
    opt.step()
    assert tiny.lm_head.weight.data_ptr() == tiny.transformer.wte.weight.data_ptr()


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT.from_preset("gpt2", vocab_size=512, block_size=32)  # 12 layers: scaled std 0.02/sqrt(24)
    block = model.transformer.h[0]
    assert abs(block.mlp.c_fc.weight.std().item() - 0.02) < 0.001
    for proj in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
        assert abs(proj.std().item() - 0.02 / math.sqrt(24)) < 0.0005
    assert torch.count_nonzero(block.mlp.c_fc.bias) == 0


def test_dropout_is_configurable(tiny):
    idx, _ = random_batch(2, 16, 256, seed=6)
    assert torch.equal(tiny(idx)[0], tiny(idx)[0])  # default dropout 0
    noisy = GPT.from_preset("gpt2-tiny", vocab_size=256, block_size=64, dropout=0.2)
    assert not torch.equal(noisy(idx)[0], noisy(idx)[0])
    noisy.eval()
    assert torch.equal(noisy(idx)[0], noisy(idx)[0])


def expected_param_count(n_layer: int, d: int, vocab: int, block: int) -> int:
    """Per block: attention 4d^2+4d, MLP 8d^2+5d, two LayerNorms 4d; plus embeddings and ln_f."""
    return n_layer * (12 * d * d + 13 * d) + vocab * d + block * d + 2 * d


@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt2-tiny"])
def test_preset_parameter_counts(name):
    with torch.device("meta"):
        model = GPT.from_preset(name, vocab_size=50257, block_size=1024)
    cfg = PRESETS[name]
    total = expected_param_count(cfg.n_layer, cfg.n_embd, 50257, 1024)
    assert model.num_params(non_embedding=False) == total
    assert model.num_params(non_embedding=True) == total - 1024 * cfg.n_embd
    assert model.transformer.wte.weight.is_meta


def test_gpt2_small_matches_the_published_size():
    with torch.device("meta"):
        model = GPT.from_preset("gpt2", vocab_size=50257, block_size=1024)
    assert model.num_params(non_embedding=False) == 124_439_808  # OpenAI GPT-2 small
    assert [(p.n_layer, p.n_head, p.n_embd) for p in PRESETS.values()] == [
        (12, 12, 768), (24, 16, 1024), (36, 20, 1280), (48, 25, 1600), (4, 4, 128)]


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UserError, match="gpt2-medium.*gpt2-tiny"):
        GPT.from_preset("gpt3")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_head=5, n_embd=128)


def test_flops_per_token_matches_counted_matmul_flops(tiny):
    """Count forward+backward FLOPs with the math attention kernel (whose matmuls the
    counter sees) and compare with 6N + 12*L*H*Q*T; the formula also counts the few
    bias/LayerNorm parameters as 6 FLOPs each, hence the small tolerance."""
    idx, targets = random_batch(2, 64, 256, seed=7)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        tiny(idx, targets)[1].backward()
    counted = counter.get_total_flops() / idx.numel()
    assert counted == pytest.approx(tiny.flops_per_token(), rel=0.015)
    assert tiny.flops_per_token(seq_len=32) < tiny.flops_per_token()


def test_optimizer_groups_cover_every_parameter_once(tiny):
    groups = tiny.configure_optimizer_groups(weight_decay=0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in tiny.parameters())
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert any(p is tiny.transformer.wte.weight for p in decay["params"])
    assert any(p is tiny.transformer.h[0].ln_1.weight for p in no_decay["params"])


def test_prunable_parameters_are_the_block_linear_weights(tiny):
    prunable = tiny.prunable_parameters()
    names = [name for name, _ in prunable]
    assert len(names) == 4 * 4
    assert names[:4] == ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
                         "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"]
    params = dict(tiny.named_parameters())
    assert all(params[name] is tensor and tensor.dim() == 2 for name, tensor in prunable)
    assert not any("wte" in n or "lm_head" in n or "wpe" in n for n in names)


def test_a_few_adamw_steps_fit_a_fixed_batch(tiny):
    idx, _ = random_batch(2, 32, 256, seed=8)
    targets = torch.roll(idx, -1, dims=1)
    opt = torch.optim.AdamW(tiny.configure_optimizer_groups(0.1), lr=1e-2)
    losses = []
    for _ in range(20):
        _, loss = tiny(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 2.0, losses
