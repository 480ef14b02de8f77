"""CCNet: the tutorial's CNN, layer for layer, returning logits.

The tutorial ended with ReLU + Softmax before CrossEntropyLoss, which applies log-softmax
itself: softmax twice and a ReLU that zeroes negative logits, so gradients vanish.
`head="tutorial"` keeps that head so the fix can be shown side by side.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mnist.config import DEFAULTS, KNOBS, upgrade_config
from mnist.data import to_model_input
from mnist.errors import UserError


class CCNet(nn.Module):
    def __init__(self, dropout: float = DEFAULTS["dropout"], head: str = DEFAULTS["head"]) -> None:
        super().__init__()
        if head not in KNOBS["head"].rule.choices:
            raise ValueError(f"head must be {KNOBS['head'].rule.text}, got {head!r}")
        self.head = head
        # The tutorial's stack: 28x28 -> 14x14 -> 7x7 -> 4x4, 18 channels -> 288 features.
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.Conv2d(64, 32, kernel_size=3, padding=1),
            nn.Conv2d(32, 18, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(288, 10)
        # The tutorial initialises every conv and linear weight with Xavier-normal (biases left as PyTorch's).
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.features(x))
        logits = self.fc(torch.flatten(x, 1))
        if self.head == "tutorial":
            return torch.softmax(torch.relu(logits), dim=1)
        return logits


def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 2000, amp: bool = False) -> torch.Tensor:
    """Model outputs for uint8 images already on the model's device: eval mode, no gradients."""
    model.eval()
    outputs = []
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        for start in range(0, len(images), batch_size):
            outputs.append(model(to_model_input(images[start:start + batch_size])).float())
    return torch.cat(outputs)


class Ensemble(nn.Module):
    """CCNets trained alike from different seeds, answering the mean of their logits.

    hpo/best.py trains the winner with K seeds anyway (to measure its gain); averaging those K
    models reads people's digits better than any one of them (a point or more on the scans,
    where one seed's model differs from the next by as much) at K times a CCNet's inference.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def ensemble_weights(member_weights: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of an Ensemble of CCNets with these weights (keys members.<i>.<name>)."""
    return {f"members.{index}.{name}": value for index, weights in enumerate(member_weights)
            for name, value in weights.items()}


def model_from_checkpoint(state: dict[str, Any], device: torch.device) -> nn.Module:
    """The CCNet (or Ensemble of CCNets, when the checkpoint says `members`) a checkpoint holds, on `device`,
    in eval mode; UserError when the weights do not fit."""
    config = upgrade_config(state["config"])
    shape = {key: config[key] for key in ("dropout", "head") if key in config}  # else CCNet's own defaults
    members = [CCNet(**shape) for _ in range(state.get("members", 1))]
    model = members[0] if len(members) == 1 else Ensemble(members)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise UserError(f"checkpoint weights do not fit CCNet ({str(error).splitlines()[0]})") from None
    return model.to(device, memory_format=torch.channels_last).eval()
