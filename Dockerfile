# The image every Airflow service of docker-compose.yaml runs: Airflow 3.3.2 on Python 3.12 with this
# project installed (trading_ml with its celery extra, the DAG and its plugins), every version held to
# constraints.txt (what CI tested together; Airflow's own pin included).
#
# AIRFLOW_BASE: the official image by default. Where no registry can be reached, scripts/compose-smoke
# builds docker/airflow-base (Debian, Python 3.12, the airflow user) and passes it here; the pip step
# then installs Airflow itself from constraints.txt.
# TORCH_INDEX_URL: torch's CPU-only index keeps the image ~4 GB smaller; empty = the package index only
# (a CUDA-capable build, as CI installs).
ARG AIRFLOW_BASE=apache/airflow:3.3.2-python3.12
FROM ${AIRFLOW_BASE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
USER root
# The shared data volume mounts here: created in the image and owned by the Airflow user, so a new
# named volume starts with that owner (uid 50000, group 0) and every worker can write runs and models.
RUN mkdir -p /opt/trading-ml/data && chown -R airflow:0 /opt/trading-ml && chmod 2775 /opt/trading-ml/data
USER airflow
# The dependencies first (pyproject.toml's, with the celery extra, under constraints.txt), in a layer
# that a change of the code does not rebuild; then the project itself without dependencies.
COPY --chown=airflow:0 pyproject.toml constraints.txt /opt/trading-ml/
RUN python -c 'import tomllib; p = tomllib.load(open("/opt/trading-ml/pyproject.toml", "rb"))["project"]; \
      print("\n".join(p["dependencies"] + p["optional-dependencies"]["celery"]))' > /tmp/requirements.txt \
 && pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
      --constraint /opt/trading-ml/constraints.txt --requirement /tmp/requirements.txt
COPY --chown=airflow:0 . /opt/trading-ml/
RUN pip install --no-cache-dir --no-deps --constraint /opt/trading-ml/constraints.txt "/opt/trading-ml[celery]" \
 && python -c 'import airflow, trading_ml, torch, xgboost, pandas_ta; print("airflow", airflow.__version__, "torch", torch.__version__)'
# ARROW_DEFAULT_MEMORY_POOL: Arrow on glibc's allocator in every process, whatever loads pyarrow
# first (trading_ml sets it too when it loads first; trading_ml/__init__.py says why)
ENV TRADING_ML_CONFIG=/opt/trading-ml/config.yaml \
    ARROW_DEFAULT_MEMORY_POOL=system \
    TRADING_ML_DATA_DIR=/opt/trading-ml/data \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/trading-ml/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/trading-ml/plugins
