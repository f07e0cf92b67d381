"""Loading a regime forest runs no code: every type in the skops file must be on an exact list."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.crafted import marker_code, skops_with_exec
from tests.models.test_models import fitted, planted_regime_table, with_models
from trading_ml.errors import DataError
from trading_ml.models.base import feature_matrix
from trading_ml.models.regime import FOREST_TYPES, REGIME_FEATURES, RegimeForest


@pytest.fixture(scope="module")
def forest():
    table = planted_regime_table(symbols=3)
    return table, fitted(RegimeForest, table, REGIME_FEATURES, with_models(regime_rf={"trees": 5}))[0]


def test_the_crafted_file_does_run_code_when_skops_trusts_what_it_asks_for(forest, tmp_path):
    """The attack is live: the old rule (trust any builtins.* / numpy.* / sklearn.* type) runs it."""
    marker = tmp_path / "marker"
    crafted = skops_with_exec(forest[1].save()[".skops"], marker_code(marker))
    asked = sio.get_untrusted_types(data=crafted)
    assert "builtins.exec" in asked and all(t.startswith(("sklearn.", "numpy.", "builtins.")) for t in asked)
    sio.loads(crafted, trusted=asked)
    assert marker.read_text() == "code ran on load"


def test_a_crafted_exec_node_is_refused_by_name_and_runs_nothing(forest, tmp_path):
    marker = tmp_path / "marker"
    files = {**forest[1].save()}
    files[".skops"] = skops_with_exec(files[".skops"], marker_code(marker))
    with pytest.raises(DataError, match="builtins.exec.*refusing to load it"):
        RegimeForest.load(files)
    assert not marker.exists()


def test_a_type_outside_the_exact_list_is_refused_even_when_skops_trusts_it(forest):
    """LogisticRegression is a scikit-learn type skops trusts by default; a forest file never holds one."""
    table, model = forest
    files = model.save()
    files[".skops"] = sio.dumps({**model.forests, "target_regime": LogisticRegression()})
    with pytest.raises(DataError, match="sklearn.linear_model._logistic.LogisticRegression"):
        RegimeForest.load(files)


def test_forests_fitted_as_the_pipeline_fits_them_load_within_the_list(forest):
    table, _ = forest
    for cap in (200, 10_000_000):  # trees drawing a capped sample, and the plain bootstrap
        model = fitted(RegimeForest, table, REGIME_FEATURES, with_models(regime_rf={"trees": 5, "max_samples": cap}))[0]
        again = RegimeForest.load(model.save())
        features = feature_matrix(table, model.feature_names, model.name)
        for target, forest_fit in model.forests.items():  # probabilities, not labels: 5 trees tie often, and
            np.testing.assert_allclose(
                forest_fit.predict_proba(features), again.forests[target].predict_proba(features)
            )  # n_jobs=2 breaks ties by thread order
    assert all("." in name and "*" not in name for name in FOREST_TYPES)  # names, not prefixes


def test_a_forest_saves_and_loads_without_importing_torch():
    """skops' import would load torch through scikit-learn's array-API shim (0.27 GB): in a fresh
    process, a forest's round trip leaves torch unloaded, and the shim importable as before."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
        from trading_ml.models.regime import FORECAST, TORCH_SHIM, RegimeForest
        x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
        forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, (x[:, 0] > 0).astype(str))
        again = RegimeForest.load(RegimeForest(["a", "b"], {FORECAST: forest}).save())
        assert (again.forests[FORECAST].predict(x) == forest.predict(x)).all()
        print("torch" in sys.modules, TORCH_SHIM in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
