import dagster as dg

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.failures import final_failure


def test_a_final_failure_turns_off_run_retries_and_lists_its_errors_as_metadata():
    failure = final_failure(
        ConfigurationError("workbook.xlsx: 2 errors"), ["Sheet A row 3: bad", "Sheet B row 4: bad"]
    )
    assert failure.allow_retries is False
    assert failure.metadata["error_code"].value == "BP-CONFIG"
    assert failure.metadata["errors_total"].value == 2
    assert "Sheet B row 4" in failure.metadata["errors"].value


def test_an_op_raising_a_final_failure_fails_its_run_with_the_metadata():
    @dg.op
    def refuse():
        raise final_failure("nothing to do")

    @dg.job
    def refusing():
        refuse()

    result = refusing.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("refuse")
    assert failure.user_failure_data.metadata["retryable"].value is False
