"""Models: parameter scaling, network shapes, SPTF bounds, masked loss, freezing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sptf_ray.models import (SPTF, Normalizer, SPTFConfig, Surrogate, SurrogateConfig, freeze, frozen_mask,
                             masked_mse, physical_to_unit, site_theta_s_upper, sptf_bounds, sptf_to_surrogate_unit,
                             surrogate_bounds, unit_to_physical)
from sptf_ray.physics import parameter_space


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_scaling_matches_parameter_space_and_round_trips(model):
    rng = np.random.default_rng(0)
    u = rng.random((20, 6))
    space = parameter_space(model, 0.65)
    phys = space.from_unit(u)
    b = surrogate_bounds(model)
    got = unit_to_physical(torch.tensor(u, dtype=torch.float64), b).numpy()
    np.testing.assert_allclose(got, phys, rtol=1e-5)
    back = physical_to_unit(torch.tensor(phys, dtype=torch.float64), b).numpy()
    np.testing.assert_allclose(back, u, atol=1e-5)
    np.testing.assert_allclose(back, space.to_unit(phys), atol=1e-5)


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_sptf_outputs_always_inside_bounds_with_site_theta_s_upper(model):
    torch.manual_seed(0)
    net = SPTF(SPTFConfig(model=model, hidden_size=8))
    # extreme inputs push the sigmoid to its ends
    daily = torch.randn(6, 30, 5) * 50
    static = torch.randn(6, 4) * 50
    upper = torch.tensor([0.41, 0.45, 0.5, 0.62, 0.41, 0.70], dtype=torch.float32)
    with torch.no_grad():
        for scale in (1.0, 1e3):
            net.head.weight.mul_(scale)
            phys = net.to_physical(net(daily, static), upper).double().numpy()
            for i in range(6):
                space = parameter_space(model, float(upper[i]))
                assert np.all(phys[i] >= space.lower - 1e-6 * np.abs(space.lower)), (phys[i], space.lower)
                assert np.all(phys[i] <= space.upper + 1e-6 * np.abs(space.upper)), (phys[i], space.upper)
    assert sptf_bounds(model).names[sptf_bounds(model).theta_s_index] == "theta_s"


def test_theta_s_upper_uses_historical_max():
    swc = np.array([[0.2, 0.3, np.nan], [0.2, 0.48, 0.1], [np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(site_theta_s_upper(swc), [0.41, 0.48, 0.41])


def test_sptf_to_surrogate_unit_is_differentiable_and_consistent():
    unit = torch.full((2, 6), 0.5, requires_grad=True)
    su = sptf_to_surrogate_unit(unit, "vgm", torch.tensor([0.41, 0.65]))
    su.sum().backward()
    assert unit.grad is not None and torch.all(torch.isfinite(unit.grad))
    # theta_s (index 1 for VGM): 0.365 -> (0.365-0.32)/0.33 ; 0.485 -> 0.5
    np.testing.assert_allclose(su[:, 1].detach().numpy(), [(0.365 - 0.32) / 0.33, 0.5], atol=1e-5)


def test_masked_mse_matches_eq3_and_ignores_frozen_and_missing():
    pred = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    obs = torch.tensor([[0.2, 0.2, float("nan"), 0.0]])
    lst = torch.tensor([[5.0, -3.0, 1.0, 0.0]])
    mask = frozen_mask(lst)
    assert mask.tolist() == [[1.0, 0.0, 1.0, 1.0]]
    loss = masked_mse(pred, obs, mask)
    assert loss.item() == pytest.approx((0.01 + 0.16) / 2)
    assert masked_mse(pred, obs, torch.zeros_like(pred)).item() == 0.0


def test_surrogate_shapes_and_freeze_keeps_gradient_path():
    net = Surrogate(SurrogateConfig(hidden_size=8))
    x = torch.rand(3, 6, requires_grad=True)
    y = net(x, torch.randn(3, 11, 3))
    assert y.shape == (3, 11)
    freeze(net)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    net(x, torch.randn(3, 11, 3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="params_unit"):
        net(torch.rand(3, 5), torch.randn(3, 11, 3))


def test_normalizer_fit_and_validate():
    v = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=-1)
    n = Normalizer.fit(["a", "b"], v)
    assert n.std[1] == 1.0 and n.mean[1] == 3.0
    out = n(torch.tensor(v, dtype=torch.float32))
    assert abs(out[:, 0].mean().item()) < 1e-6
    with pytest.raises(ValueError):
        Normalizer(["a"], [0.0], [0.0]).validate()
    with pytest.raises(ValueError, match="model"):
        SurrogateConfig(model="foo").validate()
