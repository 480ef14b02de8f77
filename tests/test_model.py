"""CCNet: the tutorial's layer stack, logits out (the tutorial's ReLU+Softmax head only on request)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mnist.model import CCNet


def test_seed_layer_stack_and_size() -> None:
    model = CCNet()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 32), (32, 64), (64, 64), (64, 32), (32, 18)]
    assert model.fc.in_features == 288 and model.fc.out_features == 10
    assert sum(p.numel() for p in model.parameters()) == 82_300  # 320 + 18,496 + 36,928 + 18,464 + 5,202 + 2,890


def test_xavier_normal_init() -> None:
    torch.manual_seed(0)
    conv = CCNet().features[3]  # 32 -> 64 channels, 3x3
    fan_in, fan_out = 32 * 9, 64 * 9
    expected_std = (2 / (fan_in + fan_out)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05


def test_default_head_returns_logits_not_probabilities() -> None:
    # The tutorial's ReLU + Softmax before CrossEntropyLoss applied softmax twice and killed negative logits.
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    model = CCNet(dropout=0.0).eval()
    logits = model(x)
    assert (logits < 0).any()
    assert not torch.allclose(logits.sum(dim=1), torch.ones(16))


def test_tutorial_head_reproduces_the_defect() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    fixed, tutorial = CCNet(dropout=0.0, head="logits"), CCNet(dropout=0.0, head="tutorial")
    tutorial.load_state_dict(fixed.state_dict())
    probabilities = tutorial(x)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(64), atol=1e-5)
    # CE over probabilities squashes the loss into a narrow range, so its gradient is far smaller
    # than the fixed head's for the same weights: the vanishing gradient of the tutorial's head.
    F.cross_entropy(fixed(x), y).backward()
    F.cross_entropy(tutorial(x), y).backward()
    fixed_grad = fixed.fc.weight.grad.norm().item()
    tutorial_grad = tutorial.fc.weight.grad.norm().item()
    assert tutorial_grad < fixed_grad / 3


def test_dropout_is_a_parameter() -> None:
    assert CCNet(dropout=0.2).dropout.p == 0.2


def test_old_configs_and_checkpoints_with_head_seed_still_read() -> None:
    from mnist.config import resolve_config
    from mnist.model import model_from_checkpoint

    assert resolve_config({"head": "seed"})["head"] == "tutorial"  # the name before the rename
    old = CCNet(dropout=0.0, head="tutorial")
    model = model_from_checkpoint({"model": old.state_dict(), "config": {"dropout": 0.0, "head": "seed"}},
                                  torch.device("cpu"))
    assert model.head == "tutorial"
