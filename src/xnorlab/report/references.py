"""Published test errors to set beside ours. Each figure comes from its paper's own
architecture and training recipe (far longer training than our suite), so it is labelled as
such wherever it appears."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    paper: str  # short citation
    method: str  # our quant name the figure corresponds to
    dataset: str
    error_pct: float
    variant: str  # implementation / binarization variant the figure is for
    architecture: str  # our model name closest to the paper's network
    arch_note: str  # what the paper's network was


BNN_2016 = "BNN (Hubara, Courbariaux et al. 2016)"
BC_2015 = "BinaryConnect (Courbariaux et al. 2015)"
BNN_MLP = "the paper's own MLP (3 hidden layers of binary units, BatchNorm, long training)"
BNN_CNN = "the paper's own ConvNet (2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC)"
BC_MLP = "the paper's own MLP"

REFERENCES: tuple[Reference, ...] = (
    Reference(BNN_2016, "bnn", "mnist", 0.96, "Theano", "mlp", BNN_MLP),
    Reference(BNN_2016, "bnn", "mnist", 1.40, "Torch7", "mlp", BNN_MLP),
    Reference(BNN_2016, "bnn", "cifar10", 11.40, "Theano", "cnn", BNN_CNN),
    Reference(BNN_2016, "bnn", "cifar10", 10.15, "Torch7", "cnn", BNN_CNN),
    Reference(BC_2015, "bc_det", "mnist", 1.29, "deterministic", "mlp", BC_MLP),
    Reference(BC_2015, "bc_stoch", "mnist", 1.18, "stochastic", "mlp", BC_MLP),
)


def references_for(method: str, dataset: str, architecture: str) -> list[Reference]:
    """Published figures for our (method, dataset) row of that architecture, in paper order."""
    return [
        r for r in REFERENCES
        if r.method == method and r.dataset == dataset and r.architecture == architecture
    ]
