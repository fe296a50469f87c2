"""Next-event heads: type, modality, time gap (log-normal mixture), embedding (given the type),
future states.

Shape legend: ``N`` rows (selected event states), ``d`` width, ``K`` mixture components,
``V`` type vocabulary, ``M`` modalities, ``d_m`` width of modality ``m``.

The gap head models ``y = log(gap + eps)`` as a Gaussian mixture, i.e. the gap as a log-normal
mixture; its NLL is reported in ``y`` space (scale-free), its point forecast is the mixture
median (best for absolute error), and it can be sampled at a temperature.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GAP_EPS = 1e-3  # seconds; keeps log(gap) finite for simultaneous events


class LogNormalMixture(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.k = k
        self.out = nn.Linear(d, 3 * k)

    def params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, mu, log_sigma = self.out(h).chunk(3, -1)  # [N, K] each
        return torch.log_softmax(logits, -1), mu, log_sigma.clamp(-5.0, 3.0)

    def nll(self, h: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """``[N]`` negative log-likelihood of ``log(gap + eps)``."""
        logw, mu, ls = self.params(h)
        y = torch.log(gap.clamp_min(0) + GAP_EPS).unsqueeze(-1)
        logp = -0.5 * ((y - mu) / ls.exp()) ** 2 - ls - 0.5 * math.log(2 * math.pi)
        return -torch.logsumexp(logw + logp, -1)

    def cdf_y(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logw, mu, ls = self.params(h)
        z = (y.unsqueeze(-1) - mu) / ls.exp()
        return (logw.exp() * 0.5 * (1 + torch.erf(z / math.sqrt(2)))).sum(-1)

    @torch.no_grad()
    def quantile(self, h: torch.Tensor, q: float = 0.5, iters: int = 40) -> torch.Tensor:
        """``[N]`` gap at quantile ``q`` (bisection on the mixture CDF)."""
        _, mu, ls = self.params(h)
        lo = (mu - 6 * ls.exp()).min(-1).values
        hi = (mu + 6 * ls.exp()).max(-1).values
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = self.cdf_y(h, mid) < q
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return (torch.exp((lo + hi) / 2) - GAP_EPS).clamp_min(0)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        logw, mu, ls = self.params(h)
        t = max(temperature, 1e-4)
        comp = torch.multinomial(torch.softmax(logw / t, -1).float().cpu(), 1, generator=generator).squeeze(-1).to(h.device)
        m = mu.gather(-1, comp[:, None]).squeeze(-1)
        s = ls.gather(-1, comp[:, None]).squeeze(-1).exp() * t
        eps = torch.randn(m.shape, generator=generator).to(h.device)
        return (torch.exp(m + s * eps) - GAP_EPS).clamp_min(0)


def _mlp(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, out))


class NextEventHeads(nn.Module):
    def __init__(self, d: int, num_types: int, modality_dims: dict[str, int], gap_mixture: int, future_steps: int):
        super().__init__()
        self.modalities = list(modality_dims)
        self.type_head = _mlp(d, num_types)
        self.modality_head = nn.Linear(d, max(1, len(self.modalities)))
        self.gap = LogNormalMixture(d, gap_mixture)
        self.embedding = nn.ModuleDict({"m_" + m.replace(".", "_"): _mlp(d, dim) for m, dim in modality_dims.items()})
        # the vector head is conditioned on the event's type: p(vector | history, type)
        self.type_cond = nn.Embedding(num_types, d)
        self.future = nn.ModuleList(_mlp(d, d) for _ in range(future_steps))

    def embedding_head(self, m: str) -> nn.Module:
        return self.embedding["m_" + m.replace(".", "_")]

    def predict_vector(self, m: str, h: torch.Tensor, type_ids: torch.Tensor) -> torch.Tensor:
        """``[N, d_m]`` vector of the next event of modality ``m`` given its type ids ``[N]``."""
        return self.embedding_head(m)(h + self.type_cond(type_ids))


__all__ = ["GAP_EPS", "LogNormalMixture", "NextEventHeads"]
