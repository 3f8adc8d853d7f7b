"""Dropped workbooks: the sensor launches a load per file version; the load validates and
stores; a successful load launches the cycle run; an invalid workbook fails its load run."""

import dagster as dg

from batch_pipelines.core.drop_folder import changed_files
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.risk_modeling.jobs import CYCLE_TAG, load_workbook
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sample_workbook import valid_workbook
from batch_pipelines.risk_modeling.sensors import cycle_after_workbook_load, workbook_drop_sensor


def test_only_new_or_changed_files_are_loaded_and_the_cursor_remembers_them():
    changed, cursor = changed_files(None, {"a.xlsx": (1, 10), "b.xlsx": (1, 20)})
    assert changed == ["a.xlsx", "b.xlsx"]
    changed, cursor = changed_files(cursor, {"a.xlsx": (1, 10), "b.xlsx": (2, 21)})
    assert changed == ["b.xlsx"]
    changed, _ = changed_files(cursor, {"a.xlsx": (1, 10), "b.xlsx": (2, 21)})
    assert changed == []


def _sensor(tmp_path, instance, cursor=None):
    settings = RiskModelingSettings(
        data_dir=str(tmp_path / "data"), drop_folder=str(tmp_path / "incoming")
    )
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"risk_modeling": settings}
    )
    return workbook_drop_sensor(context)


def test_a_dropped_workbook_launches_one_load_per_file_version(tmp_path):
    (tmp_path / "incoming").mkdir()
    path = valid_workbook().write(tmp_path / "incoming" / "cycle.xlsx")
    with dg.instance_for_test() as instance:
        result = _sensor(tmp_path, instance)
        (request,) = result.run_requests
        assert request.run_config["ops"]["load_cycle_workbook"]["config"]["workbook_path"] == str(
            path
        )
        assert request.run_key.startswith("cycle.xlsx:")
        assert isinstance(_sensor(tmp_path, instance, cursor=result.cursor), dg.SkipReason)


def test_loading_a_valid_workbook_registers_the_cycle_and_the_cycle_run_follows(tmp_path):
    path = valid_workbook().write(tmp_path / "cycle.xlsx")
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with dg.instance_for_test() as instance:
        result = load_workbook.execute_in_process(
            run_config={"ops": {"load_cycle_workbook": {"config": {"workbook_path": str(path)}}}},
            resources={
                "batch_store": BatchStoreResource(database_url=store_url),
                "risk_modeling": RiskModelingSettings(data_dir=str(tmp_path / "data")),
            },
            instance=instance,
        )
        cycle = result.output_for_node("load_cycle_workbook")
        # the embedded default generates the sample exposure data Data Extraction reads
        assert (tmp_path / "data" / "exposure_source.db").exists()
        run = instance.get_run_by_id(result.run_id)
        assert run.tags[CYCLE_TAG] == cycle
        assert instance.has_dynamic_partition("risk_modeling_cycles", cycle)
        store = BatchStoreResource(database_url=store_url).get_store()
        assert store.active_cycle().name == cycle
        success = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        context = dg.build_run_status_sensor_context(
            sensor_name="cycle_after_workbook_load",
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=run,
        )
        request = cycle_after_workbook_load(context)
        assert (
            request.partition_key == cycle and request.run_key == f"cycle:{cycle}:{result.run_id}"
        )


def test_an_invalid_workbook_fails_its_load_once_with_every_error_and_stores_nothing(tmp_path):
    path = valid_workbook().remove_sheet("Databases").write(tmp_path / "broken.xlsx")
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    # The instance retries failed runs, as dagster.yaml does; an invalid workbook is final.
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 2}}
    ) as instance:
        result = load_workbook.execute_in_process(
            run_config={"ops": {"load_cycle_workbook": {"config": {"workbook_path": str(path)}}}},
            resources={
                "batch_store": BatchStoreResource(database_url=store_url),
                "risk_modeling": RiskModelingSettings(data_dir=str(tmp_path / "data")),
            },
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "false"
    failure = result.failure_data_for_node("load_cycle_workbook").user_failure_data
    assert "broken.xlsx" in failure.description and "Databases" in failure.description
    assert failure.metadata["retryable"].value is False
    assert failure.metadata["error_code"].value == "BP-CONFIG-WORKBOOK"
    assert failure.metadata["errors_total"].value >= 1
    assert "[MISSING_SHEET]" in failure.metadata["errors"].value
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert BatchStoreResource(database_url=store_url).get_store().list_cycles() == []
