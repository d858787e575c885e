"""The surrogate bundle as SCE-UA's forward model (sptf_ray.models.forward)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sptf_ray.inverse.site import make_forward
from sptf_ray.models.networks import Normalizer, Surrogate, SurrogateConfig
from sptf_ray.physics import parameter_space
from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE
from sptf_ray.training.bundle import write_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = Surrogate(SurrogateConfig(model="vgm", hidden_size=8))
    norm = Normalizer(["precip", "pet", "lai"], [0.2, 0.3, 1.5], [0.5, 0.1, 0.8])
    out = tmp_path_factory.mktemp("bundle")
    write_bundle(str(out), "surrogate", net, {"forcing": norm})
    return str(out), net, norm


def _inputs(n=5, days=20, seed=1):
    rng = np.random.default_rng(seed)
    space = parameter_space("vgm", theta_s_upper=THETA_S_SAMPLING_RANGE[1])
    params = space.from_unit(rng.random((n, 6)))
    return params, rng.gamma(0.3, 1.0, (n, days)), rng.uniform(0.05, 0.6, (n, days)), rng.uniform(0, 4, (n, days))


def test_matches_the_network_on_independently_scaled_inputs(bundle):
    uri, net, norm = bundle
    params, precip, pet, lai = _inputs()
    got = make_forward(uri).simulate_batch("vgm", params, precip, pet, lai)
    # Reference path: numpy unit scaling from the physics parameter space, manual normalization.
    unit = parameter_space("vgm", theta_s_upper=THETA_S_SAMPLING_RANGE[1]).to_unit(params)
    forcing = (np.stack([precip, pet, lai], -1) - np.array(norm.mean)) / np.array(norm.std)
    with torch.no_grad():
        want = net(torch.tensor(unit, dtype=torch.float32), torch.tensor(forcing, dtype=torch.float32)).numpy()
    assert got.shape == (5, 20)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_one_forcing_row_broadcasts_over_a_population(bundle):
    params, precip, pet, lai = _inputs()
    fwd = make_forward(bundle[0])
    many = fwd.simulate_batch("vgm", params, precip[0], pet[0], lai[0])
    one = fwd.simulate_batch("vgm", params[:1], precip[:1], pet[:1], lai[:1])
    np.testing.assert_allclose(many[0], one[0], rtol=1e-6)


def test_rejects_other_model_and_parameters_outside_training_range(bundle):
    params, precip, pet, lai = _inputs()
    fwd = make_forward(bundle[0])
    with pytest.raises(ValueError, match="emulates 'vgm'"):
        fwd.simulate_batch("fxw", params, precip, pet, lai)
    params[2, 1] = 0.80  # theta_s above the sampling range 0.65
    with pytest.raises(ValueError, match=r"params\[2\] theta_s"):
        fwd.simulate_batch("vgm", params, precip, pet, lai)
    with pytest.raises(FileNotFoundError):
        make_forward("/nonexistent/bundle")


@pytest.mark.parametrize("name, content, said", [
    ("weights.pt", b"not a torch file", "weights.pt does not load"),
    ("config.json", b"{not json", "config.json is not valid JSON"),
])
def test_a_bundle_file_replaced_behind_a_rebuilt_manifest_is_named(bundle, tmp_path, name, content, said):
    """The manifest verifies (rebuilt after the edit), so the file itself must say what is wrong."""
    import shutil

    from sptf_ray import storage
    from sptf_ray.training.bundle import BUNDLE_FILES, load_bundle

    copy = tmp_path / "b"
    shutil.copytree(bundle[0], copy)
    (copy / name).write_bytes(content)
    storage.write_manifest(str(copy), [f for f in BUNDLE_FILES if (copy / f).exists()])
    with pytest.raises(ValueError, match=f"model bundle {copy}: {said}"):
        load_bundle(str(copy))


def test_weights_of_another_network_size_are_named(bundle, tmp_path):
    import shutil

    from sptf_ray import storage
    from sptf_ray.training.bundle import BUNDLE_FILES, load_bundle

    copy = tmp_path / "b"
    shutil.copytree(bundle[0], copy)
    torch.save(Surrogate(SurrogateConfig(model="vgm", hidden_size=4)).state_dict(), copy / "weights.pt")
    storage.write_manifest(str(copy), [f for f in BUNDLE_FILES if (copy / f).exists()])
    with pytest.raises(ValueError, match="weights.pt does not load into the network config.json describes"):
        load_bundle(str(copy))
