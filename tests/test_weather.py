"""The stochastic weather generator: statistics, seasonality, frost, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from sptf_ray.data.weather import (DAYS_PER_YEAR, Climate, generate_weather, sample_climates,
                                   seasonal_wet_probability)

N_YEARS = 20


def _climate(n, **overrides) -> Climate:
    base = dict(
        lat=np.full(n, 40.0), annual_precip_mm=np.full(n, 700.0), wet_day_fraction=np.full(n, 0.3),
        wet_persistence=np.full(n, 0.3), precip_seasonality=np.zeros(n), precip_peak_doy=np.full(n, 180.0),
        gamma_shape=np.full(n, 0.75), temp_mean_c=np.full(n, 12.0), temp_amplitude_c=np.full(n, 10.0),
        temp_noise_sd_c=np.full(n, 3.0), diurnal_range_c=np.full(n, 11.0),
        land_cover=np.array(["GRA"] * n, dtype=object),
    )
    base.update({k: np.asarray(v) for k, v in overrides.items()})
    return Climate(**base)


def test_same_seed_same_weather_and_different_seed_differs():
    climate = sample_climates(5, np.random.default_rng(3))
    a = generate_weather(climate, 2 * DAYS_PER_YEAR, 11)
    b = generate_weather(climate, 2 * DAYS_PER_YEAR, 11)
    c = generate_weather(climate, 2 * DAYS_PER_YEAR, 12)
    for field in ("precip_cm", "pet_cm", "lai", "lst_c", "tair_c"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.precip_cm, c.precip_cm)
    again = sample_climates(5, np.random.default_rng(3))
    np.testing.assert_array_equal(again.annual_precip_mm, climate.annual_precip_mm)


def test_wet_day_fraction_amounts_and_persistence():
    fractions = np.array([0.1, 0.3, 0.5])
    climate = _climate(3, wet_day_fraction=fractions, wet_persistence=[0.2, 0.3, 0.4])
    w = generate_weather(climate, N_YEARS * DAYS_PER_YEAR, 0)
    wet = w.precip_cm > 0
    np.testing.assert_allclose(wet.mean(axis=1), fractions, atol=0.02)
    annual_mm = w.precip_cm.sum(axis=1) * 10 / N_YEARS
    np.testing.assert_allclose(annual_mm, 700.0, rtol=0.1)
    # Persistence: P(wet | wet) - P(wet | dry) is the configured lag-1 autocorrelation.
    for i, r in enumerate([0.2, 0.3, 0.4]):
        prev, curr = wet[i, :-1], wet[i, 1:]
        measured = curr[prev].mean() - curr[~prev].mean()
        assert abs(measured - r) < 0.05, (i, measured)
    assert np.all(w.precip_cm >= 0) and np.all(w.pet_cm >= 0) and np.all(w.lai >= 0)


def test_wet_season_and_summer_are_where_configured():
    climate = _climate(2, precip_seasonality=[0.7, 0.7], precip_peak_doy=[30.0, 210.0],
                       lat=[45.0, -35.0])
    w = generate_weather(climate, N_YEARS * DAYS_PER_YEAR, 1)
    doy = np.arange(w.precip_cm.shape[1]) % DAYS_PER_YEAR + 1
    winter_n = (doy < 60) | (doy > 335)
    summer_n = (doy > 152) & (doy < 244)
    wet = w.precip_cm > 0
    assert wet[0, winter_n].mean() > 1.5 * wet[0, summer_n].mean()  # peak in late January
    assert wet[1, summer_n].mean() > 1.5 * wet[1, winter_n].mean()  # peak in late July
    # Northern summer is warm with high PET; the southern site has it the other way round.
    assert w.tair_c[0, summer_n].mean() > w.tair_c[0, winter_n].mean() + 10
    assert w.tair_c[1, winter_n].mean() > w.tair_c[1, summer_n].mean() + 10
    assert w.pet_cm[0, summer_n].mean() > 2 * w.pet_cm[0, winter_n].mean()
    assert w.lai[0, summer_n].mean() > w.lai[0, winter_n].mean() + 1.0
    p = seasonal_wet_probability(climate, np.arange(1, 366))
    assert np.all((p > 0) & (p < 1))


def test_frost_only_in_cold_climates():
    climate = _climate(3, temp_mean_c=[26.0, 12.0, 2.0], temp_amplitude_c=[2.0, 10.0, 16.0],
                       lat=[5.0, 42.0, 58.0])
    w = generate_weather(climate, 5 * DAYS_PER_YEAR, 2)
    frozen_days_per_year = (w.lst_c < 0).sum(axis=1) / 5
    assert frozen_days_per_year[0] == 0
    assert 0 < frozen_days_per_year[1] < 60
    assert frozen_days_per_year[2] > 90


def test_sampled_climates_span_arid_to_humid_and_cold_to_hot():
    climate = sample_climates(2000, np.random.default_rng(0))
    p = climate.annual_precip_mm
    assert (p < 250).any() and (p > 1500).any()
    assert 0.75 < np.mean((p >= 200) & (p <= 1500)) < 0.98  # the ISMN's typical range
    assert climate.temp_mean_c.min() < 0 < 20 < climate.temp_mean_c.max()
    assert len(set(climate.land_cover)) >= 5


def test_bad_inputs_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="land cover"):
        _climate(1, land_cover=np.array(["XXX"], dtype=object))
    with pytest.raises(ValueError, match="wet_day_fraction"):
        _climate(1, wet_day_fraction=[1.2])
    with pytest.raises(ValueError, match="n_days"):
        generate_weather(_climate(1), 0, 0)
