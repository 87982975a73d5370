"""Intensity mapping: forward/inverse, CT in HU, percentile fitting, plausibility warnings, card parsing."""
from __future__ import annotations

import numpy as np
import pytest

from MedTranslateLib.intensity import (IntensityMapping, IntensityPair, IntensityRange, plausibility_warning,
                                       to_output_units)

CT = {"kind": "ct", "window": [-1024, 3071]}
MR = {"kind": "percentile", "low_percentile": 0.5, "high_percentile": 99.5}


def test_range_inverse_is_exact_inside_the_range():
    values = np.linspace(-1024, 3071, 1001, dtype=np.float32)
    window = IntensityRange(-1024, 3071)
    mapped = window.to_network(values)
    assert mapped.min() == pytest.approx(-1) and mapped.max() == pytest.approx(1)
    np.testing.assert_allclose(window.from_network(mapped), values, atol=1e-3)


def test_ct_window_clips_and_comes_back_as_integer_hu():
    window = IntensityMapping.from_dict(CT, "source").fit(np.zeros(3))
    mapped = window.to_network(np.array([-3000, -1024, 0, 3071, 5000], dtype=np.float32))
    np.testing.assert_allclose(mapped[[0, -1]], [-1, 1])
    hu = to_output_units(window.from_network(mapped), "CT")
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu, [-1024, -1024, 0, 3071, 3071])


def test_percentile_fit_uses_whole_volume_low_and_foreground_high():
    rng = np.random.default_rng(0)
    background = rng.normal(0, 1, 50_000)
    tissue = rng.uniform(200, 400, 50_000)
    fitted = IntensityMapping.from_dict(MR, "source").fit(np.concatenate([background, tissue]))
    assert fitted.low < 0
    assert 395 < fitted.high <= 400  # 99.5th percentile of the tissue, not skewed by the background


def test_target_output_range_source_or_fixed():
    pair = IntensityPair.from_dict({"source": MR, "target": dict(MR, output_range="source")})
    source = IntensityRange(3.0, 900.0)
    assert pair.target_range(source) == source
    fixed = IntensityPair.from_dict({"source": CT, "target": dict(MR, output_range=[0, 1000])})
    assert fixed.target_range(source) == IntensityRange(0, 1000)
    to_ct = IntensityPair.from_dict({"source": MR, "target": CT})
    assert to_ct.target_range(source) == IntensityRange(-1024, 3071)


def test_source_target_shares_the_paired_source_range():
    pair = IntensityPair.from_dict({"source": MR, "target": {"kind": "source"}})
    source = IntensityRange(3.0, 900.0)
    assert pair.target_range(source) == source
    assert pair.paired_target_range(np.array([0.0, 5000.0]), source) == source
    own = IntensityPair.from_dict({"source": MR, "target": MR})
    assert own.paired_target_range(np.linspace(0, 10, 1000), source) != source
    assert pair.to_dict()["target"] == {"kind": "source"}
    with pytest.raises(ValueError, match="has none of its own"):
        pair.target.fit(np.zeros(3))
    with pytest.raises(ValueError, match="unknown"):
        IntensityMapping.from_dict({"kind": "source"}, "source")
    with pytest.raises(ValueError, match="unknown keys"):
        IntensityMapping.from_dict({"kind": "source", "output_range": "source"}, "target")


def test_round_trip_of_card_entries():
    spec = {"source": MR, "target": dict(MR, output_range=[0.0, 1000.0])}
    assert IntensityPair.from_dict(spec).to_dict() == spec


@pytest.mark.parametrize("spec, words", [
    ({"kind": "zscore"}, "unknown"),
    ({"kind": "ct"}, "window"),
    ({"kind": "ct", "window": [100, -100]}, "window"),
    ({"kind": "percentile", "low_percentile": 90, "high_percentile": 10}, "percentiles"),
    ({"kind": "percentile", "extra": 1}, "unknown keys"),
])
def test_bad_entries_are_named(spec, words):
    with pytest.raises(ValueError, match=words):
        IntensityMapping.from_dict(spec, "source")


def test_output_range_only_on_target():
    with pytest.raises(ValueError, match="unknown keys"):
        IntensityMapping.from_dict(dict(MR, output_range="source"), "source")


def test_plausibility_warns_for_hu_into_mr_and_mr_into_ct():
    rng = np.random.default_rng(1)
    ct = np.concatenate([np.full(60_000, -1000.0), rng.uniform(0, 80, 40_000)])
    mr = rng.uniform(0, 800, 100_000)
    assert "Hounsfield" in plausibility_warning(ct, "MR-T1")
    assert plausibility_warning(mr, "MR-T1") is None
    assert "Hounsfield" in plausibility_warning(mr, "CT")
    assert plausibility_warning(ct, "CT") is None
