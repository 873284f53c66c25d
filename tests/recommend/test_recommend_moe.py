import pytest
import torch
import torch.nn.functional as F

from videoai.recommend import MoEFeedForward


def reference_moe(layer: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Per-token loop over the chosen experts (what the batched dispatch must equal when nothing is dropped)."""
    _, experts, gates = layer.route(x)
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        for j in range(layer.top_k):
            e = int(experts[n, j])
            hidden = F.gelu(x[n] @ layer.w_in[e] + layer.b_in[e, 0])
            out[n] += gates[n, j] * (hidden @ layer.w_out[e] + layer.b_out[e, 0])
    return out


def test_dispatch_matches_per_token_reference():
    torch.manual_seed(0)
    layer = MoEFeedForward(8, 16, num_experts=4, top_k=2).eval()
    torch.nn.init.normal_(layer.b_in)
    x = torch.randn(2, 5, 8)
    y, aux = layer(x)
    assert y.shape == x.shape
    assert torch.allclose(y.reshape(-1, 8), reference_moe(layer, x.reshape(-1, 8)), atol=1e-5)
    assert aux.ndim == 0


def test_capacity_dispatch_equals_dense_when_nothing_is_dropped():
    torch.manual_seed(0)
    capacity = MoEFeedForward(8, 16, num_experts=4, top_k=2, capacity_factor=2.0).train()  # capacity = all tokens
    dense = MoEFeedForward(8, 16, num_experts=4, top_k=2, dispatch="dense").train()
    dense.load_state_dict(capacity.state_dict())
    x = torch.randn(30, 8, requires_grad=True)
    y_capacity, aux_capacity = capacity(x)
    y_dense, aux_dense = dense(x)
    assert torch.allclose(y_capacity, y_dense, atol=1e-5) and torch.allclose(aux_capacity, aux_dense)
    y_capacity.sum().backward()
    grad_capacity = capacity.w_in.grad.clone()
    y_dense.sum().backward()
    assert torch.allclose(grad_capacity, dense.w_in.grad, atol=1e-5)
    with pytest.raises(ValueError, match="dispatch"):
        MoEFeedForward(8, 16, 4, dispatch="sparse")


def test_routing_is_top_k_with_normalised_gates():
    torch.manual_seed(0)
    layer = MoEFeedForward(8, 16, num_experts=5, top_k=3)
    probs, experts, gates = layer.route(torch.randn(20, 8))
    assert experts.shape == (20, 3) and torch.allclose(gates.sum(-1), torch.ones(20))
    assert torch.equal(experts, probs.topk(3, -1).indices)
    with pytest.raises(ValueError, match="top_k"):
        MoEFeedForward(8, 16, num_experts=2, top_k=3)


def test_load_balancing_loss_penalises_collapse():
    layer = MoEFeedForward(4, 8, num_experts=4, top_k=1)
    n = 400
    experts_uniform = torch.arange(n)[:, None] % 4
    uniform = layer.load_balancing_loss(torch.full((n, 4), 0.25), experts_uniform, None)
    collapsed_probs = torch.tensor([0.97, 0.01, 0.01, 0.01]).expand(n, 4)
    collapsed = layer.load_balancing_loss(collapsed_probs, torch.zeros(n, 1, dtype=torch.long), None)
    assert uniform.item() == pytest.approx(1.0)
    assert collapsed.item() == pytest.approx(4 * 0.97)
    # the loss has a gradient that pushes the router away from the over-used expert
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    layer.router.weight.data[0] = 3 * x.mean(0)  # bias routing towards expert 0
    _, aux = layer(x)
    aux.backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0


def test_capacity_drops_overflow_in_training_and_masks_padding():
    torch.manual_seed(0)
    layer = MoEFeedForward(8, 16, num_experts=2, top_k=1, capacity_factor=0.5).train()
    layer.router.weight.data.zero_()
    layer.router.weight.data[0, 0] = 10.0  # every token with x[0] > 0 wants expert 0
    x = torch.randn(40, 8).abs()
    y, _ = layer(x)
    assert layer.capacity(40) == 10
    kept = (y.abs().sum(-1) > 0).sum().item()
    assert kept == 10  # capacity 10 for expert 0, the other 30 tokens are dropped (residual carries them)
    mask = torch.zeros(40, dtype=torch.bool)
    mask[:3] = True
    for module in (layer.train(), layer.eval()):  # capacity dispatch, then dense (eval)
        y, _ = module(x, token_mask=mask)
        assert (y[3:] == 0).all() and (y[:3] != 0).any()
