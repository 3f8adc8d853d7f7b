"""Cycles are the partitions of every risk-modeling asset, added as workbooks arrive."""

import dagster as dg

CYCLES = dg.DynamicPartitionsDefinition(name="risk_modeling_cycles")
