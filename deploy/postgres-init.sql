-- A second database on the same server for lpmon's state store (Airflow uses "airflow").
CREATE DATABASE lpmon;
