# The image every Airflow service of docker-compose.yaml runs: Airflow 3.3.2 on Python 3.12 with this
# project installed (trading_ml with its celery extra, the DAG and its plugins). Build: docker compose build
FROM apache/airflow:3.3.2-python3.12

# torch from the CPU-only index keeps the image ~4 GB smaller; remove the option for a CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY --chown=airflow:0 pyproject.toml README.md logical_pipe.py train_production_models.py config.yaml constraints.txt /opt/trading-ml/
COPY --chown=airflow:0 trading_ml /opt/trading-ml/trading_ml
COPY --chown=airflow:0 scripts/deployment_secrets.py /opt/trading-ml/scripts/deployment_secrets.py
# constraints.txt: every version this project's CI installed and tested together, Airflow 3.3.2 and
# the celery extra's pins included (`make constraints` writes it from the tested environment).
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" --constraint /opt/trading-ml/constraints.txt "/opt/trading-ml[celery]"
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
# The shared data volume mounts here: created in the image and owned by the Airflow user, so a new
# named volume starts with that owner (uid 50000) and every worker can write runs and models.
USER root
RUN mkdir -p /opt/trading-ml/data && chown airflow:0 /opt/trading-ml/data && chmod 2775 /opt/trading-ml/data
USER airflow
ENV TRADING_ML_CONFIG=/opt/trading-ml/config.yaml \
    TRADING_ML_DATA_DIR=/opt/trading-ml/data
