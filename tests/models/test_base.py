"""The feature matrix every model reads: float32, the caller's own, rows in the order asked."""

import numpy as np
import pandas as pd
import pytest

from trading_ml.errors import DataError
from trading_ml.models.base import Standardizer, column_blocks, feature_matrix


def mixed_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "wide": np.array([0.1, 0.2, 0.3, 0.4]),  # float64: rounded to float32 as astype does
            "narrow": np.array([1.5, 2.5, np.nan, 4.5], dtype=np.float32),
            "counts": pd.array([1, None, 3, 4], dtype="Int8"),  # nullable: missing becomes NaN
        }
    )


def test_the_matrix_is_the_columns_as_float32_and_writable():
    table = mixed_table()
    matrix = feature_matrix(table, ["wide", "narrow", "counts"], "m")
    expected = np.array([[0.1, 1.5, 1], [0.2, 2.5, np.nan], [0.3, np.nan, 3], [0.4, 4.5, 4]]).astype(np.float32)
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.float32 and matrix.flags.writeable
    matrix[:] = 0  # the caller's own: the table is untouched
    assert table["narrow"].iloc[0] == 1.5


def test_rows_are_taken_in_the_order_given_and_extra_columns_follow_the_named_ones():
    table = mixed_table()
    rows = np.array([3, 0, 2])
    matrix = feature_matrix(table, ["wide"], "m", rows, extra_columns=(np.array([10.0, 20.0, 30.0, 40.0]),))
    np.testing.assert_array_equal(matrix, np.array([[0.4, 40], [0.1, 10], [0.3, 30]], dtype=np.float32))


def test_a_missing_feature_names_the_model_and_the_column():
    with pytest.raises(DataError, match="m needs feature.*absent.*rebuild features"):
        feature_matrix(mixed_table(), ["wide", "absent"], "m")


@pytest.mark.parametrize("columns", [0, 1, 2, 16, 17, 33, 121])
def test_the_standardizer_fitted_on_rows_in_blocks_gives_numpys_numbers_bit_for_bit(columns):
    rng = np.random.default_rng(columns)
    values = (rng.normal(size=(20_000, columns)) * rng.uniform(0.001, 100, columns) + 3).astype(np.float32)
    rows = np.sort(rng.choice(len(values), 15_000, replace=False))[::-1]  # any order, kept
    copied = values[rows]
    fitted = Standardizer.fit(values, rows)
    np.testing.assert_array_equal(fitted.mean, copied.mean(axis=0))
    np.testing.assert_array_equal(fitted.scale, np.where(copied.std(axis=0) > 0, copied.std(axis=0), 1.0))
    whole = Standardizer.fit(values)
    np.testing.assert_array_equal(whole.scale, np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0))


def test_column_blocks_cover_every_column_once_and_never_leave_one_alone():
    for count in range(0, 70):
        blocks = column_blocks(count)
        assert [c for b in blocks for c in range(count)[b]] == list(range(count))
        assert all(b.stop - b.start > 1 for b in blocks) or count == 1


def test_every_feature_a_model_computes_with_in_float64_is_stored_as_float64():
    """GARCH, HAR-RV and the baselines read these columns as float64: the training table keeps them so."""
    from trading_ml.features.catalogue import FLOAT64_FEATURES, float32_features
    from trading_ml.models.baselines import RETURN
    from trading_ml.models.volatility import GarchVolatility, HarVolatility

    read_in_float64 = {RETURN, *GarchVolatility.feature_names, *HarVolatility.feature_names}
    assert read_in_float64 <= set(FLOAT64_FEATURES)
    assert not read_in_float64 & set(float32_features(sorted(read_in_float64)))
