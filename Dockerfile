# Airflow 3.3 with lpmon installed: the image every service of docker-compose.yml runs.
FROM apache/airflow:3.3.2-python3.11

USER root
# A C compiler for lpmon's Cython kernels (built once, here).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root . /opt/lpmon/src
RUN pip install --no-cache-dir -c /opt/lpmon/src/constraints.txt setuptools wheel Cython \
    && pip install --no-cache-dir -c /opt/lpmon/src/constraints.txt --no-build-isolation "/opt/lpmon/src[airflow]"
COPY --chown=airflow:root dags/ /opt/airflow/dags/
