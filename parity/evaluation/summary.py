"""Both ports side by side at their sources' CIFAR-10 settings: parameters per component, FLOPs per
image of one training step, sequence length, LP tokens and decoder queries."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import notebook_port
import original_port
from original_port.configs import cifar10_model_spec

from .evaluate import gflop

# Which top-level modules make up each component, per port.
ORIGINAL_COMPONENTS = {"tokenizer": ["tokenizer"], "LP tokens": ["lps"], "encoder": ["mamba_encoder"],
                       "decoder": ["hyponet"]}
NOTEBOOK_COMPONENTS = {"tokenizer": ["patch_embed"], "LP tokens": ["lp_module"], "encoder": ["encoder"],
                       "decoder": ["modulation_net", "hyponet"]}


@dataclass
class PortSummary:
    name: str
    params: dict[str, int]
    sequence_length: int
    num_lp: int
    train_queries: int
    eval_queries: int
    forward_gflop: float = 0.0
    train_step_gflop: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(self.params.values())


def params_per_component(model: torch.nn.Module, components: dict[str, list[str]]) -> dict[str, int]:
    counts = {name: 0 for name in components}
    owner = {prefix: name for name, prefixes in components.items() for prefix in prefixes}
    for pname, p in model.named_parameters():
        top = pname.split(".")[0]
        if top not in owner:
            raise KeyError(f"parameter {pname} belongs to no component")
        counts[owner[top]] += p.numel()
    return counts


def original_summary(count_flops: bool = True) -> PortSummary:
    torch.manual_seed(0)
    model = original_port.from_spec(cifar10_model_spec())
    images = torch.rand(1, 3, 32, 32)
    s = PortSummary("original (trans-inr + LAINR)", params_per_component(model, ORIGINAL_COMPONENTS),
                    sequence_length=model.input_len + model.num_lp, num_lp=model.num_lp,
                    train_queries=32 * 32, eval_queries=32 * 32,
                    notes=["tokenizer.postfc is in the state dict but unused"])
    if count_flops:
        with torch.no_grad():
            s.forward_gflop = gflop(lambda: original_port.reconstruction_step(model, images), model)
        s.train_step_gflop = gflop(lambda: original_port.reconstruction_step(model, images)["loss"].backward(), model)
    return s


def notebook_summary(count_flops: bool = True) -> PortSummary:
    torch.manual_seed(0)
    model = notebook_port.MambaGINR_CIFAR(**notebook_port.NOTEBOOK_CIFAR_KWARGS)
    images = torch.rand(1, 3, 32, 32)
    idx = notebook_port.sample_pixel_indices(1, 32 * 32)
    s = PortSummary("notebook (simplified)", params_per_component(model, NOTEBOOK_COMPONENTS),
                    sequence_length=model.num_patches + model.lp_module.num_lp, num_lp=model.lp_module.num_lp,
                    train_queries=notebook_port.protocol.NUM_SAMPLE_COORDS, eval_queries=32 * 32,
                    notes=["buffers B and B_hypo (fixed Fourier matrices) are not parameters"])
    if count_flops:
        with torch.no_grad():
            s.forward_gflop = gflop(lambda: notebook_port.sampled_loss(model, images, idx), model)
        s.train_step_gflop = gflop(lambda: notebook_port.sampled_loss(model, images, idx)["loss"].backward(), model)
    return s


def summary_table(summaries: list[PortSummary]):
    from rich.table import Table

    table = Table(title="MAMBA-GINR ports at their sources' CIFAR-10 settings (32x32 images)")
    table.add_column("")
    for s in summaries:
        table.add_column(s.name, justify="right")
    for component in summaries[0].params:
        table.add_row(f"params: {component}", *[f"{s.params[component]:,}" for s in summaries])
    table.add_row("params: total", *[f"{s.total_params:,}" for s in summaries], end_section=True)
    table.add_row("GFLOP / image, forward", *[f"{s.forward_gflop:.2f}" for s in summaries])
    table.add_row("GFLOP / image, train step (fwd+bwd)", *[f"{s.train_step_gflop:.2f}" for s in summaries],
                  end_section=True)
    table.add_row("sequence length (patches + LPs)", *[str(s.sequence_length) for s in summaries])
    table.add_row("LP tokens", *[str(s.num_lp) for s in summaries])
    table.add_row("decoder queries / image, training", *[str(s.train_queries) for s in summaries])
    table.add_row("decoder queries / image, evaluation", *[str(s.eval_queries) for s in summaries])
    return table
