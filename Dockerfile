# The image every Airflow service of docker-compose.yaml runs: Airflow 3.3.2 on Python 3.12 with this
# project installed (trading_ml, the DAG and its plugins). Build: docker compose build
FROM apache/airflow:3.3.2-python3.12

# torch from the CPU-only index keeps the image ~4 GB smaller; remove the option for a CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY --chown=airflow:0 pyproject.toml README.md logical_pipe.py train_production_models.py config.yaml /opt/trading-ml/
COPY --chown=airflow:0 trading_ml /opt/trading-ml/trading_ml
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" /opt/trading-ml
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
ENV TRADING_ML_CONFIG=/opt/trading-ml/config.yaml \
    TRADING_ML_DATA_DIR=/opt/trading-ml/data
