"""Running the DAGs with dag.test()."""

import datetime as dt

import pendulum


def run_dag(bag, dag_id: str, monitored: dt.date, conf: dict | None = None):
    """A manual run made just after the monitored day ended: its data interval is that day."""
    after = pendulum.datetime(monitored.year, monitored.month, monitored.day, tz="UTC").add(days=1)
    dr = bag.dags[dag_id].test(logical_date=after, run_conf=conf)
    assert (dr.data_interval_start, dr.data_interval_end) == (after.subtract(days=1), after) or conf
    return dr, {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
