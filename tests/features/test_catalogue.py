"""The registry: at least 70 features in the plan's six categories, and the code computes exactly them."""

from __future__ import annotations

from trading_ml.features import catalogue
from trading_ml.features.build import build_timeframe
from trading_ml.features.indicators import symbol_features


def test_at_least_70_features_in_six_categories_most_of_them_scale_free():
    names = catalogue.symbol_feature_names()
    categories = {catalogue.FEATURES[n].category for n in names}
    assert len(names) >= 70 and len(set(names)) == len(names)
    assert categories == set(catalogue.SYMBOL_CATEGORIES)
    for category in catalogue.SYMBOL_CATEGORIES:
        assert sum(catalogue.FEATURES[n].category == category for n in names) >= 10, category
    assert len(catalogue.model_features(names)) >= 70
    assert not any(n.startswith(catalogue.TARGET_PREFIX) for n in catalogue.FEATURES)


def test_the_code_computes_exactly_the_catalogue_with_and_without_volume(synthetic_daily):
    bars, _ = synthetic_daily
    assert list(symbol_features(bars["AAPL"]).columns) == catalogue.symbol_feature_names(True)
    without_volume = symbol_features(bars["^VIX"], has_volume=False)
    assert list(without_volume.columns) == catalogue.symbol_feature_names(False)
    assert not any(catalogue.FEATURES[c].category == "volume" for c in without_volume.columns)


def test_no_feature_is_constant_or_empty_after_warm_up_on_real_sample_data(sample_daily, feature_settings):
    bars, instruments = sample_daily
    built = build_timeframe(bars, instruments, "1d", feature_settings.features)
    training = [s for s in built.symbols.values() if instruments[s.symbol].has_volume]
    assert [s.symbol for s in training] == ["^GSPC", "^IXIC"]
    for result in training:
        table = result.table[result.feature_names]
        assert (
            len(table) > 700 and result.warmup_rows == feature_settings.features.warmup_bars
        )  # 500 > the 199 SMA 200 needs
        assert table.notna().all().all()
        varying = table.nunique()
        constant = sorted(varying[varying <= 1].index)
        expected = ["relative_strength_20"] if result.symbol == "^GSPC" else []  # the benchmark against itself
        assert constant == expected, result.symbol
    assert len(training[0].feature_names) >= 70 + len(built.market.feature_names)
