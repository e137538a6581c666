"""AnoGAN (Schlegel et al. 2017) for windows of equipment signals, with f-AnoGAN's fast encoder scoring
(Schlegel et al. 2019).

Training sees normal windows only. For ``gan_steps`` optimiser steps a 1-D convolutional generator learns to
map z ~ N(0, I) to normal windows against a discriminator (the non-saturating GAN with optional label
smoothing and spectral norm, or WGAN-GP); then, for ``encoder_steps``, an encoder learns to invert the frozen
generator (izi_f: a window's reconstruction through G(E(x)) matches it and its discriminator features).

A window's anomaly score is ``(1 - lambda) * residual + lambda * discrimination``: the mean absolute
difference between the window and G(z), and between their discriminator features (feature matching). With
``scoring=latent_search`` z is found per window by ``search_steps`` Adam steps on that score (AnoGAN; every
window of a batch at once, each with its own z and Adam moments); with ``scoring=encoder`` z = E(x), one
forward pass.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from rl_runner.agents.common import gradient_step, make_adam
from rl_runner.checkpoint import Stateful
from rl_runner.choices import GANLoss, Scoring
from rl_runner.clock import Clock
from rl_runner.networks.conv1d import Discriminator, Encoder, Generator

SEARCH_SEED = 0  # the starting z of a latent search: fixed, so a window's score does not depend on the run's RNG


class AnoGAN:
    def __init__(
        self,
        *,
        lr: float,
        adam_betas: Sequence[float],
        latent_dim: int,
        loss: GANLoss,
        label_smoothing: float,
        spectral_norm: bool,
        gradient_penalty: float,
        generator_every: int,
        gan_steps: int,
        encoder_steps: int,
        encoder_feature_weight: float,
        scoring: Scoring,
        feature_weight: float,
        search_steps: int,
        search_lr: float,
        search_starts: int,
        score_batch: int,
        net: Mapping[str, Any],
        sample_shape: tuple[int, ...],
        device: torch.device,
        clock: Clock,
    ) -> None:
        window, channels = sample_shape
        width, depth = int(net.width), int(net.depth)
        self.device = device
        self.clock = clock
        self.latent_dim = int(latent_dim)
        self.loss = loss
        self.label_smoothing = float(label_smoothing)
        self.gradient_penalty = float(gradient_penalty)
        self.generator_every = int(generator_every)
        self.gan_steps = int(gan_steps)
        self.encoder_steps = int(encoder_steps)
        self.encoder_feature_weight = float(encoder_feature_weight)
        self.scoring = scoring
        self.feature_weight = float(feature_weight)
        self.search_steps = int(search_steps)
        self.search_lr = float(search_lr)
        self.search_starts = int(search_starts)
        self.score_batch = int(score_batch)
        self.generator = Generator(self.latent_dim, window, channels, width, depth).to(device)
        self.discriminator = Discriminator(window, channels, width, depth, bool(spectral_norm)).to(device)
        betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.generator_optimizer = make_adam(self.generator.parameters(), lr, device, betas=betas)
        self.discriminator_optimizer = make_adam(self.discriminator.parameters(), lr, device, betas=betas)
        self.generator_params = list(self.generator.parameters())
        self.discriminator_params = list(self.discriminator.parameters())
        self.encoder = None
        if self.encoder_steps > 0:
            self.encoder = Encoder(self.latent_dim, window, channels, width, depth).to(device)
            self.encoder_optimizer = make_adam(self.encoder.parameters(), lr, device, betas=betas)
            self.encoder_params = list(self.encoder.parameters())

    # ---------------------------------------------------------------- training
    @property
    def in_gan_phase(self) -> bool:
        return self.clock.step < self.gan_steps

    def update(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step: the discriminator (and every ``generator_every`` steps the generator) while the
        GAN trains, then the encoder against the frozen GAN."""
        self.train_mode(True)  # the phase decides which nets train
        if self.in_gan_phase:
            return self._gan_update(batch)
        return self._encoder_update(batch)

    def _gan_update(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(real), self.latent_dim, device=self.device)
        fake = self.generator(z)  # [B, window, channels]
        real_out, _ = self.discriminator(real)  # [B]
        fake_out, _ = self.discriminator(fake.detach())
        if self.loss is GANLoss.wgan_gp:
            discriminator_loss = fake_out.mean() - real_out.mean() + self.gradient_penalty * self._penalty(real, fake)
        else:
            real_target = torch.full_like(real_out, 1.0 - self.label_smoothing)
            discriminator_loss = F.binary_cross_entropy_with_logits(
                real_out, real_target
            ) + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
        gradient_step(self.discriminator_optimizer, self.discriminator_params, discriminator_loss)
        metrics = {
            "loss/discriminator": discriminator_loss.detach(),
            "gan/real_output": real_out.detach().mean(),
            "gan/fake_output": fake_out.detach().mean(),
        }
        if self.clock.step % self.generator_every == 0:
            fooled, _ = self.discriminator(fake)
            if self.loss is GANLoss.wgan_gp:
                generator_loss = -fooled.mean()
            else:  # non-saturating: maximise log D(G(z))
                generator_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
            gradient_step(self.generator_optimizer, self.generator_params, generator_loss)
            metrics["loss/generator"] = generator_loss.detach()
        return metrics

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP: (|grad D(x)| - 1)^2 at random points between real and generated windows."""
        mix = torch.rand(len(real), 1, 1, device=self.device)
        between = (mix * real + (1 - mix) * fake.detach()).requires_grad_(True)
        out, _ = self.discriminator(between)
        (grad,) = torch.autograd.grad(out.sum(), between, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    def _encoder_update(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """izi_f: G(E(x)) reconstructs x, and D's features of both agree; G and D stay fixed."""
        rebuilt = self.generator(self.encoder(real))
        _, real_features = self.discriminator(real)
        _, rebuilt_features = self.discriminator(rebuilt)
        residual = F.mse_loss(rebuilt, real)
        feature_residual = F.mse_loss(rebuilt_features, real_features.detach())
        loss = residual + self.encoder_feature_weight * feature_residual
        gradient_step(self.encoder_optimizer, self.encoder_params, loss)
        return {"loss/encoder": loss.detach(), "encoder/residual": residual.detach()}

    # ---------------------------------------------------------------- scoring
    def anomaly_scores(
        self, windows: torch.Tensor, z: torch.Tensor, window_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[N] ``(1 - lambda) * mean|x - G(z)| + lambda * mean|f(x) - f(G(z))|``; ``window_features`` = f(x) when
        already known."""
        generated = self.generator(z)
        if window_features is None:
            _, window_features = self.discriminator(windows)
        _, generated_features = self.discriminator(generated)
        residual = (windows - generated).abs().flatten(1).mean(dim=1)
        discrimination = (window_features - generated_features).abs().mean(dim=1)
        return (1 - self.feature_weight) * residual + self.feature_weight * discrimination

    def starting_latents(self, windows: torch.Tensor, window_features: torch.Tensor) -> torch.Tensor:
        """For each window, the best-scoring of the same ``search_starts`` random z (drawn from a fixed seed, so a
        window's score does not depend on the batch it is in): a periodic signal's latent landscape has a valley
        per phase, and descent from one random z often ends in the wrong one."""
        generator = torch.Generator().manual_seed(SEARCH_SEED)
        candidates = torch.randn(self.search_starts, 1, self.latent_dim, generator=generator).to(self.device)
        scores = torch.stack(
            [self.anomaly_scores(windows, z.expand(len(windows), -1), window_features) for z in candidates]
        )  # [S, N]
        return candidates[scores.argmin(dim=0), 0]  # [N, latent]

    def search_latents(
        self, windows: torch.Tensor, z: torch.Tensor | None = None, record: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """AnoGAN's latent search over a batch: ``search_steps`` Adam steps on each window's own z. Returns the
        final z, the final scores [N] and, with ``record``, the scores [N] before each step."""
        with torch.no_grad():
            _, window_features = self.discriminator(windows)
            if z is None:
                z = self.starting_latents(windows, window_features)
        z = z.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=self.search_lr)  # per-element moments: windows never interact
        history = []
        for _ in range(self.search_steps):
            scores = self.anomaly_scores(windows, z, window_features)
            if record:
                history.append(scores.detach())
            (z.grad,) = torch.autograd.grad(scores.sum(), z)  # the sum: each z gets only its own window's gradient
            optimizer.step()
        with torch.no_grad():
            scores = self.anomaly_scores(windows, z, window_features)
        return z.detach(), scores, history

    def scoring_in_use(self, scoring: Scoring | None = None) -> Scoring:
        """``scoring`` (the configured one by default), except that before the encoder phase, when the encoder
        has not learned anything, encoder scoring falls back to latent search."""
        scoring = scoring or self.scoring
        if scoring is Scoring.encoder and (self.encoder is None or self.in_gan_phase):
            return Scoring.latent_search
        return scoring

    def score_signature(self) -> str:
        """What the scale of a score depends on: a threshold saved with one signature is valid for another
        run's scores only if they match (rl-eval recomputes it otherwise)."""
        scoring = self.scoring_in_use()
        signature = f"{scoring.value}, feature_weight={self.feature_weight}"
        if scoring is Scoring.latent_search:
            signature += f", search_steps={self.search_steps}, search_lr={self.search_lr}, starts={self.search_starts}"
        return signature

    def score(self, samples: torch.Tensor, scoring: Scoring | None = None) -> torch.Tensor:
        """[N] anomaly scores with ``scoring_in_use(scoring)``, ``score_batch`` windows at a time (the nets must
        be in evaluation mode: ``train_mode(False)``)."""
        scoring = self.scoring_in_use(scoring)
        scores = []
        for chunk in samples.split(self.score_batch):
            if scoring is Scoring.encoder:
                with torch.no_grad():
                    scores.append(self.anomaly_scores(chunk, self.encoder(chunk)))
            else:
                scores.append(self.search_latents(chunk)[1])
        return torch.cat(scores) if scores else torch.zeros(0, device=self.device)

    @torch.no_grad()
    def evaluate(self, samples: torch.Tensor) -> dict[str, Any]:
        """A picture of normal windows beside generated ones (real in the top row)."""
        from rl_runner.detection import windows_figure

        shown = min(4, len(samples))
        z = torch.randn(shown, self.latent_dim, generator=torch.Generator().manual_seed(SEARCH_SEED))
        generated = self.generator(z.to(self.device))
        return {"images/real_vs_generated": windows_figure(samples[:shown].cpu().numpy(), generated.cpu().numpy())}

    # ---------------------------------------------------------------- state
    def state_groups(self) -> dict[str, Stateful]:
        groups: dict[str, Stateful] = {
            "generator": self.generator,
            "discriminator": self.discriminator,
            "generator_optimizer": self.generator_optimizer,
            "discriminator_optimizer": self.discriminator_optimizer,
        }
        if self.encoder is not None:
            groups.update(encoder=self.encoder, encoder_optimizer=self.encoder_optimizer)
        return groups

    def train_mode(self, training: bool) -> None:
        """Training mode for the nets that train in this phase; the frozen GAN of the encoder phase keeps its
        BatchNorm statistics."""
        self.generator.train(training and self.in_gan_phase)
        self.discriminator.train(training and self.in_gan_phase)
        if self.encoder is not None:
            self.encoder.train(training)
