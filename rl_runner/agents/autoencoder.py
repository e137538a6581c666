"""A window autoencoder: the smallest agent of the dataset runner, and a baseline anomaly detector.

Each window [window, channels] is flattened, encoded through ``net`` into a ``bottleneck`` code and decoded
by the mirror network; training minimises the mean squared reconstruction error on normal data, and a
window's anomaly score is its own reconstruction error. With ``net.depth=0`` it is a linear autoencoder
(the span of the top principal components). The learning rate follows ``lr_schedule`` over the run's
clock.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from rl_runner.agents.common import gradient_step, make_adam
from rl_runner.checkpoint import Stateful
from rl_runner.choices import LRSchedule
from rl_runner.clock import Clock, cosine_schedule, linear_schedule
from rl_runner.networks import build_mlp, resolve_net_spec

EVAL_BATCH = 4096  # windows per forward pass when scoring, to bound memory on long series


class WindowAutoencoder:
    def __init__(
        self,
        *,
        lr: float,
        lr_schedule: LRSchedule,
        weight_decay: float,
        bottleneck: int,
        net: Mapping[str, Any],
        sample_shape: tuple[int, ...],
        device: torch.device,
        clock: Clock,
    ) -> None:
        self.device = device
        self.clock = clock
        self.lr = float(lr)
        self.lr_schedule = lr_schedule
        features = math.prod(sample_shape)
        spec = resolve_net_spec(net)
        self.encoder = build_mlp(features, int(bottleneck), spec).to(device)
        self.decoder = build_mlp(int(bottleneck), features, spec).to(device)
        self.params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizer = make_adam(self.params, self.lr, device, weight_decay=float(weight_decay))

    def current_lr(self) -> float:
        fraction = self.clock.fraction
        if self.lr_schedule is LRSchedule.linear:
            return linear_schedule(self.lr, 0.0, fraction)
        if self.lr_schedule is LRSchedule.cosine:
            return cosine_schedule(self.lr, 0.0, fraction)
        return self.lr

    def _errors(self, samples: torch.Tensor) -> torch.Tensor:
        flat = samples.flatten(1)  # [B, window * channels]
        return (self.decoder(self.encoder(flat)) - flat).pow(2).mean(dim=1)  # [B]

    def update(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self._errors(batch).mean()
        gradient_step(self.optimizer, self.params, loss)
        return {"loss/reconstruction": loss.detach(), "charts/lr": torch.tensor(lr)}

    @torch.no_grad()
    def score(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._errors(chunk) for chunk in samples.split(EVAL_BATCH)])  # [N]

    def evaluate(self, samples: torch.Tensor) -> dict[str, float]:
        return {"eval/loss": float(self.score(samples).mean())}

    def state_groups(self) -> dict[str, Stateful]:
        return {"encoder": self.encoder, "decoder": self.decoder, "optimizer": self.optimizer}

    def train_mode(self, training: bool) -> None:
        self.encoder.train(training)
        self.decoder.train(training)
