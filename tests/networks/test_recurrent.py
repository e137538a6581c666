"""The recurrent core and Q-network (rl_runner/networks/recurrent.py): one call over a sequence equals stepping
with the state, padding changes nothing before it, and only recurrent cells remember."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rl_runner.choices import Activation, Init, Norm, RecurrentCell
from rl_runner.networks.recurrent import RecurrentCore, RecurrentQNetwork
from rl_runner.schemas import MLPConfig
from tests.agents.helpers import CELLS
from tests.buffers.helpers import CPU

STATE_SIZES = {RecurrentCell.lstm: 10, RecurrentCell.gru: 5, RecurrentCell.none: 0}


def make_core(cell: RecurrentCell) -> RecurrentCore:
    torch.manual_seed(0)
    return RecurrentCore(cell, 3, 5, nn.Tanh)


def make_qnet(cell: RecurrentCell, dueling: bool = True) -> RecurrentQNetwork:
    torch.manual_seed(0)
    spec = MLPConfig(name="mlp", hidden=7, depth=1, norm=Norm.none, init=Init.default, activation=Activation.relu)
    return RecurrentQNetwork(3, 4, spec, cell, 5, dueling)


def run_steps(module: nn.Module, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = []
    for t in range(x.shape[1]):
        out, state = module(x[:, t : t + 1], state)
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_one_call_over_a_sequence_equals_stepping_with_the_state(cell: RecurrentCell) -> None:
    """Core and Q-network: a [4, 7] sequence in one call gives the outputs and final state of seven one-step
    calls carrying the state, from a nonzero start state; the flat state is [h, c] (LSTM) or [h] (GRU)."""
    x = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(1))
    state = 0.5 * torch.randn(4, STATE_SIZES[cell], generator=torch.Generator().manual_seed(2))
    for module in (make_core(cell), make_qnet(cell)):
        assert module.state_size == STATE_SIZES[cell]
        with torch.no_grad():
            out, final = module(x, state)
            out_steps, final_steps = run_steps(module, x, state)
        assert out.shape == (4, 7, 5 if isinstance(module, RecurrentCore) else 4)
        assert final.shape == (4, STATE_SIZES[cell])
        torch.testing.assert_close(out, out_steps, rtol=0, atol=1e-6)
        torch.testing.assert_close(final, final_steps, rtol=0, atol=1e-6)
    core = make_core(cell)
    out, final = core(x, state)
    if cell is not RecurrentCell.none:  # the h half of the state is the last output
        torch.testing.assert_close(final[:, :5], out[:, -1], rtol=0, atol=1e-6)
    assert torch.equal(core.initial_state(3, CPU), torch.zeros(3, STATE_SIZES[cell]))


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_advance_steps_each_row_through_its_own_length(cell: RecurrentCell) -> None:
    """advance(features, lengths, state) equals stepping row b through its first lengths[b] steps; the padding
    after them may hold anything; rows of length 0 keep their state bit for bit; the input state is untouched."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, 3, generator=gen)
    lengths = torch.tensor([6, 0, 3, 1, 0])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 1e3 * torch.randn(6 - n, 3, generator=gen)
    state = 0.5 * torch.randn(5, STATE_SIZES[cell], generator=gen)
    original = state.clone()
    for module in (make_core(cell), make_qnet(cell)):
        with torch.no_grad():
            advanced = module.advance(x, lengths, state)
            assert advanced.shape == (5, STATE_SIZES[cell])
            assert torch.equal(state, original)
            for b, n in enumerate(lengths.tolist()):
                if n == 0:
                    assert torch.equal(advanced[b], state[b])
                else:
                    _, expected = run_steps(module, x[b : b + 1, :n], state[b : b + 1])
                    torch.testing.assert_close(advanced[b], expected[0], rtol=0, atol=1e-6)
            assert torch.equal(module.advance(x, torch.zeros(5, dtype=torch.int64), state), state)
            assert torch.equal(module.advance(x[:, :0], torch.zeros(5, dtype=torch.int64), state), state)


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_padding_at_the_end_does_not_change_earlier_outputs(cell: RecurrentCell) -> None:
    """Outputs at steps 0..3 of a sequence are the same whether wild padding follows them or not."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 3, generator=gen)
    padded = torch.cat([x, 1e3 * torch.randn(3, 5, 3, generator=gen)], dim=1)
    state = 0.5 * torch.randn(3, STATE_SIZES[cell], generator=gen)
    for module in (make_core(cell), make_qnet(cell)):
        with torch.no_grad():
            short, _ = module(x, state)
            long, _ = module(padded, state)
        torch.testing.assert_close(long[:, :4], short, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_only_the_recurrent_cells_remember_earlier_inputs(cell: RecurrentCell) -> None:
    """Changing the inputs at steps 0..2 changes the outputs at steps 3..5 for lstm and gru and leaves them
    exactly unchanged for none, whose output at a step is that of the step's input alone."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 3, generator=gen)
    changed = x.clone()
    changed[:, :3] = torch.randn(2, 3, 3, generator=gen)
    for module in (make_core(cell), make_qnet(cell)):
        state = torch.zeros(2, STATE_SIZES[cell])
        with torch.no_grad():
            out, _ = module(x, state)
            out_changed, _ = module(changed, state)
            alone, _ = module(x[:, 4:5], state)
        if cell is RecurrentCell.none:
            assert torch.equal(out[:, 3:], out_changed[:, 3:])
            torch.testing.assert_close(alone[:, 0], out[:, 4], rtol=0, atol=1e-6)
        else:
            for t in range(3, 6):
                assert not torch.allclose(out[:, t], out_changed[:, t], atol=1e-5), t
