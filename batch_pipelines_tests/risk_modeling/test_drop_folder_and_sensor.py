"""The drop-folder sensor: new or changed workbooks become cycles; invalid ones are reported."""

import dagster as dg

from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.risk_modeling.drop_folder import workbook_changes
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sample_workbook import valid_workbook
from batch_pipelines.risk_modeling.sensors import workbook_drop_sensor


def test_only_new_or_changed_files_are_loaded_and_the_cursor_remembers_them():
    changed, cursor = workbook_changes(None, {"a.xlsx": (1, 10), "b.xlsx": (1, 20)})
    assert changed == ["a.xlsx", "b.xlsx"]
    changed, cursor = workbook_changes(cursor, {"a.xlsx": (1, 10), "b.xlsx": (2, 21)})
    assert changed == ["b.xlsx"]
    changed, _ = workbook_changes(cursor, {"a.xlsx": (1, 10), "b.xlsx": (2, 21)})
    assert changed == []


def _evaluate(tmp_path, instance, cursor=None):
    resources = {
        "batch_store": BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}"),
        "risk_modeling": RiskModelingSettings(data_dir=str(tmp_path / "data"), drop_folder=str(tmp_path / "incoming")),
    }
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return workbook_drop_sensor(context), context


def test_a_valid_workbook_registers_its_cycle_partition_and_requests_the_cycle_run(tmp_path):
    (tmp_path / "incoming").mkdir()
    valid_workbook().write(tmp_path / "incoming" / "cycle.xlsx")
    with dg.instance_for_test() as instance:
        result, context = _evaluate(tmp_path, instance)
        assert isinstance(result, dg.SensorResult)
        (request,) = result.run_requests
        cycle = request.partition_key
        assert result.dynamic_partitions_requests[0].partition_keys == [cycle]
        store = BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}").get_store()
        assert store.active_cycle().name == cycle
        assert store.configuration_for_cycle(cycle, "risk_modeling") is not None
        # the same file again: nothing to do
        again, _ = _evaluate(tmp_path, instance, cursor=result.cursor)
        assert isinstance(again, dg.SkipReason)


def test_an_invalid_workbook_is_reported_with_its_errors_and_stores_nothing(tmp_path):
    (tmp_path / "incoming").mkdir()
    valid_workbook().remove_sheet("Databases").write(tmp_path / "incoming" / "broken.xlsx")
    with dg.instance_for_test() as instance:
        result, _ = _evaluate(tmp_path, instance)
        assert not result.run_requests
        assert "broken.xlsx" in result.skip_reason.skip_message and "errors" in result.skip_reason.skip_message
        store = BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}").get_store()
        assert store.list_cycles() == []
