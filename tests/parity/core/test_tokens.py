import torch

from parity.core.tokens import take_tokens


def test_take_tokens_is_advanced_indexing_values_and_gradients():
    x = torch.randn(3, 10, 4, requires_grad=True, generator=torch.Generator().manual_seed(0))
    g = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(1))
    for positions in (torch.randperm(10, generator=torch.Generator().manual_seed(2)), torch.tensor([7, 0, 3])):
        grads = []
        for take in (lambda p=positions: x[:, p], lambda p=positions: take_tokens(x, p)):
            y = take()
            y.backward(g[:, :len(positions)])
            grads.append((y.detach(), x.grad))
            x.grad = None
        assert all(torch.equal(a, b) for a, b in zip(*grads))
