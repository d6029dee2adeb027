import math

import pytest
import torch

from swe_rl.training.losses import get_loss


def test_dapo_loss_by_hand() -> None:
    # two trajectories, three positions; mask picks 2 + 1 tokens
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.8, 0.5, 0.1], [0.2, 0.9, 0.5]]))  # ratios 1.6, 1.0, 0.2 / 0.4, 1.8, 1.0
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, stats = get_loss("dapo")(new, old, adv, mask, eps_low=0.2, eps_high=0.3)
    # token 1: A=+1, ratio 1.6 -> clipped at 1.3: -1.3 ; token 2: ratio 1.0: -1.0
    # token 3: A=-2, ratio 0.4 -> min(0.4*-2, 0.8*-2) = -1.6 -> loss +1.6
    assert loss.item() == pytest.approx((-1.3 - 1.0 + 1.6) / 3)
    assert stats["clip_frac_high"].item() == pytest.approx(1 / 3)
    assert stats["clip_frac_low"].item() == pytest.approx(1 / 3)
    assert stats["num_tokens"].item() == 3


def test_split_into_micro_batches_changes_nothing() -> None:
    torch.manual_seed(0)
    b, t = 6, 7
    logits = torch.randn(b, t, requires_grad=True)
    old = torch.randn(b, t).clamp(max=-0.1)
    adv = torch.randn(b)
    mask = (torch.rand(b, t) > 0.3).long()
    loss_fn = get_loss("dapo")

    full, _ = loss_fn(torch.nn.functional.logsigmoid(logits), old, adv, mask, eps_low=0.2, eps_high=0.28)
    (g_full,) = torch.autograd.grad(full, logits)

    total = int(mask.sum())
    parts = [
        loss_fn(torch.nn.functional.logsigmoid(logits[s]), old[s], adv[s], mask[s], eps_low=0.2, eps_high=0.28, total_tokens=total)[0]
        for s in (slice(0, 2), slice(2, 6))
    ]
    split = sum(parts)
    (g_split,) = torch.autograd.grad(split, logits)
    assert split.item() == pytest.approx(full.item(), abs=1e-6)
    assert torch.allclose(g_full, g_split, atol=1e-7)


def test_masked_tokens_get_no_gradient_and_grpo_is_sequence_mean() -> None:
    new = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]])).requires_grad_()
    old = new.detach().clone()
    adv = torch.tensor([1.0, 1.0])
    mask = torch.tensor([[1, 0], [1, 1]])
    loss, _ = get_loss("dapo")(new, old, adv, mask)
    loss.backward()
    assert new.grad[0, 1].item() == 0.0
    # ratio 1 everywhere: dapo = -(3 tokens)/3 = -1; grpo = mean(-1, -1) = -1; their gradients differ in weight
    assert loss.item() == pytest.approx(-1.0)
    grpo, _ = get_loss("grpo")(new.detach(), old, adv, mask)
    assert grpo.item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("ppo-kl")
    assert math.isfinite(loss.item())
