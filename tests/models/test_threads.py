"""A fit's thread budget: the cores shared by the trainings that run at once, and the libraries held to it."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from tests.models.test_models import FEATURES, Data, last_fold, planted_table, with_models
from trading_ml.models.direction import LSTMDirection, XGBoostDirection
from trading_ml.models.threads import fit_threads, limited_threads, machine_cores


@pytest.mark.parametrize("cores, sharing, threads", [(2, 1, 2), (2, 3, 1), (8, 3, 2), (16, 6, 2), (4, 0, 4)])
def test_trainings_that_run_at_once_share_the_cores(cores, sharing, threads):
    assert fit_threads(cores, sharing) == threads


def test_no_cores_configured_means_this_machines():
    assert fit_threads(0, 1) == machine_cores() >= 1


def test_inside_the_budget_blas_and_torch_use_that_many_threads_and_get_theirs_back():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
    assert torch.get_num_threads() == before


def test_each_model_fits_with_the_threads_its_dataset_gives_it():
    quick = with_models(direction_xgboost={"rounds": 5}, direction_lstm={"epochs": 1})
    table = planted_table(0.1, days=300, symbols=4)
    data = Data(table, last_fold(table, quick), FEATURES, threads=1)
    booster = XGBoostDirection.fit(data, quick.models.of("direction_xgboost"), 0)
    assert booster.booster.get_params()["n_jobs"] == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        LSTMDirection.fit(data, quick.models.of("direction_lstm"), 0)  # the volatility LSTM shares lstm.fit
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
